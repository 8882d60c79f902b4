//! The `finetune` kind: fine-tuning MiniLM on the tweets with each method at several fractions
//! of the training set and several seeds (the paper's low-data experiment), one job per
//! method × fraction × seed; metrics are test accuracy and macro-F1 per run.
use crate::error::LabError;
use crate::experiment::{config_error, from_table, merge_tables, ExperimentInfo, KindOptions};
use crate::kind::{Done, JobContext, Kind};
use crate::layout::Dirs;
use crate::plot::{self, Axis, Curve, Panel, Scale, GREY, PALETTE};
use crate::provenance::ProvenanceSummary;
use crate::store::{read_csv, write_csv};
use anyhow::Context;
use finetune::{Assets, RunRecord, TrainConfig};
use plotters::prelude::SeriesLabelPosition;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinetuneFile {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    description: String,
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
    pub train: TrainConfig,
}

pub struct FinetuneKind {
    pub name: String,
    pub description: String,
    pub methods: Vec<String>,
    /// Every job of each profile, checked.
    pub profiles: BTreeMap<String, Vec<FinetuneJob>>,
    opts: KindOptions,
    assets: OnceLock<Assets>,
}

pub const PINNED_MODEL: &str = "all-MiniLM-L6-v2";

impl FinetuneKind {
    pub fn parse(info: &ExperimentInfo, text: &str, opts: &KindOptions) -> Result<Self, LabError> {
        let path = &info.path;
        let file: FinetuneFile =
            toml::from_str(text).map_err(|e| config_error(path, e.to_string()))?;
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
                        let train: TrainConfig = from_table(t, path, &what)?;
                        train
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
            description: file.description,
            methods: file.methods,
            profiles,
            opts: opts.clone(),
            assets: OnceLock::new(),
        })
    }

    fn locate_assets(&self) -> anyhow::Result<Assets> {
        let cache = self
            .opts
            .assets_dir
            .clone()
            .unwrap_or_else(finetune::assets::default_cache_dir);
        let assets = match &self.opts.model_dir {
            Some(m) => finetune::assets::with_model_dir(m, &cache)?,
            None => finetune::assets::locate(&cache)?,
        };
        Ok(assets)
    }

    pub fn split_path(dirs: &Dirs) -> PathBuf {
        dirs.experiment.join("split.json")
    }
}

impl Kind for FinetuneKind {
    type Job = FinetuneJob;
    type Record = RunRecord;

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

    /// candle already uses every core inside one run.
    fn default_threads(&self) -> Option<usize> {
        Some(1)
    }

    fn prepare(&self, _dirs: &Dirs) -> anyhow::Result<()> {
        if self.assets.get().is_none() {
            let a = self.locate_assets()?;
            let _ = self.assets.set(a);
        }
        Ok(())
    }

    fn run_job(&self, job: &FinetuneJob, ctx: &JobContext<'_>) -> anyhow::Result<RunRecord> {
        let assets = match self.assets.get() {
            Some(a) => a.clone(),
            None => self.locate_assets()?,
        };
        let bar = ctx.progress.add(indicatif::ProgressBar::new(0));
        bar.set_message(self.label(job));
        let out = finetune::train_and_evaluate(
            &job.train,
            &assets,
            &Self::split_path(ctx.dirs),
            Some(bar.clone()),
        );
        bar.finish_and_clear();
        Ok(out?)
    }

    fn metrics(
        &self,
        _profile: &str,
        done: &[Done<'_, FinetuneJob, RunRecord>],
        dirs: &Dirs,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let rows: Vec<RunRow> = done.iter().map(run_row).collect();
        let mut groups: Vec<GroupRow> = Vec::new();
        for m in &self.methods {
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
                    accuracy_mean: hmoe::rates::mean(&acc),
                    accuracy_sd: sd(&acc),
                    accuracy_min: acc.iter().cloned().fold(f64::INFINITY, f64::min),
                    accuracy_max: acc.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                    macro_f1_mean: hmoe::rates::mean(&f1),
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
        let files = vec![
            dirs.file("metrics.csv"),
            dirs.file("accuracy.csv"),
            dirs.file("timing.csv"),
        ];
        write_csv(&files[0], &rows)?;
        write_csv(&files[1], &groups)?;
        write_csv(&files[2], &timing)?;
        Ok(files)
    }

    fn report(
        &self,
        profile: &str,
        dirs: &Dirs,
        prov: &ProvenanceSummary,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let groups: Vec<GroupRow> = read_csv(&dirs.file("accuracy.csv"))?;
        let panel =
            |title: &str, y: &str, majority: bool, get: fn(&GroupRow) -> (f64, f64, f64)| {
                let mut curves = Vec::new();
                for (i, m) in self.methods.iter().enumerate() {
                    let g: Vec<&GroupRow> = groups.iter().filter(|r| &r.method == m).collect();
                    if g.is_empty() {
                        continue;
                    }
                    let params = g[0].trainable_params;
                    let mut c = Curve::new(
                        format!("{m} ({} trainable)", plot::number(params as f64)),
                        PALETTE[i % PALETTE.len()],
                    );
                    c.points = g.iter().map(|r| (r.train_fraction, get(r).0)).collect();
                    c.band = g
                        .iter()
                        .map(|r| (r.train_fraction, get(r).1, get(r).2))
                        .collect();
                    curves.push(c);
                }
                // The majority-class rate is an accuracy: the floor of the accuracy panel only.
                if let Some(first) = groups.first().filter(|_| majority) {
                    let (lo, hi) = groups.iter().fold((f64::INFINITY, 0f64), |(a, b), r| {
                        (a.min(r.train_fraction), b.max(r.train_fraction))
                    });
                    let mut c = Curve::new("majority class", GREY);
                    c.points = vec![(lo, first.majority_rate), (hi, first.majority_rate)];
                    c.dashed = true;
                    c.markers = false;
                    curves.push(c);
                }
                Panel {
                    title: title.into(),
                    x: Axis::new("fraction of the training set", Scale::Log10),
                    y: Axis::new(y, Scale::Linear),
                    curves,
                    legend: SeriesLabelPosition::LowerRight,
                }
            };
        let panels = vec![
            panel(
                "test accuracy (seed range shaded)",
                "test accuracy",
                true,
                |r| (r.accuracy_mean, r.accuracy_min, r.accuracy_max),
            ),
            panel(
                "test macro-F1 (mean ± sd shaded)",
                "test macro-F1",
                false,
                |r| {
                    (
                        r.macro_f1_mean,
                        r.macro_f1_mean - r.macro_f1_sd,
                        r.macro_f1_mean + r.macro_f1_sd,
                    )
                },
            ),
        ];
        let mut files = plot::save(&dirs.file("accuracy"), &panels, 2)?;
        let summary = dirs.file("summary.md");
        crate::store::write_atomic(&summary, self.summary(profile, &groups, prov).as_bytes())
            .with_context(|| format!("cannot write {}", summary.display()))?;
        files.push(summary);
        Ok(files)
    }
}

impl FinetuneKind {
    fn summary(&self, profile: &str, groups: &[GroupRow], prov: &ProvenanceSummary) -> String {
        let mut s = format!("# {} ({} profile)\n\n", self.name, profile);
        if !self.description.trim().is_empty() {
            s += &format!("{}\n\n", self.description.trim());
        }
        s += "| method | trainable params | fraction | train examples | seeds | test accuracy (mean ± sd) | macro-F1 (mean ± sd) |\n";
        s += "|---|---|---|---|---|---|---|\n";
        for g in groups {
            s += &format!(
                "| {} | {} | {} | {} | {} | {:.3} ± {:.3} | {:.3} ± {:.3} |\n",
                g.method,
                g.trainable_params,
                g.train_fraction,
                g.train_examples,
                g.seeds,
                g.accuracy_mean,
                g.accuracy_sd,
                g.macro_f1_mean,
                g.macro_f1_sd
            );
        }
        if let Some(g) = groups.first() {
            s += &format!(
                "\nMajority-class rate on the test set: {:.3}.\n",
                g.majority_rate
            );
        }
        s += "\n![accuracy](accuracy.png)\n\nTables: `metrics.csv` (one row per run), `accuracy.csv` (per method and fraction), `timing.csv`.\n\n";
        s += &prov.markdown();
        s
    }
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

/// Sample standard deviation (0 for one value).
fn sd(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = hmoe::rates::mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// `hora assets fetch`: download and verify the pinned model and data.
pub fn fetch_assets(dir: Option<&Path>) -> anyhow::Result<Assets> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(finetune::assets::default_cache_dir);
    Ok(finetune::assets::fetch(&dir)?)
}
