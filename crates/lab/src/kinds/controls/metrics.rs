//! Metric tables of a `controls` profile, from raw records only: `metrics.csv` (one row per
//! fit), `curves.csv` (mean and 95% band per n, as `rates` writes it), `rates.csv` (slopes with
//! bootstrap intervals per setting) and `estimator.csv` (the estimator's audit, as `rates`).
use super::super::curves::metrics::{estimator_row, flat_set, Curves, FitAudit};
use super::super::curves::{CurveRow, EstimatorRow, Profile};
use super::ControlsKind;
use crate::kind::Done;
use crate::layout::Dirs;
use crate::store::write_table;
use hmoe::controls::{self, ControlJob, ControlRecord};
use hmoe::rates::sample_complexity;
use hmoe::FitStatus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One fit (no timings: metrics repeat byte for byte across reruns).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricRow {
    pub id: String,
    pub setting: String,
    pub expert: String,
    pub k_true: usize,
    pub k_fit: usize,
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
}

/// The rates of one setting.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RateRow {
    pub setting: String,
    pub expert: String,
    pub k_true: usize,
    pub k_fit: usize,
    pub fits: usize,
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
    pub n_at_target: Option<f64>,
    pub n_at_target_extrapolated: Option<f64>,
}

/// The `method` column of `curves.csv` and `estimator.csv`: the experts and how many are fitted.
pub fn method(job: &ControlJob) -> String {
    format!("{}-k{}", job.model.expert, job.model.k_fit)
}

pub(super) fn write(
    kind: &ControlsKind,
    profile: &Profile,
    done: &[Done<'_, ControlJob, ControlRecord>],
    dirs: &Dirs,
) -> anyhow::Result<Vec<PathBuf>> {
    let computed: Vec<Option<MetricRow>> = done
        .par_iter()
        .map(|d| match controls::record_losses(&d.record, &kind.loss) {
            Ok(l) => Some(metric_row(d, l.voronoi, l.regression)),
            Err(e) => {
                eprintln!("skipping record {}: {e}", dirs.record(d.id).display());
                None
            }
        })
        .collect();
    let rows: Vec<MetricRow> = computed.into_iter().flatten().collect();
    let mut curves: Vec<CurveRow> = Vec::new();
    let mut rates = Vec::new();
    for s in &kind.settings {
        let m = method(&s.template);
        let mine: Vec<&MetricRow> = rows.iter().filter(|r| r.setting == s.name).collect();
        let by_n = |f: fn(&MetricRow) -> f64| -> Vec<(f64, Vec<f64>)> {
            profile
                .ns
                .iter()
                .map(|&n| {
                    let v: Vec<f64> = mine
                        .iter()
                        .filter(|r| r.n == n && r.status == "ok")
                        .map(|r| f(r))
                        .collect();
                    (n as f64, v)
                })
                .filter(|(_, v)| !v.is_empty())
                .collect()
        };
        let (voronoi, regression) = (by_n(|r| r.voronoi), by_n(|r| r.regression));
        let at = Curves {
            experiment: &kind.name,
            setting: &s.name,
            method: &m,
            bootstrap: kind.report.bootstrap,
        };
        curves.extend(at.rows("voronoi", &voronoi));
        curves.extend(at.rows("regression", &regression));
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
        let model = s.model();
        rates.push(RateRow {
            setting: s.name.clone(),
            expert: model.expert.to_string(),
            k_true: model.k_true,
            k_fit: model.k_fit,
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
    Ok(vec![
        write_table(dirs, "metrics.csv", &rows)?,
        write_table(dirs, "curves.csv", &curves)?,
        write_table(dirs, "rates.csv", &rates)?,
        write_table(dirs, "estimator.csv", &estimator(kind, profile, done))?,
    ])
}

fn audit(kind: &ControlsKind, d: &Done<'_, ControlJob, ControlRecord>) -> FitAudit {
    let (r, rho) = (&d.record, kind.loss.rho);
    let dim = d.job.model.d;
    let parts = controls::voronoi_parts(&r.theta, &r.true_theta, dim, rho, kind.report.dead_weight);
    let flat = (!r.outcome.starts_log.is_empty()).then(|| {
        flat_set(
            &r.outcome.starts_log,
            &controls::start_losses(r, &kind.loss),
            (r.outcome.objective, &r.theta),
            controls::voronoi_loss(&r.theta, &r.true_theta, dim, rho),
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
    kind: &ControlsKind,
    profile: &Profile,
    done: &[Done<'_, ControlJob, ControlRecord>],
) -> Vec<EstimatorRow> {
    let audits: Vec<(&Done<'_, ControlJob, ControlRecord>, FitAudit)> =
        done.par_iter().map(|d| (d, audit(kind, d))).collect();
    let mut out = Vec::new();
    for s in &kind.settings {
        for &n in &profile.ns {
            let a: Vec<&FitAudit> = audits
                .iter()
                .filter(|(d, _)| d.job.setting == s.name && d.job.n == n)
                .map(|(_, a)| a)
                .collect();
            if !a.is_empty() {
                out.push(estimator_row(&s.name, &method(&s.template), n, &a));
            }
        }
    }
    out
}

fn metric_row(d: &Done<'_, ControlJob, ControlRecord>, voronoi: f64, regression: f64) -> MetricRow {
    let (r, m) = (&d.record, &d.job.model);
    MetricRow {
        id: d.id.to_string(),
        setting: d.job.setting.clone(),
        expert: m.expert.to_string(),
        k_true: m.k_true,
        k_fit: m.k_fit,
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
    }
}
