//! Metric tables of a `rates` profile, from raw records only:
//! `metrics.csv` (one row per fit), `curves.csv` (mean and 95% band per n) and `rates.csv`
//! (one row per setting × method: slopes with intervals, convergence, sample complexity).
pub(crate) use super::super::curves::metrics::{
    estimator_row, flat_set, CurveRow, Curves, EstimatorRow, FitAudit, ESTIMATOR_TABLE,
};
use super::{Profile, RatesKind};
use crate::kind::Done;
use crate::layout::Dirs;
use crate::store::write_table;
use hmoe::rates::sample_complexity;
use hmoe::stats::{mean, median, quantile};
use hmoe::{FitJob, FitRecord, FitStatus};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One fit. Timings are left out on purpose: metrics repeat byte for byte across reruns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricRow {
    pub id: String,
    pub setting: String,
    pub truth: String,
    pub method: String,
    pub n: usize,
    pub replicate: u32,
    pub voronoi: f64,
    pub regression: f64,
    pub objective: f64,
    pub objective_at_truth: f64,
    pub grad_norm: f64,
    pub iterations: u64,
    pub converged: bool,
    pub starts: usize,
    pub status: String,
    pub truth_in_family: bool,
}

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

/// The rate of one method in one setting.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RateRow {
    pub setting: String,
    pub heads: usize,
    pub atoms: usize,
    pub truth: String,
    pub method: String,
    pub fits: usize,
    /// Grid points with at least one usable loss.
    pub points: usize,
    pub slope: Option<f64>,
    pub slope_lo: Option<f64>,
    pub slope_hi: Option<f64>,
    pub intercept: Option<f64>,
    pub median_slope: Option<f64>,
    pub median_slope_lo: Option<f64>,
    pub median_slope_hi: Option<f64>,
    pub median_intercept: Option<f64>,
    pub regression_slope: Option<f64>,
    pub regression_slope_lo: Option<f64>,
    pub regression_slope_hi: Option<f64>,
    pub regression_intercept: Option<f64>,
    pub converged_fraction: f64,
    pub guard_pass_fraction: f64,
    pub guard_failures: usize,
    pub target_loss: f64,
    /// Smallest grid n whose mean Voronoi loss is below the target.
    pub n_at_target: Option<f64>,
    /// Where the fitted power law crosses the target.
    pub n_at_target_extrapolated: Option<f64>,
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
    let computed: Vec<Option<MetricRow>> = done
        .par_iter()
        .map(|d| match hmoe::record_losses(&d.record, &kind.loss) {
            Ok(l) => Some(metric_row(d, l.voronoi, l.regression)),
            Err(e) => {
                eprintln!("skipping record {}: {e}", dirs.record(d.id).display());
                None
            }
        })
        .collect();
    let rows: Vec<MetricRow> = computed.into_iter().flatten().collect();

    let mut curves = Vec::new();
    let mut rates = Vec::new();
    for s in &kind.settings {
        for m in &s.methods {
            let method = m.to_string();
            let mine: Vec<&MetricRow> = rows
                .iter()
                .filter(|r| r.setting == s.name && r.method == method)
                .collect();
            let by_n = |f: fn(&MetricRow) -> f64| -> Vec<(f64, Vec<f64>)> {
                profile
                    .ns
                    .iter()
                    .map(|&n| {
                        (
                            n as f64,
                            // A fit that failed the truth-objective guard did not optimise: it is
                            // counted in `guard_failures`, never averaged into a loss.
                            mine.iter()
                                .filter(|r| r.n == n && r.status == "ok")
                                .map(|r| f(r))
                                .collect::<Vec<f64>>(),
                        )
                    })
                    .filter(|(_, v)| !v.is_empty())
                    .collect()
            };
            let voronoi = by_n(|r| r.voronoi);
            let regression = by_n(|r| r.regression);
            let at = Curves {
                experiment: &kind.name,
                setting: &s.name,
                method: &method,
                bootstrap: kind.report.bootstrap,
            };
            for (loss, groups) in [("voronoi", &voronoi), ("regression", &regression)] {
                curves.extend(at.rows(loss, groups));
            }
            let (ns, means, vf) = at.rate(&voronoi, "voronoi");
            let (_, _, rf) = at.rate(&regression, "regression");
            let sc = sample_complexity(&ns, &means, vf.as_ref(), kind.report.target_loss);
            let fits = mine.len();
            let frac = |k: usize| {
                if fits == 0 {
                    0.0
                } else {
                    k as f64 / fits as f64
                }
            };
            let guard_failures = mine.iter().filter(|r| r.status != "ok").count();
            rates.push(RateRow {
                setting: s.name.clone(),
                heads: s.model().heads,
                atoms: s.model().atoms,
                truth: s.truth.to_string(),
                method: method.clone(),
                fits,
                points: vf.as_ref().map_or(ns.len(), |f| f.points),
                slope: vf.as_ref().map(|f| f.slope),
                slope_lo: vf.as_ref().map(|f| f.slope_lo),
                slope_hi: vf.as_ref().map(|f| f.slope_hi),
                intercept: vf.as_ref().map(|f| f.intercept),
                median_slope: vf.as_ref().map(|f| f.median_slope),
                median_slope_lo: vf.as_ref().map(|f| f.median_slope_lo),
                median_slope_hi: vf.as_ref().map(|f| f.median_slope_hi),
                median_intercept: vf.as_ref().map(|f| f.median_intercept),
                regression_slope: rf.as_ref().map(|f| f.slope),
                regression_slope_lo: rf.as_ref().map(|f| f.slope_lo),
                regression_slope_hi: rf.as_ref().map(|f| f.slope_hi),
                regression_intercept: rf.as_ref().map(|f| f.intercept),
                converged_fraction: frac(mine.iter().filter(|r| r.converged).count()),
                guard_pass_fraction: frac(fits - guard_failures),
                guard_failures,
                target_loss: kind.report.target_loss,
                n_at_target: sc.on_grid,
                n_at_target_extrapolated: sc.extrapolated,
            });
        }
    }
    let mut files = vec![
        write_table(dirs, "metrics.csv", &rows)?,
        write_table(dirs, "curves.csv", &curves)?,
        write_table(dirs, "rates.csv", &rates)?,
        write_table(dirs, ESTIMATOR_TABLE, &estimator(kind, profile, done))?,
    ];
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
                rows.iter().find(|r| {
                    r.setting == setting
                        && r.method == method
                        && r.n == n
                        && r.replicate == rep
                        && r.status == "ok"
                })
            };
            for &n in &profile.ns {
                let pairs: Vec<(&MetricRow, &MetricRow)> = (0..profile.replicates)
                    .filter_map(|rep| {
                        Some((find(&s.name, n, rep)?, find(&reference.name, n, rep)?))
                    })
                    .collect();
                if pairs.is_empty() {
                    continue;
                }
                let count = |f: &dyn Fn(&MetricRow, &MetricRow) -> bool| {
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

fn audit(kind: &RatesKind, d: &Done<'_, FitJob, FitRecord>) -> FitAudit {
    let r = &d.record;
    let rho = kind.loss.rho;
    let parts = hmoe::voronoi_parts(&r.est_atoms, &r.true_atoms, rho, kind.report.dead_weight);
    let flat = (!r.outcome.starts_log.is_empty()).then(|| {
        flat_set(
            &r.outcome.starts_log,
            &hmoe::start_losses(r, &kind.loss),
            (r.outcome.objective, &r.theta),
            hmoe::voronoi_loss(&r.est_atoms, &r.true_atoms, rho),
            kind.report.flat_tolerance,
        )
    });
    FitAudit {
        starts: r.outcome.starts,
        converged: r.outcome.converged,
        flat,
        parts,
        on_box: r.outcome.max_abs_param >= d.job.fit.bound * (1.0 - 1e-12),
    }
}

fn estimator(
    kind: &RatesKind,
    profile: &Profile,
    done: &[Done<'_, FitJob, FitRecord>],
) -> Vec<EstimatorRow> {
    let audits: Vec<(&Done<'_, FitJob, FitRecord>, FitAudit)> =
        done.par_iter().map(|d| (d, audit(kind, d))).collect();
    let mut out = Vec::new();
    for s in &kind.settings {
        for m in &s.methods {
            for &n in &profile.ns {
                let a: Vec<&FitAudit> = audits
                    .iter()
                    .filter(|(d, _)| d.job.setting == s.name && d.job.method == *m && d.job.n == n)
                    .map(|(_, a)| a)
                    .collect();
                if a.is_empty() {
                    continue;
                }
                out.push(estimator_row(&s.name, &m.to_string(), n, &a));
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

fn metric_row(d: &Done<'_, FitJob, FitRecord>, voronoi: f64, regression: f64) -> MetricRow {
    let r = &d.record;
    MetricRow {
        id: d.id.to_string(),
        setting: d.job.setting.clone(),
        truth: d.job.truth.to_string(),
        method: d.job.method.to_string(),
        n: d.job.n,
        replicate: d.job.replicate,
        voronoi,
        regression,
        objective: r.outcome.objective,
        objective_at_truth: r.outcome.objective_at_truth,
        grad_norm: r.outcome.grad_norm,
        iterations: r.outcome.iterations,
        converged: r.outcome.converged,
        starts: r.outcome.starts,
        status: match r.outcome.status {
            FitStatus::Ok => "ok".into(),
            FitStatus::GuardFailed => "guard_failed".into(),
        },
        truth_in_family: r.truth_in_family,
    }
}
