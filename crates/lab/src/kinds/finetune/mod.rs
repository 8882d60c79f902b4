//! The `finetune` kind: fine-tuning MiniLM on the tweets with each method at several fractions
//! of the training set and several seeds (the paper's low-data experiment), one job per
//! method × fraction × seed; metrics are test accuracy and macro-F1 per run.
//!
//! Files: this one parses the experiment and runs a job; `metrics.rs` writes the tables,
//! `report.rs` the figure and summary, `assets.rs` finds and fetches the pinned assets,
//! `adapters.rs` exports and applies the adapters runs save (`hora export`, `hora predict`).
pub mod adapters;
pub mod assets;
mod metrics;
mod report;

use crate::error::LabError;
use crate::experiment::{config_error, from_table, merge_tables, ExperimentInfo, KindOptions};
use crate::kind::{JobContext, Kind, Records, Report, Written};
use crate::layout::Dirs;
use anyhow::Context;
use finetune::{AdapterKind, Assets, RunRecord, TrainConfig, ValidTrainConfig};
pub use metrics::{GroupRow, RunRow, TimingRow};
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
    /// `head-only`, `lora`, `mh-lora`, `replora`, `hora`, `full`.
    methods: Vec<String>,
    profiles: BTreeMap<String, ProfileFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    fractions: Vec<f64>,
    seeds: Vec<u64>,
    /// Overrides of `[train]` for this profile only.
    #[serde(default)]
    train: toml::Table,
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
    pub methods: Vec<String>,
    /// Every job of each profile, checked.
    pub profiles: BTreeMap<String, Vec<FinetuneJob>>,
    opts: KindOptions,
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
        opts: &KindOptions,
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
        let mut profiles = BTreeMap::new();
        for (pname, p) in &file.profiles {
            let at = format!("[profiles.{pname}]");
            if p.fractions.is_empty() || p.seeds.is_empty() {
                return Err(config_error(
                    path,
                    format!("{at}: `fractions` and `seeds` must be non-empty"),
                ));
            }
            let base = merge_tables(&file.train, &p.train);
            let mut jobs = Vec::new();
            for method in &file.methods {
                for &fraction in &p.fractions {
                    for &seed in &p.seeds {
                        let mut t = base.clone();
                        t.insert("method".into(), toml::Value::String(method.clone()));
                        t.insert("train_fraction".into(), toml::Value::Float(fraction));
                        t.insert("seed".into(), toml::Value::Integer(seed as i64));
                        let what = format!("{at}, method `{method}`, fraction {fraction}, [train]");
                        let train = from_table::<TrainConfig>(t, path, &what)?
                            .check()
                            .map_err(|e| config_error(path, format!("{what}: {e}")))?;
                        jobs.push(FinetuneJob {
                            model: model.clone(),
                            train,
                        });
                    }
                }
            }
            // One split file serves the experiment, so every job must ask for the same split.
            let first = &jobs[0].train;
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
            profiles.insert(pname.clone(), jobs);
        }
        if profiles.is_empty() {
            return Err(config_error(
                path,
                "no `[profiles.<name>]`: at least one is needed (quick, paper)",
            ));
        }
        Ok(FinetuneKind {
            name: info.name.clone(),
            methods: file.methods,
            profiles,
            opts: opts.clone(),
            assets: OnceLock::new(),
        })
    }

    pub fn split_path(dirs: &Dirs) -> PathBuf {
        dirs.experiment.join("split.json")
    }
}

impl Kind for FinetuneKind {
    const NAME: &'static str = "finetune";
    type Job = FinetuneJob;
    type Record = RunRecord;

    fn parse(
        info: &ExperimentInfo,
        body: toml::Table,
        opts: &KindOptions,
    ) -> Result<Self, LabError> {
        FinetuneKind::parse(info, body, opts)
    }

    fn profiles(&self) -> Vec<String> {
        crate::kind::profile_order(self.profiles.keys().cloned())
    }

    fn jobs(&self, profile: &str) -> Result<Vec<FinetuneJob>, LabError> {
        crate::kind::named_profile(&self.name, &self.profiles, profile).cloned()
    }

    fn label(&self, job: &FinetuneJob) -> String {
        format!(
            "{} fraction={} seed={}",
            job.train.method, job.train.train_fraction, job.train.seed
        )
    }

    /// Training time grows with the examples seen; evaluation adds a fixed part.
    fn cost(&self, job: &FinetuneJob) -> f64 {
        job.train.train_fraction * job.train.epochs as f64 + 0.01
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
            &Self::split_path(ctx.dirs),
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

    fn metrics(&self, _profile: &str, done: &Records<'_, Self>, dirs: &Dirs) -> Written {
        metrics::write(self, done, dirs)
    }

    fn report(&self, _profile: &str, dirs: &Dirs) -> anyhow::Result<Report> {
        report::write(self, dirs)
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
}
