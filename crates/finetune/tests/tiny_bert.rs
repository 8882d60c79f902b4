//! Properties of every adapter on a tiny randomly initialised BERT (no download): gradients reach
//! every trainable tensor, the base never changes, merged == unmerged, save/load is bit-exact,
//! and trainable-parameter counts match hand-written formulas.

use candle_core::{Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use finetune::adapters::AdapterSpec;
use finetune::config::{AdapterKind, GeneratorActivation, HeadInit};
use finetune::encoder::{BertConfig, BertEncoder};
use finetune::rng::{init_rng, TRAINING};
use finetune::train::cross_entropy;
use finetune::{AdapterContext, Classifier};
use finetune::{Checked, ParamGuard};
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

fn tiny_config() -> Checked<BertConfig> {
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
    .check()
    .expect("the tiny config is valid")
}

fn spec(kind: AdapterKind, seed: u64) -> AdapterSpec {
    AdapterSpec {
        kind,
        rank: R,
        alpha: 2.0 * R as f64,
        activation: GeneratorActivation::Tanh,
        seed,
        head_init: HeadInit::default(),
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

/// Evaluation (`logits` without an rng) gives the bits a tracked forward pass gives (dropout 0),
/// but keeps no backward graph: its result and the whole pass (the adapters' updates, and full
/// fine-tuning's own weights) are cut from the trainable tensors (issue 23: the graph kept every intermediate of the pass alive,
/// and an evaluation batch of 64 texts × 128 tokens ran 1.4–1.6× slower with it).
#[test]
fn evaluation_keeps_the_bits_and_drops_the_graph() {
    let (ids, mask, _) = batch();
    for kind in AdapterKind::ALL {
        let model = tiny_model(kind, 2);
        randomise(&model, 11);
        let mut rng = finetune::rng::init_rng(0, finetune::rng::TRAINING);
        let tracked = model.logits(&ids, &mask, 0.0, Some(&mut rng)).unwrap();
        let eval = model.logits(&ids, &mask, 0.0, None).unwrap();
        assert_eq!(
            bits(&eval),
            bits(&tracked),
            "{kind}: evaluation moved the logits"
        );
        assert!(
            !eval.track_op(),
            "{kind}: the evaluation result carries a graph"
        );
        assert!(
            tracked.track_op(),
            "{kind}: the training result lost its graph"
        );
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

fn ctx() -> AdapterContext {
    AdapterContext {
        base_model: "tiny/random-bert".into(),
        base_model_path: Some("/nowhere/tiny".into()),
        labels: vec!["a".into(), "b".into(), "c".into()],
        max_len: 8,
        dropout: 0.1,
    }
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn load_err(model: &mut Classifier, dir: &std::path::Path) -> String {
    model.load(dir).unwrap_err().to_string()
}

#[test]
fn save_load_round_trip_is_bit_exact() {
    let (ids, mask, _) = batch();
    for kind in AdapterKind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(kind, 3);
        randomise(&model, 12);
        model.save(dir.path(), &ctx()).unwrap();
        for f in [
            "adapter_model.safetensors",
            "classifier.safetensors",
            "hora_adapter.json",
        ] {
            assert!(dir.path().join(f).is_file(), "{kind}: {f}");
        }
        // Only a LoRA folder claims to be peft's.
        assert_eq!(
            dir.path().join("adapter_config.json").is_file(),
            kind == AdapterKind::Lora,
            "{kind}"
        );

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
        // Built from the folder alone: the same logits, and the metadata back.
        let base = BertEncoder::random(&tiny_config(), 7, &Device::Cpu).unwrap();
        let (built, meta) = Classifier::from_dir(base, dir.path(), &Device::Cpu).unwrap();
        assert_eq!(built.spec().kind, kind);
        assert_eq!(meta.unwrap().labels, ctx().labels);
        assert_eq!(
            bits(&model.logits(&ids, &mask, 0.0, None).unwrap()),
            bits(&built.logits(&ids, &mask, 0.0, None).unwrap())
        );
    }
}

#[test]
fn a_lora_folder_is_peft_and_a_native_folder_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(AdapterKind::Lora, 3);
    model.save(dir.path(), &ctx()).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    let a = &tensors["base_model.model.encoder.layer.0.attention.self.query.lora_A.weight"];
    let b = &tensors["base_model.model.encoder.layer.1.attention.self.value.lora_B.weight"];
    assert_eq!(a.dims(), &[R, H]);
    assert_eq!(b.dims(), &[H, R]);
    assert_eq!(
        tensors.len(),
        L * 2 * 2,
        "only LoRA factors: {:?}",
        tensors.keys()
    );
    let head =
        candle_core::safetensors::load(dir.path().join("classifier.safetensors"), &Device::Cpu)
            .unwrap();
    assert_eq!(head["weight"].dims(), &[C, H]);
    assert_eq!(head["bias"].dims(), &[C]);

    let cfg = read_json(&dir.path().join("adapter_config.json"));
    // Exactly these keys, every one a field of peft's LoraConfig.
    let mut keys: Vec<&str> = cfg
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "base_model_name_or_path",
            "bias",
            "fan_in_fan_out",
            "inference_mode",
            "init_lora_weights",
            "lora_alpha",
            "lora_dropout",
            "modules_to_save",
            "peft_type",
            "r",
            "target_modules",
            "task_type",
            "use_dora",
            "use_rslora"
        ]
    );
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], R);
    assert_eq!(cfg["lora_alpha"], 2.0 * R as f64);
    assert_eq!(cfg["lora_dropout"], 0.1);
    assert_eq!(cfg["base_model_name_or_path"], "tiny/random-bert");
    assert_eq!(cfg["target_modules"], serde_json::json!(["query", "value"]));
    let meta = read_json(&dir.path().join("hora_adapter.json"));
    assert_eq!(meta["method"], "lora");
    assert_eq!(meta["pooling"], "mean");
    assert_eq!(meta["base_model_path"], "/nowhere/tiny");
    assert_eq!(meta["labels"], serde_json::json!(["a", "b", "c"]));

    // A native HoRA saved over it leaves no adapter_config.json behind.
    let hora = tiny_model(AdapterKind::Hora, 3);
    hora.save(dir.path(), &ctx()).unwrap();
    assert!(!dir.path().join("adapter_config.json").exists());
    assert_eq!(
        read_json(&dir.path().join("hora_adapter.json"))["method"],
        "hora"
    );
}

#[test]
fn loading_a_bad_adapter_fails_and_leaves_the_model_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(AdapterKind::Hora, 3);
    randomise(&model, 13);
    model.save(dir.path(), &ctx()).unwrap();
    // Wrong method.
    let mut lora = tiny_model(AdapterKind::Lora, 3);
    let err = load_err(&mut lora, dir.path());
    assert!(
        err.contains("holds hora") && err.contains("model is lora"),
        "{err}"
    );
    // Truncated weights.
    let path = dir.path().join("adapter_model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let mut hora = tiny_model(AdapterKind::Hora, 3);
    let before = hora.snapshot().unwrap();
    let err = load_err(&mut hora, dir.path());
    assert!(err.contains("adapter_model.safetensors"), "{err}");
    let after = hora.snapshot().unwrap();
    for (k, v) in &before {
        assert_eq!(bits(v), bits(&after[k]));
    }
    // No config of either kind.
    let empty = tempfile::tempdir().unwrap();
    let err = load_err(&mut hora, empty.path());
    assert!(err.contains("neither adapter_config.json"), "{err}");
}

/// A folder's own rank and α go through the same check as a training configuration's: a
/// folder claiming a rank outside 1..=256 or a non-positive α is refused by name before any
/// tensor is built (they were checked only for a rank of 0 before).
#[test]
fn a_folder_with_a_rank_or_alpha_no_configuration_allows_is_refused() {
    for (key, value, field) in [
        ("r", serde_json::json!(300), "rank"),
        ("lora_alpha", serde_json::json!(-2.0), "alpha"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        tiny_model(AdapterKind::Lora, 3)
            .save(dir.path(), &ctx())
            .unwrap();
        // A peft folder alone (without this project's metadata, which must agree with it).
        std::fs::remove_file(dir.path().join("hora_adapter.json")).unwrap();
        let path = dir.path().join("adapter_config.json");
        let mut config = read_json(&path);
        config[key] = value.clone();
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let base = BertEncoder::random(&tiny_config(), 7, &Device::Cpu).unwrap();
        let err = match Classifier::from_dir(base, dir.path(), &Device::Cpu) {
            Ok(_) => panic!("{key} = {value} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(field) && err.contains(if field == "rank" { "1..=256" } else { "> 0" }),
            "{key} = {value}: {err}"
        );
    }
}

/// Write `tensors` and `config` as peft would: `save_pretrained` of a model wrapped by
/// `get_peft_model`.
fn write_peft(dir: &std::path::Path, config: serde_json::Value, tensors: &[(String, Tensor)]) {
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let bytes = safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), None).unwrap();
    std::fs::write(dir.join("adapter_model.safetensors"), bytes).unwrap();
}

/// What peft 0.21 writes for a LoRA (fields abridged to those that matter; the rest are ignored).
fn peft_config(
    task_type: serde_json::Value,
    modules_to_save: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "peft_type": "LORA", "task_type": task_type, "r": R, "lora_alpha": 2.0 * R as f64,
        "lora_dropout": 0.05, "target_modules": ["value", "query"], "bias": "none",
        "fan_in_fan_out": false, "modules_to_save": modules_to_save, "use_rslora": false,
        "use_dora": false, "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": null,
        "base_model_name_or_path": null, "revision": null, "auto_mapping": null,
        "megatron_config": null, "loftq_config": {}, "layer_replication": null,
        "eva_config": null, "corda_config": null, "lora_bias": false, "target_parameters": null
    })
}

/// The LoRA factors and head of `model` under the keys peft gives them for a model whose
/// encoder lives at `prefix` (`""` for BertModel, `"bert."` for BertForSequenceClassification).
fn peft_tensors(model: &Classifier, prefix: &str, with_head: bool) -> Vec<(String, Tensor)> {
    let data = model.varmap().data().lock().unwrap();
    data.iter()
        .filter(|(k, _)| with_head || !k.contains("classifier"))
        .map(|(k, v)| {
            let key = if k.contains("classifier") {
                k.clone()
            } else {
                k.replacen(
                    "base_model.model.",
                    &format!("base_model.model.{prefix}"),
                    1,
                )
            };
            (key, v.as_tensor().copy().unwrap())
        })
        .collect()
}

#[test]
fn loads_what_peft_writes_from_bert_model_and_bert_for_sequence_classification() {
    let (ids, mask, _) = batch();
    let model = tiny_model(AdapterKind::Lora, 3);
    randomise(&model, 21);
    let want = model.logits(&ids, &mask, 0.0, None).unwrap();
    let base = || BertEncoder::random(&tiny_config(), 7, &Device::Cpu).unwrap();

    // BertForSequenceClassification, task_type SEQ_CLS: `bert.` prefix, head in modules_to_save.
    let dir = tempfile::tempdir().unwrap();
    write_peft(
        dir.path(),
        peft_config("SEQ_CLS".into(), serde_json::json!(["classifier", "score"])),
        &peft_tensors(&model, "bert.", true),
    );
    let (loaded, meta) = Classifier::from_dir(base(), dir.path(), &Device::Cpu).unwrap();
    assert!(meta.is_none());
    assert_eq!(
        bits(&want),
        bits(&loaded.logits(&ids, &mask, 0.0, None).unwrap())
    );

    // BertModel, task_type and modules_to_save null: no head in the file...
    let dir = tempfile::tempdir().unwrap();
    write_peft(
        dir.path(),
        peft_config(serde_json::Value::Null, serde_json::Value::Null),
        &peft_tensors(&model, "", false),
    );
    let err = Classifier::from_dir(base(), dir.path(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("classifier head is missing") && err.contains("classifier.safetensors"),
        "{err}"
    );
    let mut into = tiny_model(AdapterKind::Lora, 8);
    let err = load_err(&mut into, dir.path());
    assert!(err.contains("classifier head is missing"), "{err}");
    // ...so the user's head goes beside it, and then it loads.
    let head = model.head();
    let head_tensors = [
        ("weight", head.weight.copy().unwrap()),
        ("bias", head.bias.as_ref().unwrap().copy().unwrap()),
    ];
    std::fs::write(
        dir.path().join("classifier.safetensors"),
        safetensors::serialize(head_tensors.iter().map(|(k, t)| (*k, t)), None).unwrap(),
    )
    .unwrap();
    into.load(dir.path()).unwrap();
    assert_eq!(
        bits(&want),
        bits(&into.logits(&ids, &mask, 0.0, None).unwrap())
    );
}

#[test]
fn peft_files_this_model_cannot_compute_are_refused_by_name() {
    let model = tiny_model(AdapterKind::Lora, 3);
    let tensors = peft_tensors(&model, "", true);
    let cases: [(&str, serde_json::Value, &str); 6] = [
        (
            "peft_type",
            serde_json::json!("IA3"),
            "peft_type is \"IA3\"",
        ),
        ("use_rslora", serde_json::json!(true), "use_rslora"),
        ("use_dora", serde_json::json!(true), "use_dora"),
        ("bias", serde_json::json!("all"), "bias = \"all\""),
        (
            "rank_pattern",
            serde_json::json!({"query": 4}),
            "rank_pattern",
        ),
        ("r", serde_json::Value::Null, "r is missing"),
    ];
    for (field, value, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = peft_config(serde_json::Value::Null, serde_json::Value::Null);
        cfg[field] = value;
        write_peft(dir.path(), cfg, &tensors);
        let mut into = tiny_model(AdapterKind::Lora, 3);
        let err = load_err(&mut into, dir.path());
        assert!(err.contains(says), "{field}: {err}");
    }
    // A LoRA on more modules than query and value.
    let dir = tempfile::tempdir().unwrap();
    let mut more = tensors.clone();
    more.push((
        "base_model.model.encoder.layer.0.attention.self.key.lora_A.weight".into(),
        Tensor::zeros((R, H), candle_core::DType::F32, &Device::Cpu).unwrap(),
    ));
    write_peft(
        dir.path(),
        peft_config(serde_json::Value::Null, serde_json::Value::Null),
        &more,
    );
    let mut into = tiny_model(AdapterKind::Lora, 3);
    let err = load_err(&mut into, dir.path());
    assert!(
        err.contains("unexpected tensor") && err.contains("key.lora_A"),
        "{err}"
    );
    // A different alpha is not silently rescaled.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = peft_config(serde_json::Value::Null, serde_json::Value::Null);
    cfg["lora_alpha"] = serde_json::json!(32.0);
    write_peft(dir.path(), cfg, &tensors);
    let err = load_err(&mut into, dir.path());
    assert!(err.contains("alpha = 32"), "{err}");
}

#[test]
fn generated_factors_export_as_plain_lora() {
    let (ids, mask, _) = batch();
    for (kind, rank) in [
        (AdapterKind::Lora, R),
        (AdapterKind::Hora, R),
        (AdapterKind::Replora, R),
        (AdapterKind::MhLora, HEADS * R),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(kind, 5);
        randomise(&model, 14);
        let exported_rank = model.export_plain_lora(dir.path(), &ctx()).unwrap();
        assert_eq!(exported_rank, rank);
        let cfg = read_json(&dir.path().join("adapter_config.json"));
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(cfg["r"], rank);
        let meta = read_json(&dir.path().join("hora_adapter.json"));
        assert_eq!(meta["method"], "lora");
        if kind == AdapterKind::Lora {
            assert!(meta.get("exported_from").is_none());
        } else {
            assert_eq!(meta["exported_from"], kind.name());
        }
        let base = BertEncoder::random(&tiny_config(), 7, &Device::Cpu).unwrap();
        let (lora, _) = Classifier::from_dir(base, dir.path(), &Device::Cpu).unwrap();
        assert_eq!(lora.spec().kind, AdapterKind::Lora);
        assert_eq!(lora.spec().rank, rank);
        let diff = max_abs_diff(
            &model.logits(&ids, &mask, 0.0, None).unwrap(),
            &lora.logits(&ids, &mask, 0.0, None).unwrap(),
        );
        assert!(diff <= 1e-5, "{kind}: exported LoRA differs by {diff}");
    }
    let probe = tiny_model(AdapterKind::HeadOnly, 5);
    let err = probe
        .export_plain_lora(tempfile::tempdir().unwrap().path(), &ctx())
        .unwrap_err()
        .to_string();
    assert!(err.contains("head-only has no low-rank update"), "{err}");
}

#[test]
fn merged_weights_are_base_plus_scaled_b_a() {
    let model = tiny_model(AdapterKind::Lora, 3);
    randomise(&model, 15);
    let merged: std::collections::HashMap<String, Tensor> =
        model.merged_weights().unwrap().into_iter().collect();
    let base: std::collections::HashMap<String, Tensor> =
        model.base.named_tensors().into_iter().collect();
    let vars = model.varmap().data().lock().unwrap();
    let at = "encoder.layer.1.attention.self.value";
    let a = vars[&format!("base_model.model.{at}.lora_A.weight")].as_tensor();
    let b = vars[&format!("base_model.model.{at}.lora_B.weight")].as_tensor();
    let want = (&base[&format!("{at}.weight")] + (b.matmul(a).unwrap() * 2.0).unwrap()).unwrap();
    assert!(max_abs_diff(&merged[&format!("{at}.weight")], &want) <= 1e-6);
    let key = "encoder.layer.0.attention.self.key.weight";
    assert_eq!(bits(&merged[key]), bits(&base[key]));
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

#[test]
fn transformers_style_dropout_and_head_init_are_opt_in() {
    use finetune::model::Dropouts;
    let (ids, mask, _) = batch();
    let model = tiny_model(AdapterKind::Lora, 3);
    randomise(&model, 16);
    let eval = model.logits(&ids, &mask, 0.0, None).unwrap();
    // All rates 0: training logits are the eval logits, bit for bit (no RNG draw changes them).
    let mut rng = init_rng(1, TRAINING);
    let zero = model
        .training_logits(&ids, &mask, Dropouts::default(), &mut rng)
        .unwrap();
    assert_eq!(bits(&eval), bits(&zero));
    let rates = Dropouts {
        adapter: 0.0,
        hidden: 0.1,
        attention: 0.1,
    };
    let dropped = model.training_logits(&ids, &mask, rates, &mut rng).unwrap();
    assert!(max_abs_diff(&eval, &dropped) > 1e-3);

    let bias = |m: &Classifier| m.head().bias.as_ref().unwrap().to_vec1::<f32>().unwrap();
    assert!(bias(&tiny_model(AdapterKind::Lora, 3))
        .iter()
        .all(|b| *b == 0.0));
    let mut s = spec(AdapterKind::Lora, 3);
    s.head_init = HeadInit::PytorchLinear;
    let base = BertEncoder::random(&tiny_config(), 7, &Device::Cpu).unwrap();
    let torch_like = Classifier::new(base, &s, C, &Device::Cpu).unwrap();
    let b = bias(&torch_like);
    let bound = 1.0 / (H as f32).sqrt();
    assert!(b.iter().all(|x| *x != 0.0 && x.abs() <= bound), "{b:?}");
    // The weight draw comes first, so it is the default's.
    assert_eq!(
        bits(&torch_like.head().weight),
        bits(&tiny_model(AdapterKind::Lora, 3).head().weight)
    );
}
