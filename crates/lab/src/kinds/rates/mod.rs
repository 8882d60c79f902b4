//! The `rates` kind: hmoe fits over a grid of sample sizes (THEORY.md §5), one job per
//! setting × method × n × replicate; metrics are the Voronoi loss and the regression error
//! recomputed from each raw record, and the fitted slopes of log loss on log n.
pub(crate) mod metrics;
pub(crate) mod report;

pub use super::curves::{Profile, ReportConfig, ESTIMATOR_LOG_COVERAGE};

use crate::error::LabError;
use crate::experiment::{config_error, from_table, merge_tables, ExperimentInfo};
use crate::kind::{JobContext, Kind, NoCommands, NoFlags, Records, Report, Written};
use crate::layout::Dirs;
use hmoe::{
    DataConfig, Draws, FitConfig, FitJob, FitRecord, FitSpec, LossConfig, Method, ModelConfig,
    ParamGuard, TruthPrior, ValidLoss,
};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The file as written, without its header and without the configuration parts ([`Parts`]),
/// which stay TOML tables until each setting's overrides are merged.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesFile {
    #[serde(default)]
    loss: LossConfig,
    /// Each setting's table; its parts are taken out before the rest is read as [`SettingFile`].
    settings: Vec<toml::Table>,
    profiles: BTreeMap<String, Profile>,
    #[serde(default)]
    report: ReportConfig,
}

/// A `[[settings]]` entry without its overrides of the [`Parts`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingFile {
    name: String,
    /// The family the truth is drawn from.
    truth: Method,
    methods: Vec<Method>,
    /// Draw the truth, the data and the starts as (experiment, setting) does instead of under
    /// this setting's own name (`hmoe::FitSpec::draws`): settings that differ only in the
    /// estimator then see the same truth and samples. Omitted: the setting's own draws.
    #[serde(default)]
    draws: Option<Draws>,
}

/// The parts of a job's configuration as TOML tables: `[model]` (`hmoe::ModelConfig`),
/// `[data]` (`hmoe::DataConfig`), `[truth_prior]` (`hmoe::TruthPrior`) and `[fit]`
/// (`hmoe::FitConfig`) at the top of the file, and the same keys in a setting as its overrides
/// (`model = { heads = 8 }`).
struct Parts {
    model: toml::Table,
    data: toml::Table,
    truth_prior: toml::Table,
    fit: toml::Table,
}

impl Parts {
    /// Take the parts out of `table` (`at` names it in errors); each must be a table.
    fn take(table: &mut toml::Table, path: &std::path::Path, at: &str) -> Result<Parts, LabError> {
        let mut take = |key: &str| match table.remove(key) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t),
            Some(v) => Err(config_error(
                path,
                format!("{at}`{key}` must be a table, not {}", v.type_str()),
            )),
        };
        Ok(Parts {
            model: take("model")?,
            data: take("data")?,
            truth_prior: take("truth_prior")?,
            fit: take("fit")?,
        })
    }
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            target_loss: 0.05,
            bootstrap: 1000,
            timing: false,
            flat_tolerance: 1e-6,
            dead_weight: 0.01,
        }
    }
}

/// One curve family of a figure: a truth, the model it lives in, the methods fitted to it.
/// `template` is the setting's checked job at `n = 2`, replicate 0: every job of the setting
/// is it with its own method, n and replicate.
#[derive(Clone, Debug)]
pub struct Setting {
    pub name: String,
    pub truth: Method,
    pub methods: Vec<Method>,
    pub template: FitJob,
}

impl Setting {
    pub fn model(&self) -> &ModelConfig {
        &self.template.model
    }
}

/// A parsed and checked `rates` experiment.
pub struct RatesKind {
    pub name: String,
    pub path: PathBuf,
    pub loss: ValidLoss,
    pub settings: Vec<Setting>,
    pub profiles: BTreeMap<String, Profile>,
    pub report: ReportConfig,
}

/// One part of a setting's configuration: `[section]` of the file with the setting's overrides
/// merged in, parsed (unknown keys are errors) and validated, errors naming `what`.
fn part<T: ParamGuard + serde::de::DeserializeOwned>(
    base: &toml::Table,
    over: &toml::Table,
    path: &std::path::Path,
    what: &str,
) -> Result<T, LabError> {
    let v: T = from_table(merge_tables(base, over), path, what)?;
    v.validate()
        .map_err(|e| config_error(path, format!("{what}: {e}")))?;
    Ok(v)
}

impl RatesKind {
    pub fn parse(info: &ExperimentInfo, mut body: toml::Table) -> Result<Self, LabError> {
        let path = &info.path;
        let top = Parts::take(&mut body, path, "")?;
        let what =
            "top level (besides name, kind, description, [model], [data], [truth_prior], [fit])";
        let file: RatesFile = from_table(body, path, what)?;
        let err = |m: String| config_error(path, m);
        let loss = file.loss.check().map_err(|e| err(format!("[loss]: {e}")))?;
        if file.settings.is_empty() {
            return Err(err("no `[[settings]]`: at least one is needed".into()));
        }
        let mut names = BTreeSet::new();
        let mut settings = Vec::new();
        for (k, mut table) in file.settings.into_iter().enumerate() {
            let over = Parts::take(&mut table, path, &format!("setting #{}: ", k + 1))?;
            let s: SettingFile = from_table(table, path, &format!("setting #{}", k + 1))?;
            let at = format!("setting `{}`", s.name);
            if s.name.is_empty() || !names.insert(s.name.clone()) {
                return Err(err(format!(
                    "{at}: setting names must be non-empty and unique"
                )));
            }
            // Each part is checked on its own first, so an error names its section.
            let model: ModelConfig =
                part(&top.model, &over.model, path, &format!("{at}, [model]"))?;
            let data: DataConfig = part(&top.data, &over.data, path, &format!("{at}, [data]"))?;
            let truth_prior: TruthPrior = part(
                &top.truth_prior,
                &over.truth_prior,
                path,
                &format!("{at}, [truth_prior]"),
            )?;
            let fit: FitConfig = part(&top.fit, &over.fit, path, &format!("{at}, [fit]"))?;
            if s.methods.is_empty() {
                return Err(err(format!("{at}: `methods` is empty")));
            }
            let distinct: BTreeSet<String> = s.methods.iter().map(|m| m.to_string()).collect();
            if distinct.len() != s.methods.len() {
                return Err(err(format!("{at}: `methods` lists a method twice")));
            }
            let template = FitSpec {
                experiment: info.name.clone(),
                setting: s.name.clone(),
                model,
                data,
                truth_prior,
                fit,
                truth: s.truth,
                method: s.methods[0],
                n: 2,
                replicate: 0,
                draws: s.draws,
            }
            .check()
            .map_err(|e| err(format!("{at}: {e}")))?;
            settings.push(Setting {
                name: s.name,
                truth: s.truth,
                methods: s.methods,
                template,
            });
        }
        super::curves::check_profiles(&file.profiles).map_err(err)?;
        file.report.check().map_err(err)?;
        Ok(RatesKind {
            name: info.name.clone(),
            path: path.to_path_buf(),
            loss,
            settings,
            profiles: file.profiles,
            report: file.report,
        })
    }

    /// Every setting that shares its draws with an earlier one, paired with the first such
    /// (its reference). A setting draws as its `draws`, or else as itself.
    pub fn paired_settings(&self) -> Vec<(&Setting, &Setting)> {
        let source = |s: &Setting| match &s.template.draws {
            Some(d) => (d.experiment.clone(), d.setting.clone()),
            None => (self.name.clone(), s.name.clone()),
        };
        let mut out = Vec::new();
        for (k, s) in self.settings.iter().enumerate() {
            let mine = source(s);
            if let Some(r) = self.settings[..k].iter().find(|r| source(r) == mine) {
                out.push((s, r));
            }
        }
        out
    }

    pub fn profile(&self, name: &str) -> Result<&Profile, LabError> {
        crate::kind::named_profile(&self.name, &self.profiles, name)
    }
}

impl Kind for RatesKind {
    fn log_coverage(&self) -> &'static [crate::reproduce::LogCoverage] {
        ESTIMATOR_LOG_COVERAGE
    }

    const NAME: &'static str = "rates";
    type Flags = NoFlags;
    type Commands = NoCommands;
    type Job = FitJob;
    type Record = FitRecord;

    fn parse(info: &ExperimentInfo, body: toml::Table, _: &NoFlags) -> Result<Self, LabError> {
        RatesKind::parse(info, body)
    }

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
                        let mut spec = s.template.clone().into_inner();
                        (spec.method, spec.n, spec.replicate) = (method, n, replicate);
                        // The template passed; only method, n (>= 2) and replicate changed.
                        jobs.push(spec.check().map_err(|e| {
                            config_error(&self.path, format!("setting `{}`: {e}", s.name))
                        })?);
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

    /// The data and the model's buffers: about 16 f64 per sample and input or output coordinate
    /// (x, y, predictions and residuals), plus a fixed 32 MiB. Measured: 112 MB of peak resident
    /// memory for n = 10⁶ with d = q = S = 2, against 160 MB estimated.
    fn memory_bytes(&self, job: &FitJob) -> Option<u64> {
        let m = &job.model;
        let per_sample = 16 * ((m.slots + 1) * m.d + m.q) as u64;
        Some(job.n as u64 * per_sample + (32 << 20))
    }

    /// A fit's time grows about linearly in n (and in the atoms fitted).
    fn cost(&self, job: &FitJob) -> f64 {
        (job.n * job.model.atoms) as f64
    }

    fn run_job(&self, job: &FitJob, _ctx: &JobContext<'_>) -> anyhow::Result<FitRecord> {
        Ok(hmoe::run_fit(job)?)
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
    use super::metrics::MetricRow;
    use super::*;

    fn parse(text: &str) -> Result<RatesKind, LabError> {
        crate::kind::parse_text(text)
    }

    const BASE: &str = r#"
name = "t"
kind = "rates"
[model]
atoms = 2
[data]
sigma = 0.2
[truth_prior]
std = 0.5
[fit]
bound = 3.0
[[settings]]
name = "a"
truth = "hora-tanh"
methods = ["lora", "hora-tanh"]
data = { sigma = 0.05 }
[[settings]]
name = "b"
truth = "hora-tanh"
methods = ["lora"]
[profiles.quick]
ns = [100, 200]
replicates = 2
"#;

    #[test]
    fn each_part_of_a_setting_comes_from_its_own_section_with_overrides() {
        let k = parse(BASE).unwrap();
        let (a, b) = (&k.settings[0].template, &k.settings[1].template);
        assert_eq!((a.data.sigma, b.data.sigma), (0.05, 0.2));
        assert_eq!(
            (a.truth_prior.std, a.fit.bound, a.model.atoms),
            (0.5, 3.0, 2)
        );
        let jobs = k.jobs("quick").unwrap();
        assert_eq!(jobs.len(), (2 + 1) * 2 * 2);
        assert!(jobs
            .iter()
            .all(|j| j.model.atoms == 2 && j.fit.bound == 3.0));
    }

    #[test]
    fn errors_name_the_section_and_the_field() {
        let e = parse(&BASE.replace("sigma = 0.2", "sigmaa = 0.2"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("[data]") && e.contains("sigmaa"), "{e}");
        let e = parse(&BASE.replace("data = { sigma = 0.05 }", "data = { sigma = -1.0 }"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("setting `a`, [data]") && e.contains("`sigma`"),
            "{e}"
        );
        // A prior whose truncated draws reach the estimator's box is a job-level error.
        let e = parse(&BASE.replace("std = 0.5", "std = 1.5"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`std`") && e.contains("bound"), "{e}");
        // `sigma` is no longer a model key.
        let e = parse(&BASE.replace("atoms = 2", "atoms = 2\nsigma = 0.1"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("[model]") && e.contains("sigma"), "{e}");
    }

    fn committed(name: &str) -> RatesKind {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
        let (info, table) = crate::experiment::read(&dir, name, &["rates"]).unwrap();
        RatesKind::parse(&info, table).unwrap()
    }

    /// The settings of `box-sweep` differ in the box only and share their draws; the jobs of
    /// `rates-overspecified-starts` draw exactly as the committed `rates-overspecified` job of
    /// the same setting, method, n and replicate, while their ids differ.
    #[test]
    fn shared_draws_give_the_same_seeds_across_settings_and_experiments() {
        use hmoe::Seeds;
        let key = |j: &FitJob| (j.method.to_string(), j.n, j.replicate);
        let sweep = committed("box-sweep");
        let jobs = sweep.jobs("paper").unwrap();
        let bounds: BTreeSet<String> = jobs.iter().map(|j| j.fit.bound.to_string()).collect();
        assert_eq!(bounds, ["2", "4", "8"].map(String::from).into());
        for j in &jobs {
            let twin = jobs
                .iter()
                .find(|o| o.setting == "b4" && key(o) == key(j))
                .unwrap();
            assert_eq!(Seeds::for_job(j), Seeds::for_job(twin), "{}", j.setting);
        }
        let old = committed("rates-overspecified").jobs("paper").unwrap();
        let new = committed("rates-overspecified-starts")
            .jobs("paper")
            .unwrap();
        assert_eq!(old.len(), new.len());
        for (o, n) in old.iter().zip(&new) {
            assert_eq!((&o.setting, key(o)), (&n.setting, key(n)));
            assert_eq!(Seeds::for_job(o), Seeds::for_job(n));
            assert_eq!((o.fit.prior_starts, n.fit.prior_starts), (0, 2));
            assert_ne!(
                crate::plan::job_id(o).unwrap(),
                crate::plan::job_id(n).unwrap()
            );
        }
    }

    /// Settings sharing their draws are paired with the first of them by (method, n,
    /// replicate); a fit that failed the guard leaves its pair out; settings with their own
    /// draws get no rows. A setting without `draws` draws as itself, so one that names it
    /// is paired with it.
    #[test]
    fn paired_rows_compare_fits_of_the_same_draws() {
        let with = |draws: &str| {
            BASE.replace(
                "methods = [\"lora\"]\n",
                &format!(
                    "methods = [\"lora\"]\ndraws = {draws}\n[[settings]]\nname = \"c\"\n\
                     truth = \"hora-tanh\"\nmethods = [\"lora\"]\nfit = {{ bound = 2.0 }}\n\
                     draws = {draws}\n"
                ),
            )
        };
        let names = |k: &RatesKind| -> Vec<(String, String)> {
            k.paired_settings()
                .iter()
                .map(|(s, r)| (s.name.clone(), r.name.clone()))
                .collect()
        };
        let own = parse(&with("{ experiment = \"t\", setting = \"a\" }")).unwrap();
        let pair = |s: &str, r: &str| (s.to_string(), r.to_string());
        assert_eq!(names(&own), [pair("b", "a"), pair("c", "a")]);
        assert!(parse(BASE).unwrap().paired_settings().is_empty());
        let k = parse(&with("{ experiment = \"e\", setting = \"s\" }")).unwrap();
        assert_eq!(names(&k), [pair("c", "b")]);
        let row = |setting: &str, rep: u32, voronoi: f64, objective: f64, ok: bool| -> MetricRow {
            let ids = metrics::FitIds {
                id: String::new(),
                setting: setting.into(),
                truth: "hora-tanh".into(),
                method: "lora".into(),
            };
            let fit = metrics::FitColumns {
                n: 100,
                replicate: rep,
                voronoi,
                regression: 0.0,
                objective,
                objective_at_truth: 1.0,
                grad_norm: 0.0,
                iterations: 1,
                converged: false,
                starts: 2,
                status: if ok { "ok" } else { "guard_failed" }.into(),
            };
            let tail = metrics::Tail {
                truth_in_family: true,
            };
            (ids, fit, tail)
        };
        let rows = vec![
            row("b", 0, 2.0, 1.0, true),
            row("b", 1, 4.0, 1.0, true),
            row("c", 0, 1.0, 0.5, true),
            row("c", 1, 4.0, 1.0, true),
            // `a` has its own draws: never paired.
            row("a", 0, 9.0, 1.0, true),
        ];
        let p = metrics::paired(&k, k.profile("quick").unwrap(), &rows);
        assert_eq!(p.len(), 1, "{p:?}");
        let r = &p[0];
        assert_eq!((r.setting.as_str(), r.reference.as_str()), ("c", "b"));
        assert_eq!((r.n, r.pairs, r.identical), (100, 2, 1));
        assert_eq!((r.lower_fraction, r.objective_lower_fraction), (0.5, 0.5));
        assert_eq!(
            (r.ratio_q25, r.ratio_median, r.ratio_q75),
            (0.625, 0.75, 0.875)
        );
        assert_eq!(r.ratio_of_means, 5.0 / 6.0);
        assert_eq!(r.objective_rel_diff_median, -0.25);
        let mut failed = rows.clone();
        failed[2] = row("c", 0, 1.0, 0.5, false);
        let p = metrics::paired(&k, k.profile("quick").unwrap(), &failed);
        assert_eq!((p[0].pairs, p[0].identical), (1, 1));
    }
}
