//! Metric tables of a `controls` profile, from raw records only, by the rate-curve tables' shared
//! code (`curves::metrics`, through [`Fitted`]): `metrics.csv` (one row per fit), `curves.csv`
//! (mean and 95% band per n), `rates.csv` (slopes with bootstrap intervals per setting) and
//! `estimator.csv` (the estimator's audit). Only the identifying columns are this family's.
use super::super::curves::metrics::{write_tables, Fitted};
use super::super::curves::{Profile, ReportConfig};
use super::ControlsKind;
use crate::kind::Done;
use crate::layout::Dirs;
use hmoe::controls::{self, ControlJob, ControlRecord};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A fit's own columns of `metrics.csv` (the shared `FitColumns` follow).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitIds {
    pub id: String,
    pub setting: String,
    pub expert: String,
    pub k_true: usize,
    pub k_fit: usize,
}

/// Nothing follows the shared columns in this family's `metrics.csv`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NoTail {}

/// A setting's own columns of `rates.csv` (the shared `RateStats` follow).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurveIds {
    pub setting: String,
    pub expert: String,
    pub k_true: usize,
    pub k_fit: usize,
}

/// The `method` column of `curves.csv` and `estimator.csv`: the experts and how many are fitted.
pub fn method(job: &ControlJob) -> String {
    format!("{}-k{}", job.model.expert, job.model.k_fit)
}

impl Fitted for ControlsKind {
    type Job = ControlJob;
    type Record = ControlRecord;
    type Ids = FitIds;
    type Tail = NoTail;
    type CurveIds = CurveIds;
    fn experiment(&self) -> &str {
        &self.name
    }
    fn report(&self) -> &ReportConfig {
        &self.report
    }
    /// One curve per setting.
    fn curves(&self) -> Vec<(String, String, CurveIds)> {
        self.settings
            .iter()
            .map(|s| {
                let model = s.model();
                let ids = CurveIds {
                    setting: s.name.clone(),
                    expert: model.expert.to_string(),
                    k_true: model.k_true,
                    k_fit: model.k_fit,
                };
                (s.name.clone(), method(&s.template), ids)
            })
            .collect()
    }
    fn place(job: &ControlJob) -> (String, String, usize, u32) {
        (job.setting.clone(), method(job), job.n, job.replicate)
    }
    fn bound(job: &ControlJob) -> f64 {
        job.fit.bound
    }
    fn outcome(record: &ControlRecord) -> &hmoe::FitOutcome {
        &record.outcome
    }
    fn theta(record: &ControlRecord) -> &[f64] {
        &record.theta
    }
    fn losses(&self, record: &ControlRecord) -> hmoe::Result<hmoe::Losses> {
        controls::record_losses(record, &self.loss)
    }
    fn audit_losses(&self, r: &ControlRecord) -> (hmoe::VoronoiParts, Vec<f64>, f64) {
        let (d, rho) = (r.job.model.d, self.loss.rho);
        (
            controls::voronoi_parts(&r.theta, &r.true_theta, d, rho, self.report.dead_weight),
            controls::start_losses(r, &self.loss),
            controls::voronoi_loss(&r.theta, &r.true_theta, d, rho),
        )
    }
    fn ids(&self, d: &Done<'_, ControlJob, ControlRecord>) -> (FitIds, NoTail) {
        let m = &d.job.model;
        let ids = FitIds {
            id: d.id.to_string(),
            setting: d.job.setting.clone(),
            expert: m.expert.to_string(),
            k_true: m.k_true,
            k_fit: m.k_fit,
        };
        (ids, NoTail {})
    }
}

pub(super) fn write(
    kind: &ControlsKind,
    profile: &Profile,
    done: &[Done<'_, ControlJob, ControlRecord>],
    dirs: &Dirs,
) -> anyhow::Result<Vec<PathBuf>> {
    Ok(write_tables(kind, &profile.ns, done, dirs)?.0)
}
