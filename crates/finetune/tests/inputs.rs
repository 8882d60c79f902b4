//! Bad input is an error that names the problem: configs, splits, assets. No download needed.

use finetune::assets::{check_safetensors, locate, verify_file, with_model_dir};
use finetune::data::{load_tweets, train_subset, Split};
use finetune::ParamGuard;
use finetune::{AdapterKind, FinetuneError, TrainConfig};

#[test]
fn config_errors_name_the_field_and_the_range() {
    assert!(TrainConfig::default().check().is_ok());
    for (cfg, field) in [
        (
            TrainConfig {
                rank: 0,
                ..Default::default()
            },
            "rank",
        ),
        (
            TrainConfig {
                dropout: 1.0,
                ..Default::default()
            },
            "dropout",
        ),
        (
            TrainConfig {
                lr: f64::NAN,
                ..Default::default()
            },
            "lr",
        ),
        (
            TrainConfig {
                train_fraction: 0.0,
                ..Default::default()
            },
            "train_fraction",
        ),
        (
            TrainConfig {
                max_len: 1000,
                ..Default::default()
            },
            "max_len",
        ),
        (
            TrainConfig {
                batch_size: 0,
                ..Default::default()
            },
            "batch_size",
        ),
    ] {
        let err = cfg.check().unwrap_err().to_string();
        assert!(err.contains(&format!("`{field}`")), "{err}");
    }
}

#[test]
fn config_serde_is_kebab_case_strict_and_defaulted() {
    let cfg: TrainConfig = serde_json::from_str(r#"{"method": "mh-lora", "rank": 4}"#).unwrap();
    assert_eq!(cfg.method, AdapterKind::MhLora);
    assert_eq!(cfg.rank, 4);
    assert_eq!(cfg.epochs, TrainConfig::default().epochs);
    assert!(serde_json::from_str::<TrainConfig>(r#"{"rnak": 4}"#).is_err());
    assert!(serde_json::from_str::<TrainConfig>(r#"{"method": "qlora"}"#).is_err());
    for kind in AdapterKind::ALL {
        assert_eq!(
            serde_json::to_string(&kind).unwrap(),
            format!("\"{}\"", kind.name())
        );
        assert_eq!(AdapterKind::from_name(kind.name()).unwrap(), kind);
    }
}

#[test]
fn missing_assets_name_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    let err = locate(dir.path()).unwrap_err();
    assert!(matches!(err, FinetuneError::MissingAsset { .. }));
    assert!(err.to_string().contains("hora assets fetch"), "{err}");
    assert!(with_model_dir(dir.path(), dir.path())
        .unwrap_err()
        .to_string()
        .contains("hora assets fetch"));
}

#[test]
fn corrupt_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, b"not really").unwrap();
    let err = verify_file(&path, "00").unwrap_err();
    assert!(matches!(err, FinetuneError::CorruptAsset { .. }), "{err}");
    // A truncated safetensors file: valid header, data cut short.
    let t = candle_core::Tensor::zeros((4, 4), candle_core::DType::F32, &candle_core::Device::Cpu)
        .unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("w".to_string(), t)]),
        &path,
    )
    .unwrap();
    assert!(check_safetensors(&path).is_ok());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    assert!(matches!(
        check_safetensors(&path).unwrap_err(),
        FinetuneError::CorruptAsset { .. }
    ));
}

#[test]
fn tweets_are_read_lossily() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    std::fs::write(
        &path,
        b"sentiment,confidence,text\nnegative,0.7,\"bad, \xff really\"\npositive,1,good\n",
    )
    .unwrap();
    let rows = load_tweets(&path).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].label, 0);
    assert!(rows[0].text.starts_with("bad, "));
    std::fs::write(&path, b"sentiment,confidence,text\nangry,0.7,x\n").unwrap();
    assert!(load_tweets(&path)
        .unwrap_err()
        .to_string()
        .contains("angry"));
}

#[test]
fn the_split_is_stratified_seeded_reused_and_validated() {
    let labels: Vec<usize> = (0..1000).map(|i| [0, 0, 1, 1, 2][i % 5]).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("split.json");
    let a = Split::load_or_create(&path, &labels, 3, 0.1, 0.1).unwrap();
    assert_eq!(a, Split::stratified(&labels, 3, 3, 0.1, 0.1));
    assert_eq!(a.train.len() + a.val.len() + a.test.len(), 1000);
    let count = |ix: &[usize], c| ix.iter().filter(|&&i| labels[i] == c).count();
    assert_eq!(
        (count(&a.test, 0), count(&a.test, 1), count(&a.test, 2)),
        (40, 40, 20)
    );
    assert_eq!(
        Split::load_or_create(&path, &labels, 3, 0.1, 0.1).unwrap(),
        a
    );
    assert_ne!(Split::stratified(&labels, 3, 4, 0.1, 0.1), a);
    let err = Split::load_or_create(&path, &labels, 4, 0.1, 0.1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("split_seed"), "{err}");
    assert!(Split::load_or_create(&path, &labels[..999], 3, 0.1, 0.1).is_err());

    let small = train_subset(&a.train, &labels, 0.1, 0);
    let large = train_subset(&a.train, &labels, 0.3, 0);
    assert!(
        small.iter().all(|i| large.contains(i)),
        "subsets are nested"
    );
    assert_eq!(count(&small, 2) * 2, count(&small, 0));
}
