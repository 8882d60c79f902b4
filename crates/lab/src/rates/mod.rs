//! The `rates` kind: hmoe fits over a grid of sample sizes (THEORY.md §5), one job per
//! setting × method × n × replicate; metrics are the Voronoi loss and the regression error
//! recomputed from each raw record, and the fitted slopes of log loss on log n.
mod metrics;
mod report;

pub use metrics::{CurveRow, MetricRow, RateRow};

use crate::error::LabError;
use crate::experiment::{config_error, from_table, merge_tables, ExperimentInfo};
use crate::kind::{Done, JobContext, Kind};
use crate::layout::Dirs;
use crate::provenance::ProvenanceSummary;
use hmoe::{FitConfig, FitJob, FitRecord, LossConfig, Method, ModelConfig};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The file as written; model and fit stay TOML tables until each setting's overrides are merged.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesFile {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    model: toml::Table,
    #[serde(default)]
    fit: toml::Table,
    #[serde(default)]
    loss: LossConfig,
    settings: Vec<SettingFile>,
    profiles: BTreeMap<String, Profile>,
    #[serde(default)]
    report: ReportConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingFile {
    name: String,
    /// The family the truth is drawn from.
    truth: Method,
    methods: Vec<Method>,
    /// Overrides of `[model]` for this setting only.
    #[serde(default)]
    model: toml::Table,
    /// Overrides of `[fit]` for this setting only.
    #[serde(default)]
    fit: toml::Table,
}

/// A grid of sample sizes and a number of replicates.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub ns: Vec<usize>,
    pub replicates: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// The target ε of the sample complexity (THEORY.md §5).
    pub target_loss: f64,
    /// Bootstrap resamples for the slope intervals and the mean bands.
    pub bootstrap: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            target_loss: 0.05,
            bootstrap: 1000,
        }
    }
}

/// One curve family of a figure: a truth, the model it lives in, the methods fitted to it.
#[derive(Clone, Debug)]
pub struct Setting {
    pub name: String,
    pub truth: Method,
    pub methods: Vec<Method>,
    pub model: ModelConfig,
    pub fit: FitConfig,
}

/// A parsed and checked `rates` experiment.
pub struct RatesKind {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    pub loss: LossConfig,
    pub settings: Vec<Setting>,
    pub profiles: BTreeMap<String, Profile>,
    pub report: ReportConfig,
}

const MAX_N: usize = 100_000_000;

impl RatesKind {
    pub fn parse(info: &ExperimentInfo, text: &str) -> Result<Self, LabError> {
        let path = &info.path;
        let file: RatesFile =
            toml::from_str(text).map_err(|e| config_error(path, e.to_string()))?;
        let err = |m: String| config_error(path, m);
        file.loss.check().map_err(|e| err(format!("[loss]: {e}")))?;
        if file.settings.is_empty() {
            return Err(err("no `[[settings]]`: at least one is needed".into()));
        }
        let mut names = BTreeSet::new();
        let mut settings = Vec::new();
        for s in file.settings {
            let at = format!("setting `{}`", s.name);
            if s.name.is_empty() || !names.insert(s.name.clone()) {
                return Err(err(format!(
                    "{at}: setting names must be non-empty and unique"
                )));
            }
            let model: ModelConfig = from_table(
                merge_tables(&file.model, &s.model),
                path,
                &format!("{at}, [model]"),
            )?;
            model
                .check()
                .map_err(|e| err(format!("{at}, [model]: {e}")))?;
            let fit: FitConfig = from_table(
                merge_tables(&file.fit, &s.fit),
                path,
                &format!("{at}, [fit]"),
            )?;
            fit.check().map_err(|e| err(format!("{at}, [fit]: {e}")))?;
            if s.methods.is_empty() {
                return Err(err(format!("{at}: `methods` is empty")));
            }
            let distinct: BTreeSet<String> = s.methods.iter().map(|m| m.to_string()).collect();
            if distinct.len() != s.methods.len() {
                return Err(err(format!("{at}: `methods` lists a method twice")));
            }
            settings.push(Setting {
                name: s.name,
                truth: s.truth,
                methods: s.methods,
                model,
                fit,
            });
        }
        if file.profiles.is_empty() {
            return Err(err(
                "no `[profiles.<name>]`: at least one is needed (quick, paper)".into(),
            ));
        }
        for (name, p) in &file.profiles {
            let at = format!("[profiles.{name}]");
            if p.ns.is_empty() {
                return Err(err(format!("{at}: `ns` is empty")));
            }
            if let Some(n) = p.ns.iter().find(|n| **n < 2 || **n > MAX_N) {
                return Err(err(format!(
                    "{at}: invalid value for `ns`: {n} (allowed: 2..={MAX_N})"
                )));
            }
            if p.replicates == 0 || p.replicates > 10_000 {
                return Err(err(format!(
                    "{at}: invalid value for `replicates`: {} (allowed: 1..=10000)",
                    p.replicates
                )));
            }
        }
        let r = &file.report;
        if !(r.target_loss.is_finite() && r.target_loss > 0.0) {
            return Err(err(format!(
                "[report]: invalid value for `target_loss`: {} (allowed: a finite value > 0)",
                r.target_loss
            )));
        }
        if r.bootstrap > 100_000 {
            return Err(err(format!(
                "[report]: invalid value for `bootstrap`: {} (allowed: 0..=100000)",
                r.bootstrap
            )));
        }
        Ok(RatesKind {
            name: info.name.clone(),
            description: file.description,
            path: path.to_path_buf(),
            loss: file.loss,
            settings,
            profiles: file.profiles,
            report: file.report,
        })
    }

    pub fn profile(&self, name: &str) -> Result<&Profile, LabError> {
        crate::kind::named_profile(&self.name, &self.profiles, name)
    }
}

impl Kind for RatesKind {
    type Job = FitJob;
    type Record = FitRecord;

    fn profiles(&self) -> Vec<String> {
        crate::kind::profile_order(self.profiles.keys().cloned())
    }

    fn jobs(&self, profile: &str) -> Result<Vec<FitJob>, LabError> {
        let p = self.profile(profile)?;
        let mut jobs = Vec::new();
        for s in &self.settings {
            for &method in &s.methods {
                for &n in &p.ns {
                    for replicate in 0..p.replicates {
                        jobs.push(FitJob {
                            experiment: self.name.clone(),
                            setting: s.name.clone(),
                            model: s.model.clone(),
                            fit: s.fit.clone(),
                            truth: s.truth,
                            method,
                            n,
                            replicate,
                        });
                    }
                }
            }
        }
        Ok(jobs)
    }

    fn label(&self, job: &FitJob) -> String {
        format!(
            "{} {} n={} rep={}",
            job.setting, job.method, job.n, job.replicate
        )
    }

    fn run_job(&self, job: &FitJob, _ctx: &JobContext<'_>) -> anyhow::Result<FitRecord> {
        Ok(hmoe::run_fit(job)?)
    }

    fn metrics(
        &self,
        profile: &str,
        done: &[Done<'_, FitJob, FitRecord>],
        dirs: &Dirs,
    ) -> anyhow::Result<Vec<PathBuf>> {
        metrics::write(self, self.profile(profile)?, done, dirs)
    }

    fn report(
        &self,
        profile: &str,
        dirs: &Dirs,
        prov: &ProvenanceSummary,
    ) -> anyhow::Result<Vec<PathBuf>> {
        report::write(self, profile, dirs, prov)
    }
}
