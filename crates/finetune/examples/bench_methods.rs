//! Training steps per second and evaluation throughput of every method on the real MiniLM and
//! tweets, at the default batch size and max_len (override: `BATCH=16 MAX_LEN=48 STEPS=5`).
//!
//!     cargo run --release -p finetune --example bench_methods

use std::time::Instant;

use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use finetune::adapters::AdapterSpec;
use finetune::data::{load_tweets, Encoded, TextEncoder};
use finetune::rng::{init_rng, TRAINING};
use finetune::train::{cross_entropy, device, keep_freed_memory, predict};
use finetune::{AdapterKind, BertEncoder, Classifier, TrainConfig};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of this process: with other jobs on the machine, wall time
/// measures the load as much as the code.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), finetune::FinetuneError> {
    let defaults = TrainConfig::default();
    let batch = env("BATCH", defaults.batch_size);
    let max_len = env("MAX_LEN", defaults.max_len);
    let steps = env("STEPS", 5);
    let eval_n = env("EVAL", 256);
    keep_freed_memory();
    let dev = device();
    let assets = finetune::assets::locate(&finetune::assets::default_cache_dir())?;
    let tweets = load_tweets(&assets.tweets_csv)?;
    let text = TextEncoder::from_file(&assets.model_dir.join("tokenizer.json"), max_len)?;
    let rows: Vec<usize> = (0..(steps + 1) * batch)
        .map(|i| (i * 7919) % tweets.len())
        .collect();
    let train = Encoded::new(&text, &tweets, &rows)?;
    let eval_rows: Vec<usize> = (0..eval_n).map(|i| (i * 104_729) % tweets.len()).collect();
    let eval = Encoded::new(&text, &tweets, &eval_rows)?;
    let mean_len = train.ids.iter().map(Vec::len).sum::<usize>() as f64 / train.len() as f64;
    println!("device {:?}, batch {batch}, max_len {max_len} (mean tokens {mean_len:.1}), {steps} timed steps", dev);
    println!("| method | trainable params | steps/s (wall) | s/step (wall) | CPU-s/step | eval examples/s (wall) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let kinds: Vec<AdapterKind> = match std::env::var("METHODS") {
        Ok(list) => list
            .split(',')
            .map(AdapterKind::from_name)
            .collect::<Result<_, _>>()?,
        Err(_) => AdapterKind::ALL.to_vec(),
    };
    for kind in kinds {
        let cfg = TrainConfig {
            method: kind,
            ..Default::default()
        };
        let base = BertEncoder::load(&assets.model_dir, &dev)?;
        let model = Classifier::new(base, &AdapterSpec::from_config(&cfg), 3, &dev)?;
        let lr = if kind == AdapterKind::Full {
            cfg.full_lr
        } else {
            cfg.lr
        };
        let mut opt = AdamW::new(
            model.varmap().all_vars(),
            ParamsAdamW {
                lr,
                ..Default::default()
            },
        )?;
        let mut rng = init_rng(0, TRAINING);
        let chunks: Vec<Vec<usize>> = (0..train.len())
            .collect::<Vec<_>>()
            .chunks(batch)
            .map(<[usize]>::to_vec)
            .collect();
        let mut t0 = Instant::now();
        let mut c0 = cpu_seconds();
        for (i, c) in chunks.iter().enumerate() {
            if i == 1 {
                t0 = Instant::now(); // the first step warms up allocations
                c0 = cpu_seconds();
            }
            let (ids, mask, labels) = train.batch(c, &dev)?;
            let loss = cross_entropy(
                &model.logits(&ids, &mask, cfg.dropout, Some(&mut rng))?,
                &labels,
            )?;
            opt.backward_step(&loss)?;
        }
        let per_step = t0.elapsed().as_secs_f64() / steps as f64;
        let cpu_per_step = (cpu_seconds() - c0) / steps as f64;
        let t1 = Instant::now();
        predict(&model, &eval, cfg.eval_batch_size, &dev)?;
        let eval_rate = eval.len() as f64 / t1.elapsed().as_secs_f64();
        println!(
            "| {kind} | {} | {:.3} | {:.3} | {:.3} | {:.0} |",
            model.trainable_params(),
            1.0 / per_step,
            per_step,
            cpu_per_step,
            eval_rate
        );
    }
    Ok(())
}
