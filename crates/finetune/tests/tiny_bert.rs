//! Properties of every adapter on a tiny randomly initialised BERT (no download): gradients reach
//! every trainable tensor, the base never changes, merged == unmerged, save/load is bit-exact,
//! and trainable-parameter counts match hand-written formulas.

use candle_core::{Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use finetune::adapters::AdapterSpec;
use finetune::config::{AdapterKind, GeneratorActivation};
use finetune::encoder::{BertConfig, BertEncoder};
use finetune::rng::{init_rng, TRAINING};
use finetune::train::cross_entropy;
use finetune::Classifier;
use rand::Rng;

const L: usize = 2;
const H: usize = 16;
const HEADS: usize = 4;
const DH: usize = 4;
const I: usize = 32;
const V: usize = 50;
const P: usize = 24;
const T: usize = 2;
const R: usize = 3;
const C: usize = 3;

fn tiny_config() -> BertConfig {
    BertConfig {
        vocab_size: V,
        hidden_size: H,
        num_hidden_layers: L,
        num_attention_heads: HEADS,
        intermediate_size: I,
        max_position_embeddings: P,
        type_vocab_size: T,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
    }
}

fn spec(kind: AdapterKind, seed: u64) -> AdapterSpec {
    AdapterSpec {
        kind,
        rank: R,
        alpha: 2.0 * R as f64,
        activation: GeneratorActivation::Tanh,
        seed,
    }
}

fn tiny_model(kind: AdapterKind, seed: u64) -> Classifier {
    let base = BertEncoder::random(&tiny_config(), 7, &Device::Cpu).unwrap();
    Classifier::new(base, &spec(kind, seed), C, &Device::Cpu).unwrap()
}

/// A batch of 4 sequences with padding in two of them, and labels.
fn batch() -> (Tensor, Tensor, Vec<usize>) {
    let ids: Vec<u32> = vec![
        2, 5, 9, 11, 3, 0, 0, 0, //
        2, 17, 4, 8, 21, 33, 40, 3, //
        2, 7, 3, 0, 0, 0, 0, 0, //
        2, 44, 12, 6, 19, 25, 3, 0,
    ];
    let mask: Vec<u32> = ids
        .iter()
        .enumerate()
        .map(|(k, &id)| u32::from(id != 0 || k % 8 == 0))
        .collect();
    (
        Tensor::from_vec(ids, (4, 8), &Device::Cpu).unwrap(),
        Tensor::from_vec(mask, (4, 8), &Device::Cpu).unwrap(),
        vec![0, 1, 2, 1],
    )
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A stream of the tests' own, apart from every stream of `finetune::rng`.
const PERTURB: u64 = 5;

/// Give every trainable tensor random values, so that B ≠ 0 and merges are not trivial.
fn randomise(model: &Classifier, seed: u64) {
    let mut rng = init_rng(seed, PERTURB);
    for var in model.varmap().all_vars() {
        let n = var.elem_count();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-0.3f32..0.3)).collect();
        var.set(&Tensor::from_vec(data, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
}

const LOW_RANK: [AdapterKind; 4] = [
    AdapterKind::Lora,
    AdapterKind::MhLora,
    AdapterKind::Replora,
    AdapterKind::Hora,
];

#[test]
fn every_trainable_tensor_gets_a_gradient_after_one_step_and_the_base_is_untouched() {
    let (ids, mask, labels) = batch();
    for kind in AdapterKind::ALL {
        let model = tiny_model(kind, 1);
        let before: Vec<(String, Vec<u32>)> = model
            .base
            .named_tensors()
            .iter()
            .map(|(n, t)| (n.clone(), bits(t)))
            .collect();
        let mut opt = AdamW::new(
            model.varmap().all_vars(),
            ParamsAdamW {
                lr: 1e-2,
                ..Default::default()
            },
        )
        .unwrap();
        let mut rng = init_rng(3, TRAINING);
        let loss = cross_entropy(
            &model.logits(&ids, &mask, 0.1, Some(&mut rng)).unwrap(),
            &labels,
        )
        .unwrap();
        opt.backward_step(&loss).unwrap();

        let loss = cross_entropy(
            &model.logits(&ids, &mask, 0.1, Some(&mut rng)).unwrap(),
            &labels,
        )
        .unwrap();
        let grads = loss.backward().unwrap();
        let data = model.varmap().data().lock().unwrap();
        assert!(!data.is_empty());
        for (name, var) in data.iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{kind}: no gradient for {name}"));
            let norm = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{kind}: gradient of {name} is {norm}"
            );
        }
        drop(data);
        opt.step(&grads).unwrap();
        for ((name, old), (_, t)) in before.iter().zip(model.base.named_tensors()) {
            assert_eq!(old, &bits(&t), "{kind}: base tensor {name} changed");
        }
    }
}

#[test]
fn merged_and_unmerged_logits_agree() {
    let (ids, mask, _) = batch();
    for kind in AdapterKind::ALL {
        let mut model = tiny_model(kind, 2);
        randomise(&model, 11);
        let unmerged = model.logits(&ids, &mask, 0.0, None).unwrap();
        model.merge().unwrap();
        assert!(model.is_merged());
        assert!(model.merge().is_err(), "{kind}: merging twice must fail");
        let merged = model.logits(&ids, &mask, 0.0, None).unwrap();
        let diff = max_abs_diff(&unmerged, &merged);
        assert!(
            diff <= 1e-5,
            "{kind}: merged and unmerged logits differ by {diff}"
        );
        model.unmerge().unwrap();
        assert_eq!(
            bits(&model.logits(&ids, &mask, 0.0, None).unwrap()),
            bits(&unmerged),
            "{kind}: unmerge is not exact"
        );
    }
}

#[test]
fn adapters_start_at_the_pretrained_function() {
    let (ids, mask, _) = batch();
    let probe = tiny_model(AdapterKind::HeadOnly, 4);
    let reference = probe.embed(&ids, &mask).unwrap();
    for kind in LOW_RANK {
        let model = tiny_model(kind, 4);
        let e = model.embed(&ids, &mask).unwrap();
        assert_eq!(
            bits(&e),
            bits(&reference),
            "{kind}: ΔW ≠ 0 at initialisation"
        );
    }
}

#[test]
fn save_load_round_trip_is_bit_exact() {
    let (ids, mask, _) = batch();
    for kind in AdapterKind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(kind, 3);
        randomise(&model, 12);
        model.save(dir.path()).unwrap();
        assert!(dir.path().join("adapter_model.safetensors").is_file());
        assert!(dir.path().join("adapter_config.json").is_file());

        let mut other = tiny_model(kind, 99);
        other.load(dir.path()).unwrap();
        let a = model.varmap().data().lock().unwrap();
        let b = other.varmap().data().lock().unwrap();
        assert_eq!(a.len(), b.len());
        for (name, var) in a.iter() {
            assert_eq!(
                bits(var.as_tensor()),
                bits(b[name].as_tensor()),
                "{kind}: {name} differs after load"
            );
        }
        drop((a, b));
        assert_eq!(
            bits(&model.logits(&ids, &mask, 0.0, None).unwrap()),
            bits(&other.logits(&ids, &mask, 0.0, None).unwrap())
        );
    }
}

#[test]
fn peft_key_names_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(AdapterKind::Lora, 3);
    model.save(dir.path()).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    let a = &tensors["base_model.model.encoder.layer.0.attention.self.query.lora_A.weight"];
    let b = &tensors["base_model.model.encoder.layer.1.attention.self.value.lora_B.weight"];
    assert_eq!(a.dims(), &[R, H]);
    assert_eq!(b.dims(), &[H, R]);
    assert!(tensors.contains_key("base_model.model.classifier.weight"));
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], R);
    assert_eq!(cfg["target_modules"], serde_json::json!(["query", "value"]));
}

#[test]
fn loading_a_bad_adapter_fails_and_leaves_the_model_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(AdapterKind::Hora, 3);
    randomise(&model, 13);
    model.save(dir.path()).unwrap();
    // Wrong method.
    let mut lora = tiny_model(AdapterKind::Lora, 3);
    assert!(lora.load(dir.path()).is_err());
    // Truncated weights.
    let path = dir.path().join("adapter_model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let mut hora = tiny_model(AdapterKind::Hora, 3);
    let before = hora.snapshot().unwrap();
    let err = hora.load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("adapter_model.safetensors"), "{err}");
    let after = hora.snapshot().unwrap();
    for (k, v) in &before {
        assert_eq!(bits(v), bits(&after[k]));
    }
}

#[test]
fn generated_factors_export_as_plain_lora() {
    let (ids, mask, _) = batch();
    for (kind, rank) in [
        (AdapterKind::Hora, R),
        (AdapterKind::Replora, R),
        (AdapterKind::MhLora, HEADS * R),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(kind, 5);
        randomise(&model, 14);
        let exported_rank = model.export_plain_lora(dir.path()).unwrap();
        assert_eq!(exported_rank, rank);
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        let alpha = cfg["lora_alpha"].as_f64().unwrap();
        let base = BertEncoder::random(&tiny_config(), 7, &Device::Cpu).unwrap();
        let lora_spec = AdapterSpec {
            kind: AdapterKind::Lora,
            rank,
            alpha,
            activation: GeneratorActivation::Tanh,
            seed: 0,
        };
        let mut lora = Classifier::new(base, &lora_spec, C, &Device::Cpu).unwrap();
        lora.load(dir.path()).unwrap();
        let diff = max_abs_diff(
            &model.logits(&ids, &mask, 0.0, None).unwrap(),
            &lora.logits(&ids, &mask, 0.0, None).unwrap(),
        );
        assert!(diff <= 1e-5, "{kind}: exported LoRA differs by {diff}");
    }
}

#[test]
fn trainable_parameter_counts_match_formulas() {
    let head = C * (H + 1);
    let base = (V + P + T) * H + 2 * H + L * (4 * (H * H + H) + 2 * H * I + I + H + 4 * H);
    let expected = [
        (AdapterKind::HeadOnly, head),
        (AdapterKind::Lora, head + L * 2 * (R * H + H * R)),
        (
            AdapterKind::MhLora,
            head + L * 2 * (HEADS * R * H + HEADS * DH * R),
        ),
        (AdapterKind::Replora, head + L * (R * H + H * R + 4 * R * R)),
        (
            AdapterKind::Hora,
            head + L * (R * H + HEADS * DH * R + 2 * R * R + 2 * DH * DH),
        ),
        (AdapterKind::Full, head + base),
    ];
    for (kind, n) in expected {
        let model = tiny_model(kind, 0);
        assert_eq!(model.trainable_params(), n, "{kind}");
        assert_eq!(model.base_params(), base);
        assert_eq!(tiny_config().param_count(), base);
    }
}

#[test]
fn initialisation_is_seeded() {
    for kind in LOW_RANK {
        let a = tiny_model(kind, 21).snapshot().unwrap();
        let b = tiny_model(kind, 21).snapshot().unwrap();
        let c = tiny_model(kind, 22).snapshot().unwrap();
        assert!(a.iter().all(|(k, v)| bits(v) == bits(&b[k])));
        assert!(a.iter().any(|(k, v)| bits(v) != bits(&c[k])));
    }
}
