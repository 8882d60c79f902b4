//! Metric tables of a `finetune` profile, from raw records only: `metrics.csv` (one row per
//! run), `accuracy.csv` (per method and fraction: mean, sd and range over seeds), `paired.csv`
//! (each method against lora and full, paired by seed: mean difference, t-interval, wins),
//! `scarcity.csv` (whether a paired difference is larger at the small fractions than at the
//! large ones) and `timing.csv` (timings vary from run to run, so they stay out of the others).
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
        for (f, (train_fraction, per_class)) in budgets_of(&rows, m) {
            let g: Vec<&RunRow> = rows
                .iter()
                .filter(|r| &r.method == m && r.budget() == f)
                .collect();
            let acc: Vec<f64> = g.iter().map(|r| r.test_accuracy).collect();
            let f1: Vec<f64> = g.iter().map(|r| r.test_macro_f1).collect();
            groups.push(GroupRow {
                method: m.clone(),
                train_fraction,
                per_class,
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
            train_fraction: job_budget(&d.job.train).0,
            per_class: job_budget(&d.job.train).1,
            seed: d.job.train.seed,
            steps: d.record.steps,
            steps_per_sec: d.record.steps_per_sec,
            seconds: d.record.seconds,
            device: d.record.device.clone(),
        })
        .collect();
    let references = kind.paired_references();
    let mut written = vec![
        write_table(dirs, "metrics.csv", &rows)?,
        write_table(dirs, "accuracy.csv", &groups)?,
        write_table(dirs, PAIRED_TABLE, &paired(methods, &references, &rows))?,
        write_table(dirs, SCARCITY_TABLE, &scarcity(methods, &references, &rows))?,
        write_table(dirs, "timing.csv", &timing)?,
    ];
    if kind.is_grid(profile) {
        written.push(write_table(dirs, LR_GRID_TABLE, &lr_grid(done, &rows))?);
    }
    if let Some(rule) = kind.decision.as_ref().filter(|r| r.profile == profile) {
        let table = super::decision::rows(rule, &rows);
        written.push(write_table(dirs, super::decision::DECISION_TABLE, &table)?);
    }
    Ok(written)
}

/// The learning-rate grid's table: one row per method and rate.
pub const LR_GRID_TABLE: &str = "lr-grid.csv";

/// One method at one learning rate of a grid, over every fraction and seed it ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LrGridRow {
    pub method: String,
    /// The budget the rate is chosen at, on a grid over several budgets or over examples per
    /// class (issue 25: a rate per method and budget); a grid at one fraction (the first
    /// protocol's) pools its runs and leaves both columns out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<usize>,
    /// The peak rate varied (`full_lr` for full fine-tuning).
    pub lr: f64,
    pub runs: usize,
    /// Validation macro-F1 of the best epoch: mean and sd over runs.
    pub val_macro_f1_mean: f64,
    pub val_macro_f1_sd: f64,
    pub test_accuracy_mean: f64,
    /// The rate with the highest mean validation macro-F1 of its method (at its budget).
    pub chosen: bool,
}

fn lr_grid(done: &[Done<'_, FinetuneJob, RunRecord>], rows: &[RunRow]) -> Vec<LrGridRow> {
    let rated: Vec<(f64, &RunRow)> = done
        .iter()
        .zip(rows)
        .map(|(d, r)| {
            let t = &d.job.train;
            let lr = if t.method == finetune::AdapterKind::Full {
                t.full_lr
            } else {
                t.lr
            };
            (lr, r)
        })
        .collect();
    lr_grid_of(&rated)
}

/// The grid's rows from each run's rate (its label `name@lr` names it too) and row.
fn lr_grid_of(rated: &[(f64, &RunRow)]) -> Vec<LrGridRow> {
    let rows: Vec<&RunRow> = rated.iter().map(|(_, r)| *r).collect();
    let mut out: Vec<LrGridRow> = Vec::new();
    let mut labels: Vec<&str> = Vec::new();
    for r in &rows {
        if !labels.contains(&r.method.as_str()) {
            labels.push(&r.method);
        }
    }
    // One budget per row unless the grid ran at a single fraction (pooled, as the first
    // protocol's table was written).
    let mut all_budgets: Vec<f64> = rows.iter().map(|r| r.budget()).collect();
    all_budgets.sort_by(f64::total_cmp);
    all_budgets.dedup();
    let per_budget = all_budgets.len() > 1 || rows.iter().any(|r| r.per_class.is_some());
    for label in labels {
        let budgets: Vec<(f64, BudgetColumns)> = if per_budget {
            budgets_of(rows.iter().copied(), label)
        } else {
            vec![(f64::NAN, (None, None))]
        };
        for (budget, columns) in budgets {
            let runs: Vec<&(f64, &RunRow)> = rated
                .iter()
                .filter(|(_, r)| r.method == label && (!per_budget || r.budget() == budget))
                .collect();
            let lr = runs[0].0;
            let val: Vec<f64> = runs.iter().map(|(_, r)| r.best_val_macro_f1).collect();
            let acc: Vec<f64> = runs.iter().map(|(_, r)| r.test_accuracy).collect();
            out.push(LrGridRow {
                method: label.split('@').next().unwrap_or(label).to_string(),
                train_fraction: columns.0,
                per_class: columns.1,
                lr,
                runs: runs.len(),
                val_macro_f1_mean: mean(&val),
                val_macro_f1_sd: sd(&val),
                test_accuracy_mean: mean(&acc),
                chosen: false,
            });
        }
    }
    // Rows in the order method, budget, rate (a stable sort keeps the grid's rate order).
    if per_budget {
        let methods: Vec<String> = out.iter().map(|r| r.method.clone()).collect();
        let first = |m: &str| methods.iter().position(|x| x == m).unwrap_or(0);
        out.sort_by(|a, b| {
            first(&a.method)
                .cmp(&first(&b.method))
                .then(a.budget().total_cmp(&b.budget()))
        });
    }
    let groups: Vec<(String, f64)> = out.iter().map(|r| (r.method.clone(), r.budget())).collect();
    for (name, budget) in groups {
        let best = out
            .iter()
            .enumerate()
            .filter(|(_, r)| r.method == name && same_budget(r.budget(), budget))
            .max_by(|a, b| a.1.val_macro_f1_mean.total_cmp(&b.1.val_macro_f1_mean))
            .map(|(i, _)| i);
        if let Some(i) = best {
            out[i].chosen = true;
        }
    }
    out
}

/// Two budgets are one when equal, or both absent (a pooled one-fraction grid).
fn same_budget(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// A budget's two columns: `(train_fraction, per_class)`, one of them set.
pub type BudgetColumns = (Option<f64>, Option<usize>);

/// A row's training budget as one number: its fraction, or its examples per class.
pub trait Budgeted {
    fn budget_columns(&self) -> BudgetColumns;
    fn budget(&self) -> f64 {
        match self.budget_columns() {
            (_, Some(k)) => k as f64,
            (Some(f), None) => f,
            (None, None) => f64::NAN,
        }
    }
}

macro_rules! budgeted {
    ($($t:ty),*) => {$(
        impl Budgeted for $t {
            fn budget_columns(&self) -> BudgetColumns {
                (self.train_fraction, self.per_class)
            }
        }
    )*};
}
budgeted!(RunRow, GroupRow, TimingRow, PairedRow, LrGridRow);

/// The budget columns of a job: examples per class when it sets them, else its fraction.
fn job_budget(t: &finetune::TrainConfig) -> BudgetColumns {
    if t.train_per_class > 0 {
        (None, Some(t.train_per_class))
    } else {
        (Some(t.train_fraction), None)
    }
}

/// The budgets a method ran at, ascending, each with its columns.
pub(super) fn budgets_of<'a>(
    rows: impl IntoIterator<Item = &'a RunRow>,
    method: &str,
) -> Vec<(f64, BudgetColumns)> {
    let mut f: Vec<(f64, BudgetColumns)> = rows
        .into_iter()
        .filter(|r| r.method == method)
        .map(|r| (r.budget(), r.budget_columns()))
        .collect();
    f.sort_by(|a, b| a.0.total_cmp(&b.0));
    f.dedup_by(|a, b| a.0 == b.0);
    f
}

/// The budgets a method ran at, ascending.
fn fractions_of(rows: &[RunRow], method: &str) -> Vec<f64> {
    budgets_of(rows, method).into_iter().map(|b| b.0).collect()
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
    /// The budget: a fraction of the training set (every tweets profile before issue 25) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
    /// ... or examples per class (`per_class` profiles); the other column is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<usize>,
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
pub(super) fn t_interval(d: &[f64]) -> (f64, Option<(f64, f64)>) {
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

/// The runs of `method` at `budget`, each with the run of `against` of the same seed (the pairs
/// of the paired design; a seed without both is left out).
pub(super) fn pairs_at<'a>(
    rows: &'a [RunRow],
    method: &str,
    against: &str,
    budget: f64,
) -> Vec<(&'a RunRow, &'a RunRow)> {
    rows.iter()
        .filter(|r| r.method == method && r.budget() == budget)
        .filter_map(|r| {
            rows.iter()
                .find(|o| o.method == against && o.budget() == budget && o.seed == r.seed)
                .map(|o| (r, o))
        })
        .collect()
}

pub(crate) fn paired(methods: &[String], references: &[String], rows: &[RunRow]) -> Vec<PairedRow> {
    let mut out = Vec::new();
    for against in references {
        if !methods.iter().any(|m| m == against) {
            continue;
        }
        for m in methods.iter().filter(|m| *m != against) {
            for (f, (train_fraction, per_class)) in budgets_of(rows, m) {
                let pairs = pairs_at(rows, m, against, f);
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
                    train_fraction,
                    per_class,
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

/// Whether each method's advantage over a reference is larger when data is scarce.
pub const SCARCITY_TABLE: &str = "scarcity.csv";

/// A method against a reference: per seed, the mean paired difference over the smaller half of
/// the fractions minus that over the larger half (the middle fraction of an odd count is left
/// out), then the mean over seeds with a paired 95% t-interval. Positive: the method's
/// advantage is larger, or its deficit smaller, when data is scarce. Only seeds with a run of
/// both methods at every fraction count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScarcityRow {
    pub method: String,
    pub against: String,
    /// The fractions of each half, space-separated.
    pub small_fractions: String,
    pub large_fractions: String,
    pub seeds: usize,
    pub accuracy_contrast: f64,
    pub accuracy_contrast_lo: Option<f64>,
    pub accuracy_contrast_hi: Option<f64>,
    pub macro_f1_contrast: f64,
    pub macro_f1_contrast_lo: Option<f64>,
    pub macro_f1_contrast_hi: Option<f64>,
}

pub(crate) fn scarcity(
    methods: &[String],
    references: &[String],
    rows: &[RunRow],
) -> Vec<ScarcityRow> {
    let mut out = Vec::new();
    let run = |m: &str, f: f64, seed: u64| {
        rows.iter()
            .find(|r| r.method == m && r.budget() == f && r.seed == seed)
    };
    for against in references.iter().filter(|a| methods.contains(a)) {
        for m in methods.iter().filter(|m| *m != against) {
            let fractions = fractions_of(rows, m);
            let half = fractions.len() / 2;
            if half == 0 {
                continue;
            }
            let (small, large) = (&fractions[..half], &fractions[fractions.len() - half..]);
            let mut seeds: Vec<u64> = rows.iter().map(|r| r.seed).collect();
            seeds.sort();
            seeds.dedup();
            let mut acc = Vec::new();
            let mut f1 = Vec::new();
            for seed in seeds {
                let diffs: Option<Vec<(f64, f64)>> = fractions
                    .iter()
                    .map(|&f| {
                        let (a, b) = (run(m, f, seed)?, run(against, f, seed)?);
                        Some((
                            a.test_accuracy - b.test_accuracy,
                            a.test_macro_f1 - b.test_macro_f1,
                        ))
                    })
                    .collect();
                let Some(d) = diffs else { continue };
                let part = |range: std::ops::Range<usize>, pick: fn(&(f64, f64)) -> f64| {
                    mean(&d[range].iter().map(pick).collect::<Vec<f64>>())
                };
                let n = d.len();
                acc.push(part(0..half, |x| x.0) - part(n - half..n, |x| x.0));
                f1.push(part(0..half, |x| x.1) - part(n - half..n, |x| x.1));
            }
            if acc.is_empty() {
                continue;
            }
            let list = |f: &[f64]| {
                f.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let (am, ai) = t_interval(&acc);
            let (fm, fi) = t_interval(&f1);
            out.push(ScarcityRow {
                method: m.clone(),
                against: against.clone(),
                small_fractions: list(small),
                large_fractions: list(large),
                seeds: acc.len(),
                accuracy_contrast: am,
                accuracy_contrast_lo: ai.map(|i| i.0),
                accuracy_contrast_hi: ai.map(|i| i.1),
                macro_f1_contrast: fm,
                macro_f1_contrast_lo: fi.map(|i| i.0),
                macro_f1_contrast_hi: fi.map(|i| i.1),
            });
        }
    }
    out
}

#[derive(Serialize, Deserialize)]
pub struct RunRow {
    pub id: String,
    pub method: String,
    /// The budget: a fraction of the training set (every tweets profile before issue 25) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
    /// ... or examples per class (`per_class` profiles); the other column is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<usize>,
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
    /// The budget: a fraction of the training set (every tweets profile before issue 25) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
    /// ... or examples per class (`per_class` profiles); the other column is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<usize>,
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
    /// The budget: a fraction of the training set (every tweets profile before issue 25) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
    /// ... or examples per class (`per_class` profiles); the other column is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<usize>,
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
        train_fraction: job_budget(&d.job.train).0,
        per_class: job_budget(&d.job.train).1,
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
pub(crate) mod tests {
    use super::{scarcity, t_interval, RunRow};

    /// A run row with every field but these at a placeholder (macro-F1 is half the accuracy).
    pub(crate) fn run(method: &str, fraction: f64, seed: u64, accuracy: f64) -> RunRow {
        RunRow {
            id: String::new(),
            method: method.into(),
            train_fraction: Some(fraction),
            per_class: None,
            seed,
            train_examples: 10,
            trainable_params: 1,
            base_params: 1,
            epochs_run: 1,
            best_epoch: 1,
            best_val_macro_f1: 0.5,
            steps: 1,
            test_accuracy: accuracy,
            test_macro_f1: accuracy / 2.0,
            test_majority_rate: 0.4,
        }
    }

    /// Three fractions: the middle one is left out, and a seed without every fraction does not
    /// count. hora − lora is +0.10 then +0.04 (seed 0) and +0.06 then +0.02 (seed 1) at the small
    /// and large fraction: contrasts 0.06 and 0.04.
    #[test]
    fn the_scarcity_contrast_is_small_half_minus_large_half_per_seed() {
        let mut rows = Vec::new();
        for (seed, lora, hora) in [
            (0, [0.50, 0.60, 0.70], [0.60, 0.90, 0.74]),
            (1, [0.52, 0.61, 0.71], [0.58, 0.10, 0.73]),
        ] {
            for (k, f) in [0.01, 0.02, 0.04].into_iter().enumerate() {
                rows.push(run("lora", f, seed, lora[k]));
                rows.push(run("hora", f, seed, hora[k]));
            }
        }
        rows.push(run("hora", 0.01, 2, 0.9)); // seed 2 has no lora run
        let methods = ["lora", "hora"].map(String::from);
        let out = scarcity(&methods, &["lora".to_string()], &rows);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(
            (r.method.as_str(), r.against.as_str(), r.seeds),
            ("hora", "lora", 2)
        );
        assert_eq!(
            (r.small_fractions.as_str(), r.large_fractions.as_str()),
            ("0.01", "0.04")
        );
        assert!((r.accuracy_contrast - 0.05).abs() < 1e-12, "{r:?}");
        assert!((r.macro_f1_contrast - 0.025).abs() < 1e-12, "{r:?}");
        let (m, ci) = t_interval(&[0.06, 0.04]);
        assert!((r.accuracy_contrast_lo.unwrap() - ci.unwrap().0).abs() < 1e-12 && m > 0.0);
        // One fraction: no contrast.
        let one: Vec<RunRow> = rows
            .into_iter()
            .filter(|r| r.train_fraction == Some(0.01))
            .collect();
        assert!(scarcity(&methods, &["lora".to_string()], &one).is_empty());
    }

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

    /// A per-class profile's tables carry `per_class` where a fraction profile carries
    /// `train_fraction` (whose tables stay as committed), and group by it.
    /// A grid over examples per class chooses a rate per method and budget: lora is best at
    /// 1e-3 with 4 per class and at 3e-3 with 16; a one-fraction grid pools as before.
    #[test]
    fn a_per_class_grid_chooses_a_rate_at_every_budget() {
        let mut rows = Vec::new();
        for (lr, k, val) in [
            (1e-3, 4, 0.60),
            (3e-3, 4, 0.55),
            (1e-3, 16, 0.62),
            (3e-3, 16, 0.70),
        ] {
            for seed in 0..3 {
                let mut r = run(&format!("lora@{lr}"), 0.0, seed, 0.5);
                r.train_fraction = None;
                r.per_class = Some(k);
                r.best_val_macro_f1 = val + 0.01 * seed as f64;
                rows.push((lr, r));
            }
        }
        let rated: Vec<(f64, &RunRow)> = rows.iter().map(|(lr, r)| (*lr, r)).collect();
        let grid = super::lr_grid_of(&rated);
        let got: Vec<(Option<usize>, f64, usize, bool)> = grid
            .iter()
            .map(|r| (r.per_class, r.lr, r.runs, r.chosen))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(4), 1e-3, 3, true),
                (Some(4), 3e-3, 3, false),
                (Some(16), 1e-3, 3, false),
                (Some(16), 3e-3, 3, true),
            ]
        );
        assert!((grid[0].val_macro_f1_mean - 0.61).abs() < 1e-12);
        assert!(grid.iter().all(|r| r.method == "lora"));

        // One fraction: one pooled row per rate, no budget column.
        let pooled: Vec<(f64, RunRow)> = [(1e-3, 0.6), (3e-3, 0.7)]
            .iter()
            .flat_map(|&(lr, val)| {
                (0..2).map(move |seed| {
                    let mut r = run(&format!("hora@{lr}"), 0.01, seed, 0.5);
                    r.best_val_macro_f1 = val;
                    (lr, r)
                })
            })
            .collect();
        let rated: Vec<(f64, &RunRow)> = pooled.iter().map(|(lr, r)| (*lr, r)).collect();
        let grid = super::lr_grid_of(&rated);
        assert_eq!(grid.len(), 2);
        assert!(grid
            .iter()
            .all(|r| (r.train_fraction, r.per_class) == (None, None) && r.runs == 2));
        assert_eq!((grid[0].chosen, grid[1].chosen), (false, true));
    }

    #[test]
    fn per_class_rows_group_and_serialise_by_their_budget() {
        let rows: Vec<RunRow> = [(4, 0, 0.5), (4, 1, 0.6), (16, 0, 0.7), (16, 1, 0.8)]
            .iter()
            .flat_map(|&(k, seed, acc)| {
                ["lora", "hora"].into_iter().map(move |m| {
                    let mut r = run(m, 0.0, seed, if m == "hora" { acc + 0.01 } else { acc });
                    r.train_fraction = None;
                    r.per_class = Some(k);
                    r
                })
            })
            .collect();
        let methods = vec!["lora".to_string(), "hora".to_string()];
        let p = super::paired(&methods, &["lora".to_string()], &rows);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].per_class, p[1].per_class), (Some(4), Some(16)));
        assert!(p
            .iter()
            .all(|r| r.pairs == 2 && (r.accuracy_diff - 0.01).abs() < 1e-12));
        let csv_header = |rows: &[RunRow]| {
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in rows {
                w.serialize(r).unwrap();
            }
            let bytes = w.into_inner().unwrap();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string()
        };
        let h = csv_header(&rows);
        assert!(
            h.contains(",per_class,") && !h.contains("train_fraction"),
            "{h}"
        );
        let h = csv_header(&[run("lora", 0.01, 0, 0.5)]);
        assert!(
            h.contains(",train_fraction,") && !h.contains("per_class"),
            "{h}"
        );
    }
}
