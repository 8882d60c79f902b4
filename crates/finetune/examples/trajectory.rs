//! The training trajectory the PyTorch check replays (issue 25, item 7): LoRA or HoRA (r = 8,
//! α = 16, query and value; HoRA's generators with tanh) on the real MiniLM, trained for `STEPS`
//! AdamW steps on fixed batches of real tweets, in order, with every dropout off, the loop's own
//! schedule (linear warm-up over 10% of the steps, then linear decay) and weight decay 0.01. It
//! writes into `OUT`:
//!
//! - `initial/`: the adapter and head before the first step, as a peft LoRA folder (LoRA) or as
//!   the native folder `Classifier::save` writes (HoRA: seeds and generator maps);
//! - `final/`: the same after the last step;
//! - `batches.json`: every batch's token ids, attention mask and labels, in order;
//! - `trajectory.json`: the loss of every step (before its update) and the settings.
//!
//! `tests/reference/peft_round_trip.py trajectory` loads `initial/` (into peft for LoRA; into
//! `hora_torch.py`'s PyTorch HoRA for HoRA), trains it on the same batches with torch's AdamW and
//! the same schedule, and compares the losses and `final/`.
//!
//!     cargo run --release -p finetune --example trajectory -- OUT
//!
//! Environment: `METHOD` (`lora` or `hora`), `STEPS` (20), `BATCH` (16), `LEN` (48).

use finetune::ParamGuard;
use std::path::PathBuf;

use finetune::adapters::AdapterSpec;
use finetune::data::{load_tweets, Encoded, TextEncoder, LABELS};
use finetune::model::Dropouts;
use finetune::rng::{init_rng, TRAINING};
use finetune::train::{cross_entropy, device, keep_freed_memory, Optimisers};
use finetune::{AdapterContext, AdapterKind, BertEncoder, Classifier, TrainConfig};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: trajectory OUT (a folder to write into)")?,
    );
    let (steps, batch, len) = (env("STEPS", 20), env("BATCH", 16), env("LEN", 48));
    let method = AdapterKind::from_name(&std::env::var("METHOD").unwrap_or("lora".into()))?;
    if !matches!(method, AdapterKind::Lora | AdapterKind::Hora) {
        return Err(format!("METHOD={method}: the PyTorch side replays lora and hora only").into());
    }
    keep_freed_memory();
    let dev = device();
    let assets = finetune::assets::locate(&finetune::assets::default_cache_dir())?;
    let cfg = TrainConfig {
        method,
        dropout: 0.0,
        max_len: len,
        ..Default::default()
    }
    .check()?;
    // Real tweets spread over the file, in a fixed order: batch k is rows k·batch .. (k+1)·batch.
    let tweets = load_tweets(&assets.tweets_csv)?;
    let stride = tweets.len() / (steps * batch);
    let rows: Vec<usize> = (0..steps * batch).map(|i| i * stride).collect();
    let text = TextEncoder::from_file(&assets.model_dir.join("tokenizer.json"), len)?;
    let data = Encoded::new(&text, &tweets, &rows)?;

    let base = BertEncoder::load(&assets.model_dir, &dev)?;
    let model = Classifier::new(base, &AdapterSpec::from_config(&cfg), LABELS.len(), &dev)?;
    let ctx = AdapterContext {
        base_model: finetune::MINILM_HUB_NAME.into(),
        base_model_path: Some(assets.model_dir.display().to_string()),
        labels: LABELS.iter().map(|l| l.to_string()).collect(),
        max_len: len,
        dropout: cfg.dropout,
    };
    std::fs::create_dir_all(&out)?;
    // LoRA as peft writes it; HoRA as this project does (peft has no HoRA).
    let save = |model: &Classifier, dir: &str| -> Result<(), finetune::FinetuneError> {
        match method {
            AdapterKind::Lora => model.export_plain_lora(&out.join(dir), &ctx).map(|_| ()),
            _ => model.save(&out.join(dir), &ctx),
        }
    };
    save(&model, "initial")?;

    let mut opt = Optimisers::new(&model, &cfg)?;
    let mut rng = init_rng(cfg.seed, TRAINING);
    let warmup = (cfg.warmup_fraction * steps as f64).ceil() as usize;
    let mut losses = Vec::with_capacity(steps);
    let mut batches = Vec::with_capacity(steps);
    for step in 0..steps {
        let idx: Vec<usize> = (step * batch..(step + 1) * batch).collect();
        let (ids, mask, labels) = data.batch(&idx, &dev)?;
        batches.push(serde_json::json!({
            "input_ids": ids.to_vec2::<u32>()?,
            "attention_mask": mask.to_vec2::<u32>()?,
            "labels": labels,
        }));
        let logits = model.training_logits(&ids, &mask, Dropouts::of(&cfg), &mut rng)?;
        let loss = cross_entropy(&logits, &labels)?;
        losses.push(loss.to_scalar::<f32>()? as f64);
        opt.step(&loss, step, steps, warmup, &cfg)?;
    }
    save(&model, "final")?;
    std::fs::write(out.join("batches.json"), serde_json::to_vec(&batches)?)?;
    let summary = serde_json::json!({
        "method": method.name(),
        "generator_activation": cfg.generator_activation,
        "losses": losses,
        "steps": steps,
        "warmup": warmup,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "rank": cfg.rank,
        "alpha": cfg.alpha,
    });
    std::fs::write(
        out.join("trajectory.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    println!("{summary}");
    Ok(())
}
