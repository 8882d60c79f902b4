//! Metric tables of a `finetune` profile, from raw records only: `metrics.csv` (one row per
//! run), `accuracy.csv` (per method and fraction: mean, sd and range over seeds), `paired.csv`
//! (each method against lora and full, paired by seed: mean difference, t-interval, wins) and
//! `timing.csv` (timings vary from run to run, so they stay out of the other two).
use super::{FinetuneJob, FinetuneKind};
use crate::kind::Done;
use crate::layout::Dirs;
use crate::store::write_table;
use finetune::RunRecord;
use hmoe::stats::{mean, sd};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub(super) fn write(
    kind: &FinetuneKind,
    profile: &str,
    done: &[Done<'_, FinetuneJob, RunRecord>],
    dirs: &Dirs,
) -> anyhow::Result<Vec<PathBuf>> {
    let label = |d: &Done<'_, FinetuneJob, RunRecord>| kind.method_label(profile, d.job);
    let rows: Vec<RunRow> = done.iter().map(|d| run_row(d, label(d))).collect();
    let methods = kind.methods(profile);
    let mut groups: Vec<GroupRow> = Vec::new();
    for m in methods {
        for f in fractions_of(&rows, m) {
            let g: Vec<&RunRow> = rows
                .iter()
                .filter(|r| &r.method == m && r.train_fraction == f)
                .collect();
            let acc: Vec<f64> = g.iter().map(|r| r.test_accuracy).collect();
            let f1: Vec<f64> = g.iter().map(|r| r.test_macro_f1).collect();
            groups.push(GroupRow {
                method: m.clone(),
                train_fraction: f,
                seeds: g.len(),
                train_examples: g[0].train_examples,
                trainable_params: g[0].trainable_params,
                accuracy_mean: mean(&acc),
                accuracy_sd: sd(&acc),
                accuracy_min: acc.iter().cloned().fold(f64::INFINITY, f64::min),
                accuracy_max: acc.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                macro_f1_mean: mean(&f1),
                macro_f1_sd: sd(&f1),
                majority_rate: g[0].test_majority_rate,
            });
        }
    }
    // Timings vary from run to run; they get their own table so metrics.csv repeats exactly.
    let timing: Vec<TimingRow> = done
        .iter()
        .map(|d| TimingRow {
            id: d.id.to_string(),
            method: label(d),
            train_fraction: d.job.train.train_fraction,
            seed: d.job.train.seed,
            steps: d.record.steps,
            steps_per_sec: d.record.steps_per_sec,
            seconds: d.record.seconds,
            device: d.record.device.clone(),
        })
        .collect();
    let mut written = vec![
        write_table(dirs, "metrics.csv", &rows)?,
        write_table(dirs, "accuracy.csv", &groups)?,
        write_table(
            dirs,
            PAIRED_TABLE,
            &paired(methods, &kind.paired_references(), &rows),
        )?,
        write_table(dirs, "timing.csv", &timing)?,
    ];
    if kind.is_grid(profile) {
        written.push(write_table(dirs, LR_GRID_TABLE, &lr_grid(done, &rows))?);
    }
    Ok(written)
}

/// The learning-rate grid's table: one row per method and rate.
pub const LR_GRID_TABLE: &str = "lr-grid.csv";

/// One method at one learning rate of a grid, over every fraction and seed it ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LrGridRow {
    pub method: String,
    /// The peak rate varied (`full_lr` for full fine-tuning).
    pub lr: f64,
    pub runs: usize,
    /// Validation macro-F1 of the best epoch: mean and sd over runs.
    pub val_macro_f1_mean: f64,
    pub val_macro_f1_sd: f64,
    pub test_accuracy_mean: f64,
    /// The rate with the highest mean validation macro-F1 of its method.
    pub chosen: bool,
}

fn lr_grid(done: &[Done<'_, FinetuneJob, RunRecord>], rows: &[RunRow]) -> Vec<LrGridRow> {
    let mut out: Vec<LrGridRow> = Vec::new();
    let mut labels: Vec<&str> = Vec::new();
    for r in rows {
        if !labels.contains(&r.method.as_str()) {
            labels.push(&r.method);
        }
    }
    for label in labels {
        let runs: Vec<(&Done<'_, FinetuneJob, RunRecord>, &RunRow)> = done
            .iter()
            .zip(rows)
            .filter(|(_, r)| r.method == label)
            .collect();
        let t = &runs[0].0.job.train;
        let lr = if t.method == finetune::AdapterKind::Full {
            t.full_lr
        } else {
            t.lr
        };
        let val: Vec<f64> = runs.iter().map(|(_, r)| r.best_val_macro_f1).collect();
        let acc: Vec<f64> = runs.iter().map(|(_, r)| r.test_accuracy).collect();
        out.push(LrGridRow {
            method: label.split('@').next().unwrap_or(label).to_string(),
            lr,
            runs: runs.len(),
            val_macro_f1_mean: mean(&val),
            val_macro_f1_sd: sd(&val),
            test_accuracy_mean: mean(&acc),
            chosen: false,
        });
    }
    let names: Vec<String> = out.iter().map(|r| r.method.clone()).collect();
    for name in names {
        let best = out
            .iter()
            .enumerate()
            .filter(|(_, r)| r.method == name)
            .max_by(|a, b| a.1.val_macro_f1_mean.total_cmp(&b.1.val_macro_f1_mean))
            .map(|(i, _)| i);
        if let Some(i) = best {
            out[i].chosen = true;
        }
    }
    out
}

/// The training fractions a method ran at, ascending.
fn fractions_of(rows: &[RunRow], method: &str) -> Vec<f64> {
    let mut f: Vec<f64> = rows
        .iter()
        .filter(|r| r.method == method)
        .map(|r| r.train_fraction)
        .collect();
    f.sort_by(|a, b| a.total_cmp(b));
    f.dedup();
    f
}

/// The paired comparison of every method with `lora`, each variant of lora, and `full`.
pub const PAIRED_TABLE: &str = "paired.csv";

/// A method against a reference method at one training fraction, paired by seed: every method
/// of a (fraction, seed) trains on the same split and the same training subset, so the
/// difference of a pair removes the data draw from the comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairedRow {
    pub method: String,
    pub against: String,
    pub train_fraction: f64,
    pub pairs: usize,
    /// Mean of (method − against) over pairs, with a paired 95% t-interval (none for one pair).
    pub accuracy_diff: f64,
    pub accuracy_diff_lo: Option<f64>,
    pub accuracy_diff_hi: Option<f64>,
    pub macro_f1_diff: f64,
    pub macro_f1_diff_lo: Option<f64>,
    pub macro_f1_diff_hi: Option<f64>,
    /// Pairs in which the method's test accuracy is higher, equal, lower.
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
}

/// Mean and paired 95% t-interval of differences (`None` with fewer than two).
fn t_interval(d: &[f64]) -> (f64, Option<(f64, f64)>) {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let m = mean(d);
    if d.len() < 2 {
        return (m, None);
    }
    let k = d.len() as f64;
    let t = StudentsT::new(0.0, 1.0, k - 1.0)
        .expect("k - 1 >= 1 degrees of freedom")
        .inverse_cdf(0.975);
    let half = t * sd(d) / k.sqrt();
    (m, Some((m - half, m + half)))
}

pub(crate) fn paired(methods: &[String], references: &[String], rows: &[RunRow]) -> Vec<PairedRow> {
    let mut out = Vec::new();
    for against in references {
        if !methods.iter().any(|m| m == against) {
            continue;
        }
        for m in methods.iter().filter(|m| *m != against) {
            for f in fractions_of(rows, m) {
                let pairs: Vec<(&RunRow, &RunRow)> = rows
                    .iter()
                    .filter(|r| &r.method == m && r.train_fraction == f)
                    .filter_map(|r| {
                        rows.iter()
                            .find(|o| {
                                &o.method == against && o.train_fraction == f && o.seed == r.seed
                            })
                            .map(|o| (r, o))
                    })
                    .collect();
                if pairs.is_empty() {
                    continue;
                }
                let acc: Vec<f64> = pairs
                    .iter()
                    .map(|(a, b)| a.test_accuracy - b.test_accuracy)
                    .collect();
                let f1: Vec<f64> = pairs
                    .iter()
                    .map(|(a, b)| a.test_macro_f1 - b.test_macro_f1)
                    .collect();
                let (am, ai) = t_interval(&acc);
                let (fm, fi) = t_interval(&f1);
                out.push(PairedRow {
                    method: m.clone(),
                    against: against.clone(),
                    train_fraction: f,
                    pairs: pairs.len(),
                    accuracy_diff: am,
                    accuracy_diff_lo: ai.map(|i| i.0),
                    accuracy_diff_hi: ai.map(|i| i.1),
                    macro_f1_diff: fm,
                    macro_f1_diff_lo: fi.map(|i| i.0),
                    macro_f1_diff_hi: fi.map(|i| i.1),
                    wins: acc.iter().filter(|d| **d > 0.0).count(),
                    ties: acc.iter().filter(|d| **d == 0.0).count(),
                    losses: acc.iter().filter(|d| **d < 0.0).count(),
                });
            }
        }
    }
    out
}

#[derive(Serialize, Deserialize)]
pub struct RunRow {
    pub id: String,
    pub method: String,
    pub train_fraction: f64,
    pub seed: u64,
    pub train_examples: usize,
    pub trainable_params: usize,
    pub base_params: usize,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_macro_f1: f64,
    pub steps: usize,
    pub test_accuracy: f64,
    pub test_macro_f1: f64,
    pub test_majority_rate: f64,
}

#[derive(Serialize, Deserialize)]
pub struct GroupRow {
    pub method: String,
    pub train_fraction: f64,
    pub seeds: usize,
    pub train_examples: usize,
    pub trainable_params: usize,
    pub accuracy_mean: f64,
    pub accuracy_sd: f64,
    pub accuracy_min: f64,
    pub accuracy_max: f64,
    pub macro_f1_mean: f64,
    pub macro_f1_sd: f64,
    pub majority_rate: f64,
}

#[derive(Serialize, Deserialize)]
pub struct TimingRow {
    pub id: String,
    pub method: String,
    pub train_fraction: f64,
    pub seed: u64,
    pub steps: usize,
    pub steps_per_sec: f64,
    pub seconds: f64,
    pub device: String,
}

fn run_row(d: &Done<'_, FinetuneJob, RunRecord>, method: String) -> RunRow {
    let r = &d.record;
    RunRow {
        id: d.id.to_string(),
        method,
        train_fraction: d.job.train.train_fraction,
        seed: d.job.train.seed,
        train_examples: r.train_examples,
        trainable_params: r.trainable_params,
        base_params: r.base_params,
        epochs_run: r.epochs.len(),
        best_epoch: r.best_epoch,
        best_val_macro_f1: r
            .epochs
            .iter()
            .map(|e| e.val_macro_f1)
            .fold(f64::NAN, f64::max),
        steps: r.steps,
        test_accuracy: r.test_accuracy,
        test_macro_f1: r.test_macro_f1,
        test_majority_rate: r.test_majority_rate,
    }
}

#[cfg(test)]
mod tests {
    use super::t_interval;

    #[test]
    fn the_paired_t_interval_has_the_textbook_width() {
        // Mean 2, sd 1, three pairs: t(0.975; 2) = 4.302653, half-width 4.302653 / √3.
        let (m, ci) = t_interval(&[1.0, 2.0, 3.0]);
        let (lo, hi) = ci.unwrap();
        assert_eq!(m, 2.0);
        let half = 4.302_652_729_911_275 / 3f64.sqrt();
        assert!(
            (hi - m - half).abs() < 1e-9 && (m - lo - half).abs() < 1e-9,
            "{lo} {hi}"
        );
        // One pair has no interval; two equal differences have a zero-width one.
        assert_eq!(t_interval(&[0.5]), (0.5, None));
        assert_eq!(t_interval(&[0.1, 0.1]).1, Some((0.1, 0.1)));
    }
}
