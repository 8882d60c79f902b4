//! Metric tables of a `rates` profile, from raw records only:
//! `metrics.csv` (one row per fit), `curves.csv` (mean and 95% band per n) and `rates.csv`
//! (one row per setting × method: slopes with intervals, convergence, sample complexity).
pub(crate) use super::super::curves::metrics::{
    write_tables, CurveRow, EstimatorRow, FitColumns, FitRow, Fitted, RateRow, ESTIMATOR_TABLE,
};
use super::super::curves::ReportConfig;
use super::{Profile, RatesKind};
use crate::kind::Done;
use crate::layout::Dirs;
use crate::store::write_table;
use hmoe::stats::{mean, median, quantile};
use hmoe::{FitJob, FitRecord};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A fit's own columns of `metrics.csv` (the shared [`FitColumns`] follow, then [`Tail`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitIds {
    pub id: String,
    pub setting: String,
    pub truth: String,
    pub method: String,
}

/// The last column of this family's `metrics.csv`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tail {
    pub truth_in_family: bool,
}

/// One fit's row of `metrics.csv`.
pub type MetricRow = FitRow<RatesKind>;

/// Wall-clock seconds of the fits of one method at one n (`[report] timing = true`): machine-
/// dependent, so kept out of the tables that must repeat byte for byte.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TimingRow {
    pub setting: String,
    pub method: String,
    pub atoms: usize,
    pub n: usize,
    pub fits: usize,
    pub seconds_median: f64,
    pub seconds_min: f64,
    pub seconds_max: f64,
    /// L-BFGS iterations of the kept start (median over fits).
    pub iterations_median: f64,
}

/// A curve's own columns of `rates.csv` (one method in one setting; the shared [`RateStats`]
/// follow).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurveIds {
    pub setting: String,
    pub heads: usize,
    pub atoms: usize,
    pub truth: String,
    pub method: String,
}

impl Fitted for RatesKind {
    type Job = FitJob;
    type Record = FitRecord;
    type Ids = FitIds;
    type Tail = Tail;
    type CurveIds = CurveIds;
    fn experiment(&self) -> &str {
        &self.name
    }
    fn report(&self) -> &ReportConfig {
        &self.report
    }
    /// One curve per setting and method.
    fn curves(&self) -> Vec<(String, String, CurveIds)> {
        let mut out = Vec::new();
        for s in &self.settings {
            for m in &s.methods {
                let ids = CurveIds {
                    setting: s.name.clone(),
                    heads: s.model().heads,
                    atoms: s.model().atoms,
                    truth: s.truth.to_string(),
                    method: m.to_string(),
                };
                out.push((s.name.clone(), m.to_string(), ids));
            }
        }
        out
    }
    fn place(job: &FitJob) -> (String, String, usize, u32) {
        (
            job.setting.clone(),
            job.method.to_string(),
            job.n,
            job.replicate,
        )
    }
    fn bound(job: &FitJob) -> f64 {
        job.fit.bound
    }
    fn outcome(record: &FitRecord) -> &hmoe::FitOutcome {
        &record.outcome
    }
    fn theta(record: &FitRecord) -> &[f64] {
        &record.theta
    }
    fn losses(&self, record: &FitRecord) -> hmoe::Result<hmoe::Losses> {
        hmoe::record_losses(record, &self.loss)
    }
    fn audit_losses(&self, r: &FitRecord) -> (hmoe::VoronoiParts, Vec<f64>, f64) {
        let rho = self.loss.rho;
        (
            hmoe::voronoi_parts(&r.est_atoms, &r.true_atoms, rho, self.report.dead_weight),
            hmoe::start_losses(r, &self.loss),
            hmoe::voronoi_loss(&r.est_atoms, &r.true_atoms, rho),
        )
    }
    fn ids(&self, d: &Done<'_, FitJob, FitRecord>) -> (FitIds, Tail) {
        let ids = FitIds {
            id: d.id.to_string(),
            setting: d.job.setting.clone(),
            truth: d.job.truth.to_string(),
            method: d.job.method.to_string(),
        };
        let tail = Tail {
            truth_in_family: d.record.truth_in_family,
        };
        (ids, tail)
    }
}

/// One setting against the reference setting it shares its draws with (`draws` in the
/// experiment file: the same truth, samples and starts), for one method at one n: fits paired by
/// replicate, so every difference is the estimator's (its box, solver or starts).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairedRow {
    pub setting: String,
    /// The first setting of the experiment with the same draws.
    pub reference: String,
    pub method: String,
    pub n: usize,
    /// Replicates where both fits passed the guard.
    pub pairs: usize,
    /// Pairs whose Voronoi losses are the same bits (the estimator change did not act).
    pub identical: usize,
    /// Fraction of pairs where this setting's Voronoi loss is lower than the reference's.
    pub lower_fraction: f64,
    /// Median over pairs of loss / reference loss, and its quartiles.
    pub ratio_median: f64,
    pub ratio_q25: f64,
    pub ratio_q75: f64,
    /// Mean loss over mean reference loss.
    pub ratio_of_means: f64,
    /// Fraction of pairs where this setting's objective is lower, and the median relative
    /// difference of the objectives ((this − reference) / reference).
    pub objective_lower_fraction: f64,
    pub objective_rel_diff_median: f64,
}

/// The paired comparison table, written only when two settings share their draws.
pub const PAIRED_TABLE: &str = "paired.csv";

pub(super) fn write(
    kind: &RatesKind,
    profile: &Profile,
    done: &[Done<'_, FitJob, FitRecord>],
    dirs: &Dirs,
) -> anyhow::Result<Vec<PathBuf>> {
    let (mut files, rows) = write_tables(kind, &profile.ns, done, dirs)?;
    let paired = paired(kind, profile, &rows);
    if !paired.is_empty() {
        files.push(write_table(dirs, PAIRED_TABLE, &paired)?);
    }
    if kind.report.timing {
        files.push(write_table(
            dirs,
            TIMING_TABLE,
            &timing(kind, profile, done),
        )?);
    }
    Ok(files)
}

/// Every setting paired with the first setting that shares its draws, per method and n.
pub(crate) fn paired(kind: &RatesKind, profile: &Profile, rows: &[MetricRow]) -> Vec<PairedRow> {
    let mut out = Vec::new();
    for (s, reference) in kind.paired_settings() {
        for m in s.methods.iter().filter(|m| reference.methods.contains(m)) {
            let method = m.to_string();
            let find = |setting: &str, n: usize, rep: u32| {
                rows.iter()
                    .find(|(ids, fit, _)| {
                        ids.setting == setting
                            && ids.method == method
                            && fit.n == n
                            && fit.replicate == rep
                            && fit.ok()
                    })
                    .map(|(_, fit, _)| fit)
            };
            for &n in &profile.ns {
                let pairs: Vec<(&FitColumns, &FitColumns)> = (0..profile.replicates)
                    .filter_map(|rep| {
                        Some((find(&s.name, n, rep)?, find(&reference.name, n, rep)?))
                    })
                    .collect();
                if pairs.is_empty() {
                    continue;
                }
                let count = |f: &dyn Fn(&FitColumns, &FitColumns) -> bool| {
                    pairs.iter().filter(|(a, b)| f(a, b)).count()
                };
                let share = |k: usize| k as f64 / pairs.len() as f64;
                let mut ratios: Vec<f64> =
                    pairs.iter().map(|(a, b)| a.voronoi / b.voronoi).collect();
                ratios.sort_by(f64::total_cmp);
                let rel: Vec<f64> = pairs
                    .iter()
                    .map(|(a, b)| (a.objective - b.objective) / b.objective)
                    .collect();
                let mine: Vec<f64> = pairs.iter().map(|(a, _)| a.voronoi).collect();
                let theirs: Vec<f64> = pairs.iter().map(|(_, b)| b.voronoi).collect();
                out.push(PairedRow {
                    setting: s.name.clone(),
                    reference: reference.name.clone(),
                    method: method.clone(),
                    n,
                    pairs: pairs.len(),
                    identical: count(&|a, b| a.voronoi.to_bits() == b.voronoi.to_bits()),
                    lower_fraction: share(count(&|a, b| a.voronoi < b.voronoi)),
                    ratio_median: quantile(&ratios, 0.5),
                    ratio_q25: quantile(&ratios, 0.25),
                    ratio_q75: quantile(&ratios, 0.75),
                    ratio_of_means: mean(&mine) / mean(&theirs),
                    objective_lower_fraction: share(count(&|a, b| a.objective < b.objective)),
                    objective_rel_diff_median: median(&rel),
                });
            }
        }
    }
    out
}

/// The machine-dependent table of `[report] timing = true`.
pub const TIMING_TABLE: &str = "timing.csv";

fn timing(
    kind: &RatesKind,
    profile: &Profile,
    done: &[Done<'_, FitJob, FitRecord>],
) -> Vec<TimingRow> {
    let mut out = Vec::new();
    for s in &kind.settings {
        for m in &s.methods {
            let method = m.to_string();
            for &n in &profile.ns {
                let fits: Vec<&Done<'_, FitJob, FitRecord>> = done
                    .iter()
                    .filter(|d| d.job.setting == s.name && d.job.method == *m && d.job.n == n)
                    .collect();
                if fits.is_empty() {
                    continue;
                }
                let secs: Vec<f64> = fits.iter().map(|d| d.record.outcome.seconds).collect();
                let iters: Vec<f64> = fits
                    .iter()
                    .map(|d| d.record.outcome.iterations as f64)
                    .collect();
                out.push(TimingRow {
                    setting: s.name.clone(),
                    method: method.clone(),
                    atoms: s.model().atoms,
                    n,
                    fits: fits.len(),
                    seconds_median: median(&secs),
                    seconds_min: secs.iter().copied().fold(f64::INFINITY, f64::min),
                    seconds_max: secs.iter().copied().fold(0.0, f64::max),
                    iterations_median: median(&iters),
                });
            }
        }
    }
    out
}
