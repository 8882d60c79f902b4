//! One fine-tuning run: split, subset, AdamW with linear warm-up and decay, early stopping on
//! validation macro-F1, and a test evaluation of the best epoch.

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adapter_dir::AdapterContext;
use crate::adapters::AdapterSpec;
use crate::assets::Assets;
use crate::config::{AdapterKind, TrainConfig, ValidTrainConfig};
use crate::data::{train_budget, Budget, Encoded, Split, TextEncoder};
use crate::encoder::BertEncoder;
use crate::error::{FinetuneError, Result};
use crate::metrics::{accuracy, macro_f1, majority_rate};
use crate::model::{head_path, Classifier, Dropouts};
use crate::optim::FusedAdamW;
use crate::rng::{init_rng, BATCH_ORDER, TRAINING};

/// One validation evaluation: at the end of an epoch, or (with `eval_every`) every so many
/// steps, `epoch` then numbering the evaluations and `step` saying where it came.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    pub seconds: f64,
    /// Optimiser steps taken when evaluated (runs with `eval_every` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
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

/// On a host of at most two cores, give candle's element-wise pool one thread unless
/// `CANDLE_NUM_THREADS` is set: the pool otherwise spins beside rayon's gemm workers on the same
/// cores (a finetune quick job: 12% less wall time, 22% less CPU, the same bits; 2026-12-03).
/// Larger hosts keep candle's default until measured. Call it before any thread starts: it sets
/// an environment variable that candle reads when its pool starts.
pub fn one_elementwise_thread_on_small_hosts() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() && cores <= 2 {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Keep freed memory in the process. A training step allocates and frees hundreds of buffers of
/// 0.1–50 MB; glibc's defaults hand each large one back to the kernel on free (an `munmap`, or a
/// trim of the heap top) and take fresh zeroed pages on the next allocation, so page faults and
/// TLB shootdowns cost about a third of a LoRA step on 2 cores (measured with `perf`). With blocks
/// below 256 MiB served from the heap and the heap never trimmed, the pages are reused: the
/// process keeps its peak memory (a few GB for full fine-tuning). Called by
/// [`train_classifier`]; idempotent, and a no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
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

/// AdamW on the CPU fused into one pass per tensor ([`FusedAdamW`]), candle-nn's elsewhere.
enum AnyAdamW {
    Fused(FusedAdamW),
    Candle(AdamW),
}

impl AnyAdamW {
    fn new(vars: Vec<candle_core::Var>, params: ParamsAdamW, device: &Device) -> Result<Self> {
        Ok(if device.is_cpu() {
            Self::Fused(FusedAdamW::new(vars, params)?)
        } else {
            Self::Candle(AdamW::new(vars, params)?)
        })
    }

    fn step(&mut self, lr: f64, grads: &candle_core::backprop::GradStore) -> Result<()> {
        match self {
            Self::Fused(o) => {
                o.set_learning_rate(lr);
                o.step(grads)
            }
            Self::Candle(o) => {
                o.set_learning_rate(lr);
                Ok(o.step(grads)?)
            }
        }
    }
}

/// Two optimisers, since AdamW has one learning rate: the adapter and head at `lr`, the encoder
/// weights (full fine-tuning only) at `full_lr`. Public so that the step-time benchmark
/// (`examples/step_time.rs`) times exactly the training loop's step.
pub struct Optimisers {
    adapter: AnyAdamW,
    encoder: Option<AnyAdamW>,
    /// Every trainable tensor (both optimisers'), for gradient clipping.
    vars: Vec<candle_core::Var>,
}

impl Optimisers {
    pub fn new(model: &Classifier, cfg: &TrainConfig) -> Result<Self> {
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
        let device = model.base.word_embeddings.weight.device().clone();
        let vars = names.iter().map(|n| data[*n].clone()).collect();
        Ok(Self {
            vars,
            adapter: AnyAdamW::new(pick(false), params(cfg.lr), &device)?,
            encoder: if encoder_vars.is_empty() {
                None
            } else {
                Some(AnyAdamW::new(encoder_vars, params(cfg.full_lr), &device)?)
            },
        })
    }

    /// Backward pass of `loss` and one AdamW update at the schedule's learning rate of `step`.
    pub fn step(
        &mut self,
        loss: &Tensor,
        step: usize,
        total: usize,
        warmup: usize,
        cfg: &TrainConfig,
    ) -> Result<()> {
        let mut grads = loss.backward()?;
        if cfg.grad_clip > 0.0 {
            clip_grad_norm(&self.vars, &mut grads, cfg.grad_clip)?;
        }
        self.adapter
            .step(lr_at(step, total, warmup, cfg.lr), &grads)?;
        if let Some(enc) = &mut self.encoder {
            enc.step(lr_at(step, total, warmup, cfg.full_lr), &grads)?;
        }
        Ok(())
    }
}

/// Scale the gradients of `vars` together so that their joint Euclidean norm is at most `max`,
/// as `torch.nn.utils.clip_grad_norm_(params, max)` does: the factor `max / (norm + 10⁻⁶)`,
/// applied only when below 1. Returns the norm before clipping.
pub fn clip_grad_norm(
    vars: &[candle_core::Var],
    grads: &mut candle_core::backprop::GradStore,
    max: f64,
) -> Result<f64> {
    let mut sq = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    let coef = max / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v) {
                let scaled = g.affine(coef, 0.0)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

/// Where each epoch's batch order comes from: its own stream (`paired_order`), or the training
/// stream, interleaved with the dropout masks (every run before `paired_order` existed).
pub struct BatchOrder(Option<ChaCha8Rng>);

impl BatchOrder {
    pub fn new(cfg: &TrainConfig) -> Self {
        Self(cfg.paired_order.then(|| init_rng(cfg.seed, BATCH_ORDER)))
    }

    /// The next epoch's batches; `training` is the stream the dropout masks come from.
    pub fn epoch(
        &mut self,
        train: &Encoded,
        batch_size: usize,
        training: &mut ChaCha8Rng,
    ) -> Vec<Vec<usize>> {
        train.length_batches(batch_size, self.0.as_mut().unwrap_or(training))
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
            labels: self
                .record
                .config
                .task
                .labels()
                .iter()
                .map(|l| l.to_string())
                .collect(),
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
    keep_freed_memory();
    let device = device();
    let data = assets.dataset(cfg.task)?;
    let n_classes = cfg.task.labels().len();
    let labels: Vec<usize> = data.examples.iter().map(|e| e.label).collect();
    let split = Split::for_dataset(
        split_path,
        &data,
        cfg.split_seed,
        cfg.val_fraction,
        cfg.test_fraction,
    )?;
    let budget = if cfg.train_per_class > 0 {
        Budget::PerClass(cfg.train_per_class)
    } else {
        Budget::Fraction(cfg.train_fraction)
    };
    let subset = train_budget(&split.train, &labels, n_classes, budget, cfg.seed);
    let examples = data.examples;
    let cap = |v: &[usize], max: usize| -> Vec<usize> {
        if max == 0 {
            v.to_vec()
        } else {
            v[..v.len().min(max)].to_vec()
        }
    };
    let val_cap = if cfg.max_val_examples > 0 {
        cfg.max_val_examples
    } else {
        cfg.max_eval_examples
    };
    let text = TextEncoder::from_file(&assets.model_dir.join("tokenizer.json"), cfg.max_len)?;
    let train = Encoded::new(&text, &examples, &subset)?;
    let val = Encoded::new(&text, &examples, &cap(&split.val, val_cap))?;
    let test = Encoded::new(&text, &examples, &cap(&split.test, cfg.max_eval_examples))?;

    let base = BertEncoder::load(&assets.model_dir, &device)?;
    let model = Classifier::new(base, &AdapterSpec::from_config(cfg), n_classes, &device)?;
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
    let mut order = BatchOrder::new(cfg);
    if let Some(pb) = &progress {
        pb.set_length(total as u64);
        pb.set_message(format!("{} r={}", cfg.method, cfg.rank));
    }

    let mut epochs: Vec<EpochMetrics> = Vec::new();
    let mut best: Option<(f64, usize, std::collections::HashMap<String, Tensor>)> = None;
    let mut step = 0;
    let mut train_seconds = 0.0;
    // Training loss and time since the last evaluation.
    let mut loss_sum = 0.0;
    let mut loss_n = 0usize;
    let mut since = Instant::now();
    // Evaluate on validation, keep the best snapshot; true when early stopping ends the run.
    let mut evaluate = |epochs: &mut Vec<EpochMetrics>,
                        index: Option<usize>,
                        step: usize,
                        loss_sum: f64,
                        loss_n: usize,
                        since: Instant|
     -> Result<bool> {
        // Epochs number themselves; step-wise evaluations count.
        let index = index.unwrap_or(epochs.len() + 1);
        let pred = predict(model, val, cfg.eval_batch_size, device)?;
        let metrics = EpochMetrics {
            epoch: index,
            train_loss: if loss_n > 0 {
                loss_sum / loss_n as f64
            } else {
                f64::NAN
            },
            val_accuracy: accuracy(&pred, &val.labels),
            val_macro_f1: macro_f1(&pred, &val.labels, n_classes),
            seconds: since.elapsed().as_secs_f64(),
            step: (cfg.eval_every > 0).then_some(step),
        };
        let improved = best
            .as_ref()
            .is_none_or(|(f1, _, _)| metrics.val_macro_f1 > *f1);
        if improved {
            best = Some((metrics.val_macro_f1, index, model.snapshot()?));
        }
        let best_index = best.as_ref().map_or(index, |b| b.1);
        epochs.push(metrics);
        Ok(cfg.patience > 0 && index - best_index >= cfg.patience && step >= cfg.min_steps)
    };
    'epochs: for epoch in 1..=cfg.epochs {
        let epoch_start = Instant::now();
        if cfg.eval_every == 0 {
            (loss_sum, loss_n, since) = (0.0, 0, epoch_start);
        }
        let mut step_start = Instant::now();
        for rows in order.epoch(train, cfg.batch_size, &mut rng) {
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
            if cfg.eval_every > 0 && (step % cfg.eval_every == 0 || step >= total) {
                train_seconds += step_start.elapsed().as_secs_f64();
                let stop = evaluate(&mut epochs, None, step, loss_sum, loss_n, since)?;
                (loss_sum, loss_n, since) = (0.0, 0, Instant::now());
                step_start = Instant::now();
                if stop || step >= total {
                    break 'epochs;
                }
            }
        }
        if cfg.eval_every > 0 {
            train_seconds += step_start.elapsed().as_secs_f64();
            continue;
        }
        train_seconds += epoch_start.elapsed().as_secs_f64();
        let stop = evaluate(
            &mut epochs,
            Some(epoch),
            step,
            loss_sum,
            loss_n,
            epoch_start,
        )?;
        if stop || step >= total {
            break 'epochs;
        }
    }
    // A run with `eval_every` whose epochs ran out between two evaluations ends with one.
    if cfg.eval_every > 0 && epochs.last().and_then(|e| e.step) != Some(step) && step > 0 {
        evaluate(&mut epochs, None, step, loss_sum, loss_n, since)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Clipping scales every gradient by one factor down to the norm asked for (the direction
    /// kept), and leaves gradients already inside the norm untouched, as torch's
    /// `clip_grad_norm_`: here ‖(3, 4, 12)‖ = 13 is clipped to 1.
    #[test]
    fn gradients_are_clipped_together_to_the_norm() {
        let dev = Device::Cpu;
        let a = candle_core::Var::from_slice(&[1.5f32, 2.0], (2,), &dev).unwrap();
        let b = candle_core::Var::from_slice(&[6.0f32], (1,), &dev).unwrap();
        // loss = a·a + b·b: gradients 2a = (3, 4) and 2b = (12).
        let loss = (a.as_tensor().sqr().unwrap().sum_all().unwrap()
            + b.as_tensor().sqr().unwrap().sum_all().unwrap())
        .unwrap();
        let vars = [a.clone(), b.clone()];
        let mut grads = loss.backward().unwrap();
        let norm = clip_grad_norm(&vars, &mut grads, 1.0).unwrap();
        assert!((norm - 13.0).abs() < 1e-5, "{norm}");
        let ga: Vec<f32> = grads.get(&a).unwrap().to_vec1().unwrap();
        let gb: Vec<f32> = grads.get(&b).unwrap().to_vec1().unwrap();
        let k = 1.0 / (13.0 + 1e-6);
        for (got, want) in ga.iter().chain(&gb).zip([3.0, 4.0, 12.0]) {
            assert!(
                (*got as f64 - want * k).abs() < 1e-6,
                "{got} vs {}",
                want * k
            );
        }
        // Inside the norm: unchanged.
        let mut grads = loss.backward().unwrap();
        clip_grad_norm(&vars, &mut grads, 100.0).unwrap();
        let ga: Vec<f32> = grads.get(&a).unwrap().to_vec1().unwrap();
        assert_eq!(ga, vec![3.0, 4.0]);
    }
    use rand::Rng;

    fn data(n: usize) -> Encoded {
        Encoded {
            ids: (0..n).map(|i| vec![101; 3 + i % 7]).collect(),
            labels: (0..n).map(|i| i % 3).collect(),
        }
    }

    /// Two epochs of batches, with `draws` dropout draws from the training stream in between.
    fn two_epochs(paired: bool, draws: usize) -> Vec<Vec<Vec<usize>>> {
        let cfg = TrainConfig {
            paired_order: paired,
            seed: 5,
            ..Default::default()
        };
        let train = data(100);
        let mut order = BatchOrder::new(&cfg);
        let mut training = init_rng(cfg.seed, TRAINING);
        let first = order.epoch(&train, 8, &mut training);
        for _ in 0..draws {
            let _: f64 = training.random();
        }
        vec![first, order.epoch(&train, 8, &mut training)]
    }

    #[test]
    fn a_paired_order_does_not_depend_on_the_dropout_draws() {
        assert_eq!(two_epochs(true, 0), two_epochs(true, 1000));
        // The interleaved order (every committed run) shares its stream with dropout: the
        // second epoch moves with the number of masks drawn, the first does not.
        let (a, b) = (two_epochs(false, 0), two_epochs(false, 1000));
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        // Each epoch is a permutation of the examples into batches.
        for epoch in two_epochs(true, 0) {
            let mut all: Vec<usize> = epoch.concat();
            all.sort_unstable();
            assert_eq!(all, (0..100).collect::<Vec<_>>());
        }
    }
}
