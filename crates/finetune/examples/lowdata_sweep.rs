//! A small low-data sweep straight from the library (the driver's `hora` does this with
//! manifests, shards and plots): every method × training fraction × seed, one line each.
//!
//!     FRACTIONS=0.01,0.03 SEEDS=0 EPOCHS=2 MAX_LEN=32 EVAL=200 \
//!         cargo run -p finetune --example lowdata_sweep [OUT_DIR]

use finetune::ParamGuard;
use std::time::Instant;

use finetune::{train_and_evaluate, AdapterKind, TrainConfig};

fn list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

fn main() -> Result<(), finetune::FinetuneError> {
    let cache = finetune::assets::default_cache_dir();
    let assets = finetune::assets::locate(&cache)?;
    let out = std::env::args().nth(1).map(std::path::PathBuf::from);
    let methods: Vec<AdapterKind> = std::env::var("METHODS")
        .unwrap_or_else(|_| "head-only,lora,mh-lora,replora,hora,full".into())
        .split(',')
        .map(AdapterKind::from_name)
        .collect::<Result<_, _>>()?;
    let fractions: Vec<f64> = list("FRACTIONS", "0.01");
    let seeds: Vec<u64> = list("SEEDS", "0");
    let base = TrainConfig {
        epochs: list("EPOCHS", "2")[0],
        max_len: list("MAX_LEN", "32")[0],
        max_eval_examples: list("EVAL", "200")[0],
        rank: list("RANK", "8")[0],
        ..Default::default()
    };
    let split = finetune::data::default_split_path(&cache, base.split_seed);
    let start = Instant::now();
    println!("| method | fraction | seed | train ex | params | steps | steps/s | best epoch | test acc | test F1 | majority | s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &fraction in &fractions {
        for &seed in &seeds {
            for &method in &methods {
                let cfg = TrainConfig {
                    method,
                    train_fraction: fraction,
                    seed,
                    ..base.clone()
                };
                let r = train_and_evaluate(&cfg.check()?, &assets, &split, None)?;
                println!(
                    "| {method} | {fraction} | {seed} | {} | {} | {} | {:.3} | {} | {:.3} | {:.3} | {:.3} | {:.1} |",
                    r.train_examples, r.trainable_params, r.steps, r.steps_per_sec, r.best_epoch, r.test_accuracy, r.test_macro_f1, r.test_majority_rate, r.seconds
                );
                if let Some(dir) = &out {
                    let path = dir.join(format!("{method}-f{fraction}-s{seed}.json"));
                    fsio::write_atomic(&path, serde_json::to_string_pretty(&r)?.as_bytes())
                        .map_err(|e| finetune::FinetuneError::Io { path, source: e })?;
                }
            }
        }
    }
    println!("total {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
