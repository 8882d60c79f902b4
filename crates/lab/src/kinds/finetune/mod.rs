//! The `finetune` kind: fine-tuning MiniLM on the tweets with each method at several fractions
//! of the training set and several seeds (the paper's low-data experiment), one job per
//! method × fraction × seed; metrics are test accuracy and macro-F1 per run.
//!
//! Files: this one parses the experiment and runs a job; `metrics.rs` writes the tables,
//! `report.rs` the figure and summary, `decision.rs` applies the experiment's decision rule,
//! `assets.rs` finds and fetches the pinned assets,
//! `adapters.rs` exports and applies the adapters runs save (`hora export`, `hora predict`).
pub mod adapters;
pub mod assets;
pub mod commands;
pub mod decision;
mod metrics;
mod report;

use crate::error::LabError;
use crate::experiment::{config_error, from_table, merge_tables, ExperimentInfo};
use crate::kind::{JobContext, Kind, Records, Report, Written};
use crate::layout::Dirs;
use anyhow::Context;
use commands::{FinetuneCommands, FinetuneFlags};
use finetune::{AdapterKind, Assets, ParamGuard, RunRecord, TrainConfig, ValidTrainConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinetuneFile {
    /// `finetune::TrainConfig` fields shared by every job.
    #[serde(default)]
    train: toml::Table,
    /// `head-only`, `lora`, `mh-lora`, `replora`, `hora`, `full`, or a name from `[variants]`.
    methods: Vec<String>,
    /// Named methods: `method` (one of the six) and any `[train]` overrides, for example
    /// `[variants.hora-r12] method = "hora", rank = 12`.
    #[serde(default)]
    variants: BTreeMap<String, toml::Table>,
    profiles: BTreeMap<String, ProfileFile>,
    /// The rule a profile's verdict is read by (`decision.rs`), committed before its records.
    decision: Option<decision::DecisionRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    /// The training budgets as fractions of every class ...
    #[serde(default)]
    fractions: Vec<f64>,
    /// ... or as examples per class (`train_per_class`; issue 25): one of the two.
    #[serde(default)]
    per_class: Vec<usize>,
    seeds: Vec<u64>,
    /// Overrides of `[train]` for this profile only.
    #[serde(default)]
    train: toml::Table,
    /// The methods of this profile, when not the experiment's `methods`.
    methods: Option<Vec<String>>,
    /// The peak learning rate per method name (`full_lr` for full fine-tuning, whose head keeps
    /// `lr`), for example as chosen on validation by a profile with `lr_grid`: one rate, or one
    /// per budget (`lora = { 4 = 1e-3, 16 = 3e-3, 64 = 1e-3 }`, keyed by examples per class, or
    /// by fraction in quotes, `{ "0.01" = 3e-3 }`; every budget of the profile named).
    #[serde(default)]
    lr: BTreeMap<String, LrSetting>,
    /// Multipliers of each method's learning rate (`full_lr` for full fine-tuning): every
    /// method runs at each, labelled `name@lr` in the tables, and `lr-grid.csv` picks the best
    /// on validation macro-F1. Empty: the methods' own rates.
    #[serde(default)]
    lr_grid: Vec<f64>,
}

/// A method's rate in a profile: one for every budget, or one per budget.
#[derive(Deserialize)]
#[serde(untagged)]
enum LrSetting {
    One(f64),
    PerBudget(BTreeMap<String, f64>),
}

impl LrSetting {
    /// The rate at one budget (its key as the profile writes it, `16` or `0.01`), checked: every
    /// budget of the profile is named, and nothing else.
    fn at(
        &self,
        at: &str,
        method: &str,
        budget: &toml::Value,
        budgets: &[toml::Value],
    ) -> Result<f64, String> {
        match self {
            LrSetting::One(lr) => Ok(*lr),
            LrSetting::PerBudget(by) => {
                let key = |v: &toml::Value| v.to_string();
                let want: Vec<String> = budgets.iter().map(key).collect();
                let as_budget = |k: &str| -> Option<String> {
                    let v: toml::Value = k
                        .parse::<i64>()
                        .map(toml::Value::Integer)
                        .ok()
                        .or_else(|| k.parse::<f64>().ok().map(toml::Value::Float))?;
                    Some(key(&v))
                };
                if let Some(k) = by
                    .keys()
                    .find(|k| as_budget(k).is_none_or(|b| !want.contains(&b)))
                {
                    return Err(format!(
                        "{at}.lr.{method}: `{k}` is not a budget of the profile ({})",
                        want.join(", ")
                    ));
                }
                let here = key(budget);
                by.iter()
                    .find(|(k, _)| as_budget(k).as_deref() == Some(here.as_str()))
                    .map(|(_, lr)| *lr)
                    .ok_or_else(|| {
                        format!("{at}.lr.{method}: no rate for the budget {here} (give every budget of the profile)")
                    })
            }
        }
    }
}

/// One fine-tuning run: the model it starts from and the full training configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneJob {
    /// `all-MiniLM-L6-v2` (the pinned, hash-checked checkpoint) or the `--model-dir` used.
    pub model: String,
    pub train: ValidTrainConfig,
}

pub struct FinetuneKind {
    pub name: String,
    /// Every job of each profile, checked.
    pub profiles: BTreeMap<String, Vec<FinetuneJob>>,
    /// Per profile, the label of every job (its method name, `name@lr` on an lr grid) by the
    /// job's JSON, and the labels in the experiment's order.
    labels: BTreeMap<String, (BTreeMap<String, String>, Vec<String>)>,
    /// Per profile, whether it is an lr grid.
    grids: BTreeMap<String, bool>,
    /// The variants whose method is lora (lora at another rate or rank): the paired table
    /// compares every method with each of them as well as with lora and full.
    lora_variants: Vec<String>,
    /// `[decision]`, checked against its profile.
    pub decision: Option<decision::DecisionRule>,
    opts: FinetuneFlags,
    assets: OnceLock<Assets>,
}

pub const PINNED_MODEL: &str = "all-MiniLM-L6-v2";

/// What peft's `base_model_name_or_path` says for a job's model: the hub name of the pinned
/// checkpoint, or the local folder given with `--model-dir`.
pub fn hub_name(model: &str) -> String {
    if model == PINNED_MODEL {
        finetune::MINILM_HUB_NAME.to_string()
    } else {
        model.to_string()
    }
}

impl FinetuneKind {
    pub fn parse(
        info: &ExperimentInfo,
        body: toml::Table,
        opts: &FinetuneFlags,
    ) -> Result<Self, LabError> {
        let path = &info.path;
        let file: FinetuneFile =
            from_table(body, path, "top level (besides name, kind, description)")?;
        if file.methods.is_empty() {
            return Err(config_error(path, "`methods` is empty"));
        }
        let model = match &opts.model_dir {
            Some(d) => std::fs::canonicalize(d)
                .unwrap_or_else(|_| d.clone())
                .display()
                .to_string(),
            None => PINNED_MODEL.to_string(),
        };
        for (name, v) in &file.variants {
            if AdapterKind::from_name(name).is_ok() {
                return Err(config_error(
                    path,
                    format!(
                    "[variants.{name}]: a variant needs a name of its own (not one of the methods)"
                ),
                ));
            }
            match v.get("method").and_then(|m| m.as_str()) {
                Some(m) if AdapterKind::from_name(m).is_ok() => {}
                _ => {
                    return Err(config_error(
                        path,
                        format!(
                            "[variants.{name}]: `method` must be {}",
                            finetune::METHODS_ALLOWED
                        ),
                    ))
                }
            }
        }
        let all_methods = file
            .profiles
            .values()
            .filter_map(|p| p.methods.as_ref())
            .flatten()
            .chain(&file.methods);
        for m in all_methods {
            if AdapterKind::from_name(m).is_err() && !file.variants.contains_key(m) {
                return Err(config_error(
                    path,
                    format!(
                        "method `{m}` is neither {} nor a `[variants.{m}]`",
                        finetune::METHODS_ALLOWED
                    ),
                ));
            }
        }
        let mut profiles = BTreeMap::new();
        let mut labels = BTreeMap::new();
        let mut grids = BTreeMap::new();
        for (pname, p) in &file.profiles {
            let (jobs, by_job, order) = profile_jobs(path, &file, &model, pname, p)?;
            profiles.insert(pname.clone(), jobs);
            labels.insert(pname.clone(), (by_job, order));
            grids.insert(pname.clone(), !p.lr_grid.is_empty());
        }
        if profiles.is_empty() {
            return Err(config_error(
                path,
                "no `[profiles.<name>]`: at least one is needed (quick, paper)",
            ));
        }
        let lora_variants = file
            .variants
            .iter()
            .filter(|(_, v)| {
                v.get("method").and_then(|m| m.as_str()) == Some(AdapterKind::Lora.name())
            })
            .map(|(name, _)| name.clone())
            .collect();
        if let Some(rule) = &file.decision {
            let methods = labels.get(&rule.profile).map(|l| l.1.as_slice());
            rule.check(path, methods)?;
        }
        Ok(FinetuneKind {
            name: info.name.clone(),
            profiles,
            labels,
            grids,
            lora_variants,
            decision: file.decision,
            opts: opts.clone(),
            assets: OnceLock::new(),
        })
    }

    /// The method labels of a profile, in the experiment's order.
    pub fn methods(&self, profile: &str) -> &[String] {
        self.labels.get(profile).map_or(&[], |l| l.1.as_slice())
    }

    /// The references of the paired table, in order: lora, every variant of lora, full.
    pub fn paired_references(&self) -> Vec<String> {
        let mut r = self.lora_family();
        r.push(AdapterKind::Full.name().to_string());
        r
    }

    /// lora and every variant of it (the same adapter at other settings).
    pub fn lora_family(&self) -> Vec<String> {
        let mut r = vec![AdapterKind::Lora.name().to_string()];
        r.extend(self.lora_variants.iter().cloned());
        r
    }

    /// A job's label in a profile: its method name, or `name@lr` on an lr grid.
    pub fn method_label(&self, profile: &str, job: &FinetuneJob) -> String {
        serde_json::to_string(job)
            .ok()
            .and_then(|k| self.labels.get(profile)?.0.get(&k).cloned())
            .unwrap_or_else(|| job.train.method.to_string())
    }

    /// Whether a profile is a learning-rate grid.
    pub fn is_grid(&self, profile: &str) -> bool {
        self.grids.get(profile).copied().unwrap_or(false)
    }

    /// The experiment's split of a task's data, shared by every job: `split.json` for the
    /// tweets (every committed run), `split-<task>.json` for another task.
    pub fn split_path(dirs: &Dirs, task: finetune::data::Task) -> PathBuf {
        match task {
            finetune::data::Task::Tweets => dirs.experiment.join("split.json"),
            t => dirs.experiment.join(format!("split-{}.json", t.name())),
        }
    }
}

/// A profile's jobs, each job's label by its key, and the labels in order.
type ProfileJobs = (Vec<FinetuneJob>, BTreeMap<String, String>, Vec<String>);

/// The jobs of one profile, each job's label by its key, and the labels in the experiment's
/// order: every method (or variant) at every rate of the grid, budget and seed, checked.
fn profile_jobs(
    path: &std::path::Path,
    file: &FinetuneFile,
    model: &str,
    pname: &str,
    p: &ProfileFile,
) -> Result<ProfileJobs, LabError> {
    let at = format!("[profiles.{pname}]");
    if p.fractions.is_empty() == p.per_class.is_empty() || p.seeds.is_empty() {
        return Err(config_error(
            path,
            format!(
                "{at}: give the budgets as `fractions` or as `per_class` (one of the \
                 two, non-empty), and non-empty `seeds`"
            ),
        ));
    }
    if p.per_class.contains(&0) {
        return Err(config_error(
            path,
            format!("{at}: `per_class` budgets must be at least 1"),
        ));
    }
    let budgets: Vec<(&str, toml::Value, String)> = if p.per_class.is_empty() {
        p.fractions
            .iter()
            .map(|&f| {
                (
                    "train_fraction",
                    toml::Value::Float(f),
                    format!("fraction {f}"),
                )
            })
            .collect()
    } else {
        p.per_class
            .iter()
            .map(|&k| {
                (
                    "train_per_class",
                    toml::Value::Integer(k as i64),
                    format!("{k} per class"),
                )
            })
            .collect()
    };
    let methods = p.methods.as_ref().unwrap_or(&file.methods);
    if methods.is_empty() {
        return Err(config_error(path, format!("{at}: `methods` is empty")));
    }
    if let Some(m) = p.lr.keys().find(|m| !methods.contains(m)) {
        return Err(config_error(
            path,
            format!("{at}.lr: `{m}` is not in `methods`"),
        ));
    }
    if let Some(x) = p.lr_grid.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
        return Err(config_error(
            path,
            format!("{at}: lr_grid entry {x} is not a number > 0"),
        ));
    }
    let base = merge_tables(&file.train, &p.train);
    let grid: Vec<Option<f64>> = if p.lr_grid.is_empty() {
        vec![None]
    } else {
        p.lr_grid.iter().map(|&x| Some(x)).collect()
    };
    let mut jobs = Vec::new();
    let mut by_job = BTreeMap::new();
    let mut order = Vec::new();
    for method in methods {
        let mut t = match file.variants.get(method) {
            Some(v) => merge_tables(&base, v),
            None => {
                let mut t = base.clone();
                t.insert("method".into(), toml::Value::String(method.clone()));
                t
            }
        };
        let full = t.get("method").and_then(|m| m.as_str()) == Some(AdapterKind::Full.name());
        let lr_key = if full { "full_lr" } else { "lr" };
        match p.lr.get(method) {
            Some(LrSetting::One(lr)) => {
                t.insert(lr_key.into(), toml::Value::Float(*lr));
            }
            Some(LrSetting::PerBudget(_)) if !p.lr_grid.is_empty() => {
                return Err(config_error(
                    path,
                    format!("{at}.lr.{method}: a rate per budget and `lr_grid` do not combine"),
                ));
            }
            _ => {}
        }
        for scale in &grid {
            let mut t = t.clone();
            let mut label = method.clone();
            if let Some(x) = scale {
                let what = format!("{at}, method `{method}`, [train]");
                let own: TrainConfig = from_table(t.clone(), path, &what)?;
                // Six significant digits: 3 × 5e-5 is 1.5e-4, not 1.5000000000000001e-4.
                let lr = if full { own.full_lr } else { own.lr } * x;
                let lr: f64 = format!("{lr:.5e}").parse().unwrap_or(lr);
                t.insert(lr_key.into(), toml::Value::Float(lr));
                label = format!("{method}@{lr}");
            }
            order.push(label.clone());
            for (key, value, budget) in &budgets {
                let mut t = t.clone();
                if let Some(setting @ LrSetting::PerBudget(_)) = p.lr.get(method) {
                    let values: Vec<toml::Value> = budgets.iter().map(|b| b.1.clone()).collect();
                    let lr = setting
                        .at(&at, method, value, &values)
                        .map_err(|e| config_error(path, e))?;
                    t.insert(lr_key.into(), toml::Value::Float(lr));
                }
                for &seed in &p.seeds {
                    let mut t = t.clone();
                    t.insert((*key).into(), value.clone());
                    t.insert("seed".into(), toml::Value::Integer(seed as i64));
                    let what = format!("{at}, method `{method}`, {budget}, [train]");
                    let train = from_table::<TrainConfig>(t, path, &what)?
                        .check()
                        .map_err(|e| config_error(path, format!("{what}: {e}")))?;
                    let job = FinetuneJob {
                        model: model.to_string(),
                        train,
                    };
                    let key = serde_json::to_string(&job)
                        .map_err(|e| config_error(path, e.to_string()))?;
                    if let Some(other) = by_job.insert(key, label.clone()) {
                        return Err(config_error(path, format!(
                            "{at}: methods `{other}` and `{label}` make the same job ({budget}, seed {seed})"
                        )));
                    }
                    jobs.push(job);
                }
            }
        }
    }
    // One split file per task serves the experiment, so every job must ask for the
    // same split; and the tables of a profile compare runs of one task.
    let first = &jobs[0].train;
    if let Some(j) = jobs.iter().find(|j| j.train.task != first.task) {
        return Err(config_error(
            path,
            format!(
                "{at}: every job of a profile must have the same task (method {} has {}, not {})",
                j.train.method, j.train.task, first.task
            ),
        ));
    }
    if let Some(j) = jobs.iter().find(|j| {
        (
            j.train.split_seed,
            j.train.val_fraction,
            j.train.test_fraction,
        ) != (first.split_seed, first.val_fraction, first.test_fraction)
    }) {
        return Err(config_error(path, format!(
            "{at}: every job must use the same split_seed, val_fraction and test_fraction (method {} differs)",
            j.train.method
        )));
    }
    Ok((jobs, by_job, order))
}

impl Kind for FinetuneKind {
    const NAME: &'static str = "finetune";
    type Flags = FinetuneFlags;
    type Commands = FinetuneCommands;
    type Job = FinetuneJob;
    type Record = RunRecord;

    fn parse(
        info: &ExperimentInfo,
        body: toml::Table,
        flags: &FinetuneFlags,
    ) -> Result<Self, LabError> {
        FinetuneKind::parse(info, body, flags)
    }

    fn profiles(&self) -> Vec<String> {
        crate::kind::profile_order(self.profiles.keys().cloned())
    }

    fn jobs(&self, profile: &str) -> Result<Vec<FinetuneJob>, LabError> {
        crate::kind::named_profile(&self.name, &self.profiles, profile).cloned()
    }

    fn judged_profile(&self) -> Option<(String, &'static str)> {
        self.decision
            .as_ref()
            .map(|d| (d.profile.clone(), "[decision]"))
    }

    fn label(&self, job: &FinetuneJob) -> String {
        let method = self
            .labels
            .values()
            .find_map(|(by_job, _)| by_job.get(&serde_json::to_string(job).ok()?).cloned())
            .unwrap_or_else(|| job.train.method.to_string());
        if job.train.train_per_class > 0 {
            format!(
                "{method} {}/class seed={}",
                job.train.train_per_class, job.train.seed
            )
        } else {
            format!(
                "{method} fraction={} seed={}",
                job.train.train_fraction, job.train.seed
            )
        }
    }

    /// Training time grows with the examples seen (steps × batch, the steps capped by
    /// `max_steps`); evaluation and start-up add a fixed part. Only the progress bar's estimate
    /// reads it.
    fn cost(&self, job: &FinetuneJob) -> f64 {
        let t = &job.train;
        let examples = if t.train_per_class > 0 {
            t.train_per_class * t.task.labels().len()
        } else {
            // As a share of the tweets' 30,526 training examples.
            (t.train_fraction * 30_526.0).ceil() as usize
        }
        .max(1);
        let mut steps = examples.div_ceil(t.batch_size) * t.epochs;
        if t.max_steps > 0 {
            steps = steps.min(t.max_steps);
        }
        (steps * t.batch_size.min(examples)) as f64 + 305.0
    }

    /// Seed by seed, and within a seed fraction by fraction (every method of a (fraction, seed)
    /// in a row): a profile interrupted part-way leaves complete pairs for the paired table.
    fn run_rank(&self, job: &FinetuneJob) -> f64 {
        let budget = if job.train.train_per_class > 0 {
            job.train.train_per_class as f64
        } else {
            job.train.train_fraction
        };
        1e7 * job.train.seed as f64 + budget
    }

    /// candle already uses every core inside one run.
    fn default_threads(&self) -> Option<usize> {
        Some(1)
    }

    fn prepare(&self, _dirs: &Dirs) -> anyhow::Result<()> {
        if self.assets.get().is_none() {
            let a = assets::locate(&self.opts)?;
            let _ = self.assets.set(a);
        }
        Ok(())
    }

    fn run_job(&self, job: &FinetuneJob, ctx: &JobContext<'_>) -> anyhow::Result<RunRecord> {
        let assets = match self.assets.get() {
            Some(a) => a.clone(),
            None => assets::locate(&self.opts)?,
        };
        let bar = ctx.progress.add(indicatif::ProgressBar::new(0));
        bar.set_message(self.label(job));
        let out = finetune::train_classifier(
            &job.train,
            &assets,
            &Self::split_path(ctx.dirs, job.train.task),
            Some(bar.clone()),
        );
        bar.finish_and_clear();
        let trained = out?;
        // The adapter is a side file, written before the record: a job whose record exists has
        // its adapter too, and a failed save leaves no record, so the job runs again.
        if job.train.method != AdapterKind::Full || self.opts.save_full {
            let dir = ctx.dirs.adapter(ctx.id);
            let adapter = trained.adapter_context(&hub_name(&job.model), &assets);
            trained
                .model
                .save(&dir, &adapter)
                .with_context(|| format!("cannot save the adapter to {}", dir.display()))?;
        }
        Ok(trained.record)
    }

    fn metrics(&self, profile: &str, done: &Records<'_, Self>, dirs: &Dirs) -> Written {
        metrics::write(self, profile, done, dirs)
    }

    fn report(&self, profile: &str, dirs: &Dirs) -> anyhow::Result<Report> {
        report::write(self, profile, dirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn committed_records() -> Vec<(String, Value)> {
        let raw = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../results/finetune-lowdata/raw");
        let mut out = Vec::new();
        for f in std::fs::read_dir(&raw).expect("committed finetune records") {
            let path = f.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                out.push((v["id"].as_str().unwrap().to_string(), v["job"].clone()));
            }
        }
        out
    }

    /// The job key of this kind: every committed record's job reads, re-serialises to the same
    /// JSON and hashes to its id, so the key's layout (version 1) has not moved.
    #[test]
    fn committed_finetune_jobs_keep_their_ids() {
        let records = committed_records();
        assert!(!records.is_empty());
        for (id, stored) in &records {
            let job: FinetuneJob = serde_json::from_value(stored.clone())
                .unwrap_or_else(|e| panic!("record {id}: the stored job does not read: {e}"));
            let back = serde_json::to_value(&job).unwrap();
            assert_eq!(&back, stored, "record {id}: the job does not round-trip");
            assert_eq!(&crate::plan::job_id(&job).unwrap(), id);
        }
    }

    /// Version 1 of the layout: a new `TrainConfig` field must be skipped while it holds its
    /// default (`skip_serializing_if`), or every committed finetune id would move.
    #[test]
    fn the_finetune_job_layout_is_frozen() {
        let job = FinetuneJob {
            model: PINNED_MODEL.into(),
            train: TrainConfig::default().check().unwrap(),
        };
        let v = serde_json::to_value(&job).unwrap();
        let mut keys: Vec<&str> = v["train"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "alpha",
                "batch_size",
                "dropout",
                "epochs",
                "eval_batch_size",
                "full_lr",
                "generator_activation",
                "lr",
                "max_eval_examples",
                "max_len",
                "max_steps",
                "method",
                "patience",
                "rank",
                "seed",
                "split_seed",
                "test_fraction",
                "train_fraction",
                "val_fraction",
                "warmup_fraction",
                "weight_decay"
            ]
        );
        assert_eq!(v.as_object().unwrap().len(), 2);
    }

    fn parse(text: &str) -> Result<FinetuneKind, LabError> {
        crate::kind::parse_text(text)
    }

    const GRID: &str = r#"
        methods = ["lora", "full", "hora-r13"]
        [variants.hora-r13]
        method = "hora"
        rank = 13
        [profiles.quick]
        fractions = [0.01]
        seeds = [0]
        [profiles.grid]
        methods = ["lora", "full"]
        fractions = [0.01, 0.02]
        seeds = [0, 1]
        lr_grid = [1.0, 3.0]
        [profiles.paper]
        fractions = [0.01]
        seeds = [0]
        [profiles.paper.lr]
        lora = 0.003
        full = 0.0001
        hora-r13 = 0.01
    "#;

    /// The paired table's references: lora, every variant of lora (in name order), full; a
    /// variant of another method is not one.
    #[test]
    fn variants_of_lora_are_paired_references() {
        assert_eq!(parse(GRID).unwrap().paired_references(), ["lora", "full"]);
        let text = GRID.replace(
            "[profiles.quick]",
            "[variants.lora-3e-3]\nmethod = \"lora\"\nlr = 0.003\n[profiles.quick]",
        );
        let kind = parse(&text).unwrap();
        assert_eq!(kind.paired_references(), ["lora", "lora-3e-3", "full"]);
        let rows = |m: &str, acc: [f64; 2]| -> Vec<metrics::RunRow> {
            (0..2)
                .map(|seed| metrics::tests::run(m, 0.01, seed, acc[seed as usize]))
                .collect()
        };
        let mut all = rows("lora", [0.4, 0.5]);
        all.extend(rows("lora-3e-3", [0.7, 0.6]));
        all.extend(rows("hora", [0.65, 0.65]));
        let methods = ["lora", "lora-3e-3", "hora"].map(String::from);
        let p = metrics::paired(&methods, &kind.paired_references(), &all);
        let hora: Vec<(&str, f64, usize)> = p
            .iter()
            .filter(|r| r.method == "hora")
            .map(|r| (r.against.as_str(), r.accuracy_diff, r.wins))
            .collect();
        assert_eq!(hora.len(), 2);
        assert_eq!((hora[0].0, hora[0].2), ("lora", 2));
        assert!((hora[0].1 - 0.2).abs() < 1e-12);
        assert_eq!((hora[1].0, hora[1].2), ("lora-3e-3", 1));
        assert!(hora[1].1.abs() < 1e-12);
    }

    /// Variants, per-profile methods and rates, and an lr grid become the jobs they say, each
    /// labelled by its method name (name@lr on a grid).
    #[test]
    fn variants_rates_and_grids_make_the_jobs_they_name() {
        let kind = parse(GRID).unwrap();
        let quick = &kind.profiles["quick"];
        assert_eq!(kind.methods("quick"), ["lora", "full", "hora-r13"]);
        let variant = &quick[2].train;
        assert_eq!((variant.method, variant.rank), (AdapterKind::Hora, 13));
        assert_eq!(kind.method_label("quick", &quick[2]), "hora-r13");
        assert!(!kind.is_grid("quick"));

        let grid = &kind.profiles["grid"];
        assert_eq!(grid.len(), 2 * 2 * 2 * 2);
        assert!(kind.is_grid("grid"));
        assert_eq!(
            kind.methods("grid"),
            ["lora@0.001", "lora@0.003", "full@0.00005", "full@0.00015"]
        );
        // full's grid moves the encoder's rate; its head keeps lr.
        let full: Vec<&FinetuneJob> = grid
            .iter()
            .filter(|j| j.train.method == AdapterKind::Full)
            .collect();
        assert!(full.iter().all(|j| j.train.lr == 1e-3));
        assert_eq!(
            kind.method_label("grid", full[full.len() - 1]),
            "full@0.00015"
        );

        let paper = &kind.profiles["paper"];
        let rates: Vec<(f64, f64)> = paper
            .iter()
            .map(|j| (j.train.lr, j.train.full_lr))
            .collect();
        assert_eq!(rates, [(0.003, 5e-5), (1e-3, 1e-4), (0.01, 5e-5)]);
    }

    /// A run takes a grid seed by seed, fraction by fraction, every method of a pair in a row.
    #[test]
    fn runs_fill_whole_pairs_first() {
        let kind = parse(GRID).unwrap();
        let mut jobs: Vec<&FinetuneJob> = kind.profiles["grid"].iter().collect();
        jobs.sort_by(|a, b| kind.run_rank(a).total_cmp(&kind.run_rank(b)));
        let order: Vec<(u64, f64)> = jobs
            .iter()
            .map(|j| (j.train.seed, j.train.train_fraction))
            .collect();
        let mut expected = Vec::new();
        for seed in [0, 1] {
            for fraction in [0.01, 0.02] {
                expected.extend([(seed, fraction); 4]);
            }
        }
        assert_eq!(order, expected);
    }

    #[test]
    fn bad_variants_and_rates_are_named() {
        let err = |text: &str| parse(text).err().expect("must fail").to_string();
        let base = "[profiles.quick]\nfractions = [0.01]\nseeds = [0]\n";
        let e = err(&format!("methods = [\"lora\", \"hora-x\"]\n{base}"));
        assert!(e.contains("hora-x"), "{e}");
        let e = err(&format!(
            "methods = [\"v\"]\n[variants.v]\nmethod = \"lorax\"\n{base}"
        ));
        assert!(e.contains("[variants.v]"), "{e}");
        let e = err(&format!(
            "methods = [\"lora\"]\n[variants.lora]\nmethod = \"hora\"\n{base}"
        ));
        assert!(e.contains("name of its own"), "{e}");
        let e = err(&format!(
            "methods = [\"lora\"]\n{base}[profiles.quick.lr]\nhora = 0.01\n"
        ));
        assert!(e.contains("`hora` is not in `methods`"), "{e}");
        let e = err(&format!("methods = [\"lora\"]\n{base}lr_grid = [0.0]\n"));
        assert!(e.contains("lr_grid"), "{e}");
        // Two names for one job (a variant that changes nothing) would share a record.
        let e = err(&format!(
            "methods = [\"lora\", \"same\"]\n[variants.same]\nmethod = \"lora\"\n{base}"
        ));
        assert!(e.contains("make the same job"), "{e}");
    }

    /// A rate per budget (issue 25: chosen on validation at every budget): each job takes its
    /// budget's rate; a missing or unknown budget, or a per-budget rate on an lr grid, is named.
    #[test]
    fn a_rate_per_budget_reaches_its_jobs() {
        let file = |lr: &str, extra: &str| {
            format!(
                "methods = [\"lora\", \"full\"]\n[profiles.paper]\nper_class = [4, 16]\n\
                 seeds = [0, 1]\n{extra}[profiles.paper.lr]\n{lr}"
            )
        };
        let kind = parse(&file("lora = { 4 = 0.003, 16 = 0.001 }\nfull = 1e-4\n", "")).unwrap();
        let got: Vec<(AdapterKind, usize, f64, f64)> = kind.profiles["paper"]
            .iter()
            .map(|j| {
                (
                    j.train.method,
                    j.train.train_per_class,
                    j.train.lr,
                    j.train.full_lr,
                )
            })
            .collect();
        let lora = AdapterKind::Lora;
        let full = AdapterKind::Full;
        assert_eq!(
            got,
            [
                (lora, 4, 0.003, 5e-5),
                (lora, 4, 0.003, 5e-5),
                (lora, 16, 0.001, 5e-5),
                (lora, 16, 0.001, 5e-5),
                (full, 4, 1e-3, 1e-4),
                (full, 4, 1e-3, 1e-4),
                (full, 16, 1e-3, 1e-4),
                (full, 16, 1e-3, 1e-4),
            ]
        );
        let err = |text: String| parse(&text).err().expect("must fail").to_string();
        let e = err(file("lora = { 4 = 0.003 }\n", ""));
        assert!(e.contains("no rate for the budget 16"), "{e}");
        let e = err(file("lora = { 4 = 0.003, 16 = 0.001, 64 = 0.01 }\n", ""));
        assert!(e.contains("`64` is not a budget"), "{e}");
        let e = err(file(
            "lora = { 4 = 0.003, 16 = 0.001 }\n",
            "lr_grid = [1.0, 3.0]\n",
        ));
        assert!(e.contains("do not combine"), "{e}");
    }

    /// `[decision]` names a profile of the file and methods of it; anything else is refused.
    #[test]
    fn a_decision_rule_is_checked_against_its_profile() {
        let file = |decision: &str| {
            format!(
                "methods = [\"lora\", \"hora\"]\n[profiles.paper]\nper_class = [4, 16]\n\
                 seeds = [0, 1]\n[decision]\n{decision}"
            )
        };
        let good = "profile = \"paper\"\nmethod = \"hora\"\nreference = \"lora\"\n\
                    score = \"macro-f1\"\nalpha = 0.025\nmargin = 0.01\n";
        let kind = parse(&file(good)).unwrap();
        let rule = kind.decision.expect("the rule");
        assert_eq!(rule.score, decision::Score::MacroF1);
        let err = |text: String| parse(&text).err().expect("must fail").to_string();
        let e = err(file(&good.replace("\"paper\"", "\"papers\"")));
        assert!(e.contains("profile `papers`"), "{e}");
        let e = err(file(&good.replace("\"hora\"", "\"mh-lora\"")));
        assert!(e.contains("`mh-lora` is not a method"), "{e}");
        let e = err(file(&format!("{good}scores = 1\n")));
        assert!(e.contains("scores"), "{e}");
    }

    /// Budgets as examples per class (issue 25): each job trains on k of every class, the
    /// task and the step-wise protocol pass through `[train]`, and a profile takes one kind of
    /// budget and one task.
    #[test]
    fn per_class_budgets_make_one_job_per_budget_and_seed() {
        let kind = parse(
            r#"
            methods = ["lora", "hora"]
            [train]
            task = "newsgroups"
            eval_every = 10
            min_steps = 50
            max_steps = 400
            epochs = 1000
            [profiles.quick]
            per_class = [4, 16]
            seeds = [0, 1]
            "#,
        )
        .unwrap();
        let jobs = &kind.profiles["quick"];
        assert_eq!(jobs.len(), 8);
        let budgets: std::collections::BTreeSet<usize> =
            jobs.iter().map(|j| j.train.train_per_class).collect();
        assert_eq!(budgets.into_iter().collect::<Vec<_>>(), vec![4, 16]);
        assert!(jobs
            .iter()
            .all(|j| j.train.task == finetune::data::Task::Newsgroups
                && j.train.train_fraction == 1.0
                && j.train.eval_every == 10));
        assert_eq!(kind.label(&jobs[1]), "lora 4/class seed=1");
        // The new keys are in the job key only when set: a tweets job's key is as before.
        let key = serde_json::to_value(&jobs[0]).unwrap();
        assert_eq!(key["train"]["task"], "newsgroups");
        assert_eq!(key["train"]["train_per_class"], 4);
        let err = |t: &str| parse(t).err().map(|e| e.to_string()).unwrap_or_default();
        let both = err(
            "methods = [\"lora\"]\n[profiles.quick]\nfractions = [0.01]\nper_class = [4]\nseeds = [0]\n",
        );
        assert!(both.contains("one of the two"), "{both}");
        let zero = err("methods = [\"lora\"]\n[profiles.quick]\nper_class = [0]\nseeds = [0]\n");
        assert!(zero.contains("at least 1"), "{zero}");
        let mixed = err(
            "methods = [\"lora\", \"hora-ng\"]\n[variants.hora-ng]\nmethod = \"hora\"\ntask = \"newsgroups\"\n[profiles.quick]\nper_class = [4]\nseeds = [0]\n",
        );
        assert!(mixed.contains("same task"), "{mixed}");
    }
}
