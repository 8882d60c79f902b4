//! On the real all-MiniLM-L6-v2 and the real tweets. CI fetches the assets first
//! (`hora assets fetch`); without them these tests fail with a message that names that command.

use finetune::ParamGuard;
use std::time::Instant;

use candle_core::{Device, Tensor};
use finetune::adapters::AdapterSpec;
use finetune::assets::{default_cache_dir, locate, Assets};
use finetune::data::{Encoded, Example, TextEncoder};
use finetune::{train_and_evaluate, AdapterKind, BertEncoder, Classifier, TrainConfig};

fn assets() -> Assets {
    let dir = default_cache_dir();
    locate(&dir).unwrap_or_else(|e| {
        panic!(
            "real-model tests need the assets in {} ({e})",
            dir.display()
        )
    })
}

/// Mean-pooled embeddings from `tests/reference/minilm_embeddings.py` (pure numpy, float64):
/// the token ids, the first 8 coordinates, the L2 norm and the sum.
type Reference = (&'static str, &'static [u32], [f32; 8], f32, f32);
const REFERENCE: [Reference; 3] = [
    (
        "I love how quiet the new electric cars are.",
        &[
            101, 1045, 2293, 2129, 4251, 1996, 2047, 3751, 3765, 2024, 1012, 102,
        ],
        [
            -0.164685, 0.094531, 0.440253, 0.163223, 0.117645, -0.278886, 0.069711, -0.144549,
        ],
        5.138129,
        0.717431,
    ),
    (
        "self-driving cars just seem lazy and a waste of money",
        &[
            101, 2969, 1011, 4439, 3765, 2074, 4025, 13971, 1998, 1037, 5949, 1997, 2769, 102,
        ],
        [
            0.022606, 0.25674, 0.361242, 0.24811, -0.130186, 0.023181, 0.186453, 0.422992,
        ],
        5.560645,
        1.626075,
    ),
    (
        "The meeting is at 3pm.",
        &[101, 1996, 3116, 2003, 2012, 1017, 9737, 1012, 102],
        [
            0.042662, -0.090105, -0.307365, 0.160983, -0.126638, 0.043319, -0.089661, -0.417604,
        ],
        4.875444,
        1.520687,
    ),
];

#[test]
fn minilm_embeddings_match_the_numpy_reference() {
    let assets = assets();
    let device = Device::Cpu;
    let text = TextEncoder::from_file(&assets.model_dir.join("tokenizer.json"), 128).unwrap();
    let examples: Vec<Example> = REFERENCE
        .iter()
        .map(|r| Example {
            text: r.0.to_string(),
            label: 0,
        })
        .collect();
    let data = Encoded::new(&text, &examples, &[0, 1, 2]).unwrap();
    for (ids, r) in data.ids.iter().zip(&REFERENCE) {
        assert_eq!(ids.as_slice(), r.1, "token ids of {:?}", r.0);
    }
    let base = BertEncoder::load(&assets.model_dir, &device).unwrap();
    let spec = AdapterSpec::from_config(&TrainConfig {
        method: AdapterKind::HeadOnly,
        ..Default::default()
    });
    let model = Classifier::new(base, &spec, 3, &device).unwrap();
    // One padded batch, so masking is exercised too.
    let (ids, mask, _) = data.batch(&[0, 1, 2], &device).unwrap();
    let emb: Vec<Vec<f32>> = model.embed(&ids, &mask).unwrap().to_vec2().unwrap();
    for (e, r) in emb.iter().zip(&REFERENCE) {
        for (k, (got, want)) in e.iter().zip(r.2).enumerate() {
            assert!(
                (got - want).abs() < 2e-5,
                "{:?}: coordinate {k} is {got}, reference {want}",
                r.0
            );
        }
        let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        let sum: f32 = e.iter().sum();
        assert!(
            (norm - r.3).abs() < 1e-4,
            "{:?}: norm {norm}, reference {}",
            r.0,
            r.3
        );
        assert!(
            (sum - r.4).abs() < 1e-3,
            "{:?}: sum {sum}, reference {}",
            r.0,
            r.4
        );
    }
    let _: Tensor = ids;
}

#[test]
fn short_lora_run_beats_the_majority_class() {
    let assets = assets();
    let dir = tempfile::tempdir().unwrap();
    let split = dir.path().join("split.json");
    let cfg = TrainConfig {
        method: AdapterKind::Lora,
        lr: 3e-3,
        epochs: 1,
        max_steps: 40,
        batch_size: 16,
        max_len: 32,
        train_fraction: 0.05,
        max_eval_examples: 200,
        ..Default::default()
    };
    let start = Instant::now();
    let record = train_and_evaluate(&cfg.clone().check().unwrap(), &assets, &split, None).unwrap();
    println!("{}", serde_json::to_string_pretty(&record).unwrap());
    println!("took {:.1} s", start.elapsed().as_secs_f64());
    assert!(split.is_file(), "the split is written to disk");
    assert_eq!(record.steps, 40);
    assert!(
        record.test_accuracy > record.test_majority_rate,
        "test accuracy {} does not beat the majority rate {}",
        record.test_accuracy,
        record.test_majority_rate
    );
    // The split is reused, not redrawn: a second run with another seed sees the same file.
    let bytes = std::fs::read(&split).unwrap();
    let cfg2 = TrainConfig {
        method: AdapterKind::HeadOnly,
        seed: 1,
        max_steps: 2,
        max_eval_examples: 20,
        ..cfg
    };
    train_and_evaluate(&cfg2.check().unwrap(), &assets, &split, None).unwrap();
    assert_eq!(std::fs::read(&split).unwrap(), bytes);
}
