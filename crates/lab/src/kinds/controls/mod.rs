//! The `controls` kind (issue 10, THEORY.md §4a): rate curves of the classic softmax-gated MoE
//! regression, linear or tanh experts, exactly specified or over-specified, fitted by the same
//! estimator as the HMoE. One job per setting × n × replicate; metrics, slopes, curves and the
//! estimator's audit as the `rates` kind computes them (its helpers are shared).
mod metrics;
mod report;

use super::curves::{Profile, ReportConfig};
use crate::error::LabError;
use crate::experiment::{config_error, from_table, ExperimentInfo};
use crate::kind::{JobContext, Kind, NoCommands, NoFlags, Records, Report, Written};
use crate::layout::Dirs;
use hmoe::controls::{ControlJob, ControlModel, ControlRecord, ControlSpec, Expert};
use hmoe::{DataConfig, FitConfig, LossConfig, ParamGuard, ValidLoss};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// `[model]` of a `controls` file: what every setting shares.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ModelFile {
    d: usize,
    k_true: usize,
}

impl Default for ModelFile {
    fn default() -> Self {
        ModelFile { d: 2, k_true: 2 }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlsFile {
    #[serde(default)]
    model: ModelFile,
    #[serde(default)]
    data: DataConfig,
    #[serde(default)]
    fit: FitConfig,
    #[serde(default)]
    loss: LossConfig,
    settings: Vec<SettingFile>,
    profiles: BTreeMap<String, Profile>,
    #[serde(default)]
    report: ReportConfig,
}

/// A `[[settings]]` entry: the experts' type and how many are fitted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingFile {
    name: String,
    expert: Expert,
    k_fit: usize,
}

/// One curve: a setting's checked job at `n = 2`, replicate 0.
#[derive(Clone, Debug)]
pub struct Setting {
    pub name: String,
    pub template: ControlJob,
}

impl Setting {
    pub fn model(&self) -> &ControlModel {
        &self.template.model
    }
}

/// A parsed and checked `controls` experiment.
pub struct ControlsKind {
    pub name: String,
    pub path: PathBuf,
    pub loss: ValidLoss,
    pub settings: Vec<Setting>,
    pub profiles: BTreeMap<String, Profile>,
    pub report: ReportConfig,
}

impl ControlsKind {
    pub fn parse(info: &ExperimentInfo, body: toml::Table) -> Result<Self, LabError> {
        let path = &info.path;
        let err = |m: String| config_error(path, m);
        let file: ControlsFile =
            from_table(body, path, "top level (besides name, kind, description)")?;
        let loss = file.loss.check().map_err(|e| err(format!("[loss]: {e}")))?;
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
            let template = ControlSpec {
                experiment: info.name.clone(),
                setting: s.name.clone(),
                model: ControlModel {
                    expert: s.expert,
                    d: file.model.d,
                    k_true: file.model.k_true,
                    k_fit: s.k_fit,
                },
                data: file.data.clone(),
                fit: file.fit.clone(),
                n: 2,
                replicate: 0,
            }
            .check()
            .map_err(|e| err(format!("{at}: {e}")))?;
            settings.push(Setting {
                name: s.name,
                template,
            });
        }
        super::curves::check_profiles(&file.profiles).map_err(err)?;
        let r = &file.report;
        // The rates kind's checks (flat_tolerance, dead_weight and bootstrap were read here
        // unchecked before issue 24), and what controls does not draw.
        r.check().map_err(err)?;
        if r.timing {
            return Err(err(
                "[report]: `timing` is not drawn for controls (allowed: false)".into(),
            ));
        }
        Ok(ControlsKind {
            name: info.name.clone(),
            path: path.to_path_buf(),
            loss,
            settings,
            profiles: file.profiles,
            report: file.report,
        })
    }

    pub fn profile(&self, name: &str) -> Result<&Profile, LabError> {
        crate::kind::named_profile(&self.name, &self.profiles, name)
    }
}

impl Kind for ControlsKind {
    /// Its `estimator.csv` is the rates kind's, with the same start-log columns.
    fn log_coverage(&self) -> &'static [crate::reproduce::LogCoverage] {
        super::curves::ESTIMATOR_LOG_COVERAGE
    }

    const NAME: &'static str = "controls";
    type Flags = NoFlags;
    type Commands = NoCommands;
    type Job = ControlJob;
    type Record = ControlRecord;

    fn parse(info: &ExperimentInfo, body: toml::Table, _: &NoFlags) -> Result<Self, LabError> {
        ControlsKind::parse(info, body)
    }

    fn profiles(&self) -> Vec<String> {
        crate::kind::profile_order(self.profiles.keys().cloned())
    }

    fn jobs(&self, profile: &str) -> Result<Vec<ControlJob>, LabError> {
        let p = self.profile(profile)?;
        let mut jobs = Vec::new();
        for s in &self.settings {
            for &n in &p.ns {
                for replicate in 0..p.replicates {
                    let mut spec = s.template.clone().into_inner();
                    (spec.n, spec.replicate) = (n, replicate);
                    jobs.push(spec.check().map_err(|e| {
                        config_error(&self.path, format!("setting `{}`: {e}", s.name))
                    })?);
                }
            }
        }
        Ok(jobs)
    }

    fn label(&self, job: &ControlJob) -> String {
        format!("{} n={} rep={}", job.setting, job.n, job.replicate)
    }

    /// The data (x, y) and a prediction buffer, 8 bytes each per sample and coordinate, plus a
    /// fixed 32 MiB.
    fn memory_bytes(&self, job: &ControlJob) -> Option<u64> {
        Some(job.n as u64 * 8 * (job.model.d as u64 + 3) + (32 << 20))
    }

    fn cost(&self, job: &ControlJob) -> f64 {
        (job.n * job.model.k_fit) as f64
    }

    fn run_job(&self, job: &ControlJob, _ctx: &JobContext<'_>) -> anyhow::Result<ControlRecord> {
        Ok(hmoe::controls::run_control_fit(job)?)
    }

    fn metrics(&self, profile: &str, done: &Records<'_, Self>, dirs: &Dirs) -> Written {
        metrics::write(self, self.profile(profile)?, done, dirs)
    }

    fn report(&self, profile: &str, dirs: &Dirs) -> anyhow::Result<Report> {
        report::write(self, profile, dirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ControlsKind, LabError> {
        crate::kind::parse_text(text)
    }

    const BASE: &str = r#"
name = "t"
kind = "controls"
[model]
k_true = 2
[fit]
bound = 4.0
[[settings]]
name = "linear-exact"
expert = "linear"
k_fit = 2
[[settings]]
name = "tanh-over"
expert = "tanh"
k_fit = 3
[profiles.quick]
ns = [100, 200]
replicates = 3
"#;

    #[test]
    fn settings_expand_into_checked_jobs() {
        let k = parse(BASE).unwrap();
        let jobs = k.jobs("quick").unwrap();
        assert_eq!(jobs.len(), 2 * 2 * 3);
        assert_eq!(jobs[0].model.expert, Expert::Linear);
        assert_eq!(jobs.last().unwrap().model.k_fit, 3);
        assert!(jobs.iter().all(|j| j.fit.bound == 4.0 && j.model.d == 2));
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(&BASE.replace("k_fit = 3", "k_fit = 1"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("setting `tanh-over`") && e.contains("k_fit"),
            "{e}"
        );
        let e = parse(&BASE.replace("expert = \"tanh\"", "expert = \"relu\""))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("relu"), "{e}");
        let e = parse(&BASE.replace("bound = 4.0", "bound = 1.5"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bound"), "{e}");
        // The [report] keys the rates kind checks are checked here too (issue 24: they were read
        // unchecked).
        for (key, value) in [
            ("dead_weight", "2.0"),
            ("flat_tolerance", "0.0"),
            ("bootstrap", "1000000"),
        ] {
            let e = parse(&format!("{BASE}[report]\n{key} = {value}\n"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| panic!("{key} = {value} was accepted"));
            assert!(e.contains(key), "{e}");
        }
    }
}
