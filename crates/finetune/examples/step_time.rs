//! Seconds per training step of each method on the real MiniLM, timed exactly as the training
//! loop steps (`Classifier::training_logits`, cross-entropy, `train::Optimisers::step`), on one
//! fixed batch of `BATCH` examples × `LEN` tokens (every token attended: the same work on every
//! step and in the PyTorch reference, `tests/reference/step_time.py`, which runs this binary and
//! prints both with their ratio). One line of JSON per method on stdout.
//!
//!     cargo run --release -p finetune --example step_time -- lora hora full
//!
//! Environment: `BATCH` (16), `LEN` (48), `STEPS` timed steps (10), `WARMUP` untimed steps (2).
//! With `MODE=eval`, each step is instead one evaluation batch of `BATCH` examples (forward
//! only, as `train::predict` evaluates: logits, then the predicted class), and the line also
//! gives examples per second.

use std::time::Instant;

use candle_core::Tensor;
use finetune::adapters::AdapterSpec;
use finetune::model::Dropouts;
use finetune::rng::{init_rng, TRAINING};
use finetune::train::{cross_entropy, device, device_name, keep_freed_memory, Optimisers};
use finetune::{AdapterKind, BertEncoder, Classifier, TrainConfig};
use rand::Rng;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), finetune::FinetuneError> {
    let (batch, len) = (env("BATCH", 16), env("LEN", 48));
    let (steps, warmup) = (env("STEPS", 10), env("WARMUP", 2));
    let eval = std::env::var("MODE").is_ok_and(|m| m == "eval");
    let methods: Vec<AdapterKind> = {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.is_empty() {
            AdapterKind::ALL.to_vec()
        } else {
            args.iter()
                .map(|a| AdapterKind::from_name(a))
                .collect::<Result<_, _>>()?
        }
    };
    // As `hora` does, before any thread starts.
    finetune::train::one_elementwise_thread_on_small_hosts();
    keep_freed_memory();
    let dev = device();
    let assets = finetune::assets::locate(&finetune::assets::default_cache_dir())?;
    // Token ids drawn once (any ids do the same work), [CLS] first; every token attended. A
    // benchmark input, not a run's stream: its own generator.
    let mut draw = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
    let ids: Vec<u32> = (0..batch * len)
        .map(|i| {
            if i % len == 0 {
                101
            } else {
                draw.random_range(1000..30000)
            }
        })
        .collect();
    let ids = Tensor::from_vec(ids, (batch, len), &dev)?;
    let mask = Tensor::ones((batch, len), candle_core::DType::U32, &dev)?;
    let labels: Vec<usize> = (0..batch).map(|i| i % 3).collect();
    for method in methods {
        let cfg = TrainConfig {
            method,
            ..Default::default()
        };
        let base = BertEncoder::load(&assets.model_dir, &dev)?;
        let model = Classifier::new(base, &AdapterSpec::from_config(&cfg), 3, &dev)?;
        let mut opt = Optimisers::new(&model, &cfg)?;
        let mut rng = init_rng(cfg.seed, TRAINING);
        let total = warmup + steps;
        let mut times = Vec::with_capacity(steps);
        for step in 0..total {
            let t0 = Instant::now();
            if eval {
                let logits = model.logits(&ids, &mask, 0.0, None)?.detach();
                let _: Vec<u32> = logits.argmax(candle_core::D::Minus1)?.to_vec1()?;
            } else {
                let logits = model.training_logits(&ids, &mask, Dropouts::of(&cfg), &mut rng)?;
                let loss = cross_entropy(&logits, &labels)?;
                opt.step(&loss, step, total, 1, &cfg)?;
                // Reading the loss forces the step's work, as the training loop does.
                let _ = loss.to_scalar::<f32>()?;
            }
            if step >= warmup {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
        println!(
            "{{\"method\": \"{method}\", \"mode\": \"{}\", \"trainable_params\": {}, \"batch\": {batch}, \"len\": {len}, \"steps\": {steps}, \"median_s\": {median:.5}, \"mean_s\": {mean:.5}, \"min_s\": {:.5}, \"examples_per_s\": {:.1}, \"device\": \"{}\"}}",
            if eval { "eval" } else { "train" },
            model.trainable_params(),
            times.first().copied().unwrap_or(f64::NAN),
            batch as f64 / median,
            device_name(&dev)
        );
    }
    Ok(())
}
