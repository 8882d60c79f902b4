//! One fine-tuning run: split, subset, AdamW with linear warm-up and decay, early stopping on
//! validation macro-F1, and a test evaluation of the best epoch.

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use crate::adapter_dir::AdapterContext;
use crate::adapters::AdapterSpec;
use crate::assets::Assets;
use crate::config::{AdapterKind, TrainConfig, ValidTrainConfig};
use crate::data::{load_tweets, train_subset, Encoded, Split, TextEncoder, LABELS};
use crate::encoder::BertEncoder;
use crate::error::{FinetuneError, Result};
use crate::metrics::{accuracy, macro_f1, majority_rate};
use crate::model::{head_path, Classifier, Dropouts};
use crate::rng::{init_rng, TRAINING};

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    pub seconds: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RunRecord {
    pub config: TrainConfig,
    pub trainable_params: usize,
    pub base_params: usize,
    pub train_examples: usize,
    pub epochs: Vec<EpochMetrics>,
    pub best_epoch: usize,
    pub test_accuracy: f64,
    pub test_macro_f1: f64,
    pub test_majority_rate: f64,
    pub steps: usize,
    /// Optimiser steps per second of training time (evaluation excluded).
    pub steps_per_sec: f64,
    pub seconds: f64,
    pub device: String,
}

/// CPU, or CUDA device 0 when built with the `cuda` feature (falling back to CPU if none).
pub fn device() -> Device {
    #[cfg(feature = "cuda")]
    {
        if let Ok(d) = Device::new_cuda(0) {
            return d;
        }
    }
    Device::Cpu
}

pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", candle_core::utils::get_num_threads()),
        Device::Cuda(_) => "cuda:0".into(),
        Device::Metal(_) => "metal".into(),
    }
}

/// Linear warm-up to the peak over `warmup` steps, then linear decay to 0 at `total`.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let rest = total.saturating_sub(warmup).max(1);
        peak * (1.0 - (step - warmup) as f64 / rest as f64).max(0.0)
    }
}

/// Mean cross-entropy of a batch.
pub fn cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
    let targets: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let targets = Tensor::new(targets.as_slice(), logits.device())?;
    Ok(candle_nn::loss::cross_entropy(logits, &targets)?)
}

/// Predicted classes of every example of `data`.
pub fn predict(
    model: &Classifier,
    data: &Encoded,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<usize>> {
    let mut pred = vec![0usize; data.len()];
    for rows in data.eval_batches(batch_size) {
        let (ids, mask, _) = data.batch(&rows, device)?;
        let logits = model.logits(&ids, &mask, 0.0, None)?.detach();
        let argmax: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        for (r, p) in rows.iter().zip(argmax) {
            pred[*r] = p as usize;
        }
    }
    Ok(pred)
}

/// Two optimisers, since candle's AdamW has one learning rate: the adapter and head at `lr`,
/// the encoder weights (full fine-tuning only) at `full_lr`.
struct Optimisers {
    adapter: AdamW,
    encoder: Option<AdamW>,
}

impl Optimisers {
    fn new(model: &Classifier, cfg: &TrainConfig) -> Result<Self> {
        let params = |lr| ParamsAdamW {
            lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        };
        let data = crate::adapters::lock_vars(model.varmap())?;
        let head = head_path();
        let is_encoder = |name: &str| cfg.method == AdapterKind::Full && !head.holds(name);
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let pick = |enc: bool| {
            names
                .iter()
                .filter(|n| is_encoder(n) == enc)
                .map(|n| data[*n].clone())
                .collect::<Vec<_>>()
        };
        let encoder_vars = pick(true);
        Ok(Self {
            adapter: AdamW::new(pick(false), params(cfg.lr))?,
            encoder: if encoder_vars.is_empty() {
                None
            } else {
                Some(AdamW::new(encoder_vars, params(cfg.full_lr))?)
            },
        })
    }

    fn step(
        &mut self,
        loss: &Tensor,
        step: usize,
        total: usize,
        warmup: usize,
        cfg: &TrainConfig,
    ) -> Result<()> {
        let grads = loss.backward()?;
        self.adapter
            .set_learning_rate(lr_at(step, total, warmup, cfg.lr));
        self.adapter.step(&grads)?;
        if let Some(enc) = &mut self.encoder {
            enc.set_learning_rate(lr_at(step, total, warmup, cfg.full_lr));
            enc.step(&grads)?;
        }
        Ok(())
    }
}

/// Fine-tune on the tweets and evaluate. The split at `split_path` is created if absent and
/// reused (after validation) if present, so every method sees the same examples.
pub fn train_and_evaluate(
    cfg: &ValidTrainConfig,
    assets: &Assets,
    split_path: &Path,
    progress: Option<indicatif::ProgressBar>,
) -> Result<RunRecord> {
    Ok(train_classifier(cfg, assets, split_path, progress)?.record)
}

/// What a run leaves: its record and the classifier at its best validation epoch.
pub struct Trained {
    pub record: RunRecord,
    pub model: Classifier,
}

impl Trained {
    /// What the saved adapter of this run records beside its tensors.
    pub fn adapter_context(&self, base_model: &str, assets: &Assets) -> AdapterContext {
        let path = std::fs::canonicalize(&assets.model_dir).unwrap_or(assets.model_dir.clone());
        AdapterContext {
            base_model: base_model.to_string(),
            base_model_path: Some(path.display().to_string()),
            labels: LABELS.iter().map(|l| l.to_string()).collect(),
            max_len: self.record.config.max_len,
            dropout: self.record.config.dropout,
        }
    }
}

/// [`train_and_evaluate`], keeping the trained classifier.
pub fn train_classifier(
    cfg: &ValidTrainConfig,
    assets: &Assets,
    split_path: &Path,
    progress: Option<indicatif::ProgressBar>,
) -> Result<Trained> {
    let start = Instant::now();
    let device = device();
    let examples = load_tweets(&assets.tweets_csv)?;
    let labels: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let split = Split::load_or_create(
        split_path,
        &labels,
        cfg.split_seed,
        cfg.val_fraction,
        cfg.test_fraction,
    )?;
    let subset = train_subset(&split.train, &labels, cfg.train_fraction, cfg.seed);
    let cap = |v: &[usize]| -> Vec<usize> {
        if cfg.max_eval_examples == 0 {
            v.to_vec()
        } else {
            v[..v.len().min(cfg.max_eval_examples)].to_vec()
        }
    };
    let text = TextEncoder::from_file(&assets.model_dir.join("tokenizer.json"), cfg.max_len)?;
    let train = Encoded::new(&text, &examples, &subset)?;
    let val = Encoded::new(&text, &examples, &cap(&split.val))?;
    let test = Encoded::new(&text, &examples, &cap(&split.test))?;

    let base = BertEncoder::load(&assets.model_dir, &device)?;
    let model = Classifier::new(base, &AdapterSpec::from_config(cfg), LABELS.len(), &device)?;
    let record = train_model(cfg, &model, &train, &val, &test, &device, progress, start)?;
    Ok(Trained { record, model })
}

/// The training loop on already encoded data (also used by tests on a tiny model).
#[allow(clippy::too_many_arguments)]
pub fn train_model(
    cfg: &ValidTrainConfig,
    model: &Classifier,
    train: &Encoded,
    val: &Encoded,
    test: &Encoded,
    device: &Device,
    progress: Option<indicatif::ProgressBar>,
    start: Instant,
) -> Result<RunRecord> {
    if train.is_empty() || val.is_empty() || test.is_empty() {
        return Err(FinetuneError::Data(
            "train, validation and test sets must be non-empty".into(),
        ));
    }
    let n_classes = model.num_labels();
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let mut total = steps_per_epoch * cfg.epochs;
    if cfg.max_steps > 0 {
        total = total.min(cfg.max_steps);
    }
    let warmup = (cfg.warmup_fraction * total as f64).ceil() as usize;
    let mut opt = Optimisers::new(model, cfg)?;
    let mut rng = init_rng(cfg.seed, TRAINING);
    if let Some(pb) = &progress {
        pb.set_length(total as u64);
        pb.set_message(format!("{} r={}", cfg.method, cfg.rank));
    }

    let mut epochs = Vec::new();
    let mut best: Option<(f64, usize, std::collections::HashMap<String, Tensor>)> = None;
    let mut step = 0;
    let mut train_seconds = 0.0;
    'epochs: for epoch in 1..=cfg.epochs {
        let epoch_start = Instant::now();
        let mut loss_sum = 0.0;
        let mut loss_n = 0usize;
        for rows in train.length_batches(cfg.batch_size, &mut rng) {
            if step >= total {
                break;
            }
            let (ids, mask, labels) = train.batch(&rows, device)?;
            let logits = model.training_logits(&ids, &mask, Dropouts::of(cfg), &mut rng)?;
            let loss = cross_entropy(&logits, &labels)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if !value.is_finite() {
                return Err(FinetuneError::Diverged(format!(
                    "loss {value} at step {step} (lr {})",
                    cfg.lr
                )));
            }
            opt.step(&loss, step, total, warmup, cfg)?;
            loss_sum += value * rows.len() as f64;
            loss_n += rows.len();
            step += 1;
            if let Some(pb) = &progress {
                pb.inc(1);
                pb.set_message(format!(
                    "{} r={} epoch {epoch} loss {:.3}",
                    cfg.method,
                    cfg.rank,
                    loss_sum / loss_n as f64
                ));
            }
        }
        train_seconds += epoch_start.elapsed().as_secs_f64();
        let pred = predict(model, val, cfg.eval_batch_size, device)?;
        let metrics = EpochMetrics {
            epoch,
            train_loss: if loss_n > 0 {
                loss_sum / loss_n as f64
            } else {
                f64::NAN
            },
            val_accuracy: accuracy(&pred, &val.labels),
            val_macro_f1: macro_f1(&pred, &val.labels, n_classes),
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        let improved = best
            .as_ref()
            .is_none_or(|(f1, _, _)| metrics.val_macro_f1 > *f1);
        if improved {
            best = Some((metrics.val_macro_f1, epoch, model.snapshot()?));
        }
        let best_epoch = best.as_ref().map_or(epoch, |b| b.1);
        epochs.push(metrics);
        if (cfg.patience > 0 && epoch - best_epoch >= cfg.patience) || step >= total {
            break 'epochs;
        }
    }
    let (_, best_epoch, snapshot) =
        best.ok_or_else(|| FinetuneError::Data("no epoch ran".into()))?;
    model.restore(&snapshot)?;
    let pred = predict(model, test, cfg.eval_batch_size, device)?;
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    Ok(RunRecord {
        config: TrainConfig::clone(cfg),
        trainable_params: model.trainable_params(),
        base_params: model.base_params(),
        train_examples: train.len(),
        epochs,
        best_epoch,
        test_accuracy: accuracy(&pred, &test.labels),
        test_macro_f1: macro_f1(&pred, &test.labels, n_classes),
        test_majority_rate: majority_rate(&test.labels, n_classes),
        steps: step,
        steps_per_sec: if train_seconds > 0.0 {
            step as f64 / train_seconds
        } else {
            0.0
        },
        seconds: start.elapsed().as_secs_f64(),
        device: device_name(device),
    })
}
