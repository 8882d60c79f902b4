//! Metric tables of a `finetune` profile, from raw records only: `metrics.csv` (one row per
//! run), `accuracy.csv` (per method and fraction: mean, sd and range over seeds) and
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
    done: &[Done<'_, FinetuneJob, RunRecord>],
    dirs: &Dirs,
) -> anyhow::Result<Vec<PathBuf>> {
    let rows: Vec<RunRow> = done.iter().map(run_row).collect();
    let mut groups: Vec<GroupRow> = Vec::new();
    for m in &kind.methods {
        let mut fractions: Vec<f64> = rows
            .iter()
            .filter(|r| &r.method == m)
            .map(|r| r.train_fraction)
            .collect();
        fractions.sort_by(|a, b| a.total_cmp(b));
        fractions.dedup();
        for f in fractions {
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
            method: d.job.train.method.to_string(),
            train_fraction: d.job.train.train_fraction,
            seed: d.job.train.seed,
            steps: d.record.steps,
            steps_per_sec: d.record.steps_per_sec,
            seconds: d.record.seconds,
            device: d.record.device.clone(),
        })
        .collect();
    Ok(vec![
        write_table(dirs, "metrics.csv", &rows)?,
        write_table(dirs, "accuracy.csv", &groups)?,
        write_table(dirs, "timing.csv", &timing)?,
    ])
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

fn run_row(d: &Done<'_, FinetuneJob, RunRecord>) -> RunRow {
    let r = &d.record;
    RunRow {
        id: d.id.to_string(),
        method: d.job.train.method.to_string(),
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
