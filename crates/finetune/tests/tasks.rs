//! The second task and the training protocol of issue 25: the 20 Newsgroups files (read,
//! de-duplicated, refused when malformed), per-class budgets, a split around an official test
//! set, and evaluation every so many steps with early stopping after a minimum.

use candle_core::Device;
use finetune::adapters::AdapterSpec;
use finetune::config::{AdapterKind, TrainConfig};
use finetune::data::{
    load_newsgroups, train_budget, Budget, Encoded, Split, Task, NEWSGROUPS_LABELS,
};
use finetune::encoder::{BertConfig, BertEncoder};
use finetune::train::train_model;
use finetune::ParamGuard;
use finetune::{Classifier, FinetuneError};
use std::path::Path;

fn write_tab(dir: &Path, name: &str, rows: &[(&str, &str)]) -> std::path::PathBuf {
    let mut s = String::from("Category\tText\nd\tstring\nclass\t\n");
    for (c, t) in rows {
        s += &format!("{c}\t{t}\n");
    }
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn newsgroups_rows_are_read_deduplicated_and_test_texts_seen_in_training_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let train = write_tab(
        dir.path(),
        "train.tab",
        &[
            ("sci.space", "orbit and launch"),
            ("rec.autos", "engine oil"),
            ("sci.space", "orbit and launch"),
            ("alt.atheism", "faq"),
        ],
    );
    let test = write_tab(
        dir.path(),
        "test.tab",
        &[
            ("rec.autos", "brakes"),
            ("sci.space", "orbit and launch"),
            ("rec.autos", "brakes"),
            ("talk.religion.misc", "a question"),
        ],
    );
    let d = load_newsgroups(&train, &test).unwrap();
    assert_eq!(d.task, Task::Newsgroups);
    let texts: Vec<&str> = d.examples.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "orbit and launch",
            "engine oil",
            "faq",
            "brakes",
            "a question"
        ]
    );
    let label = |name: &str| NEWSGROUPS_LABELS.iter().position(|l| *l == name).unwrap();
    assert_eq!(d.examples[3].label, label("rec.autos"));
    assert_eq!(d.examples[4].label, label("talk.religion.misc"));
    assert_eq!(d.official_test, Some(vec![3, 4]));
    assert_eq!(
        d.notes,
        [
            "1 duplicate training texts kept once",
            "1 test texts that also occur in training dropped from test",
            "1 duplicate test texts kept once"
        ]
    );
}

#[test]
fn malformed_newsgroups_files_are_refused_by_name_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_tab(dir.path(), "good.tab", &[("sci.med", "a cure")]);
    let msg = |train: &Path| load_newsgroups(train, &good).unwrap_err().to_string();
    let p = dir.path().join("header.tab");
    std::fs::write(&p, "Category\tText\nd\tstring\n\nsci.med\tx\n").unwrap();
    let m = msg(&p);
    assert!(
        m.contains("header.tab line 3") && m.contains("class"),
        "{m}"
    );
    let p = write_tab(
        dir.path(),
        "unknown.tab",
        &[("sci.med", "x"), ("sci.cooking", "y")],
    );
    let m = msg(&p);
    assert!(
        m.contains("unknown.tab line 5") && m.contains("sci.cooking"),
        "{m}"
    );
    let p = dir.path().join("notab.tab");
    std::fs::write(&p, "Category\tText\nd\tstring\nclass\t\nsci.med no tab\n").unwrap();
    assert!(msg(&p).contains("line 4: no tab"), "{}", msg(&p));
    let missing = dir.path().join("missing.tab");
    assert!(matches!(
        load_newsgroups(&missing, &good),
        Err(FinetuneError::MissingAsset { .. })
    ));
}

/// The real files (CI fetches them with `hora assets fetch`): the counts of the "bydate" split
/// as shipped (11,293 training and 7,528 test texts) and what loading drops: 20 repeated
/// training texts, 7 test texts also in training, 7 repeated test texts (counted with Python on
/// the same files).
#[test]
fn the_shipped_newsgroups_files_load_with_their_known_counts() {
    let assets = finetune::assets::locate(&finetune::assets::default_cache_dir())
        .expect("the assets (run `hora assets fetch`)");
    let d = assets.dataset(Task::Newsgroups).unwrap();
    let test = d.official_test.as_ref().unwrap();
    assert_eq!(d.examples.len() - test.len(), 11_273);
    assert_eq!(test.len(), 7_514);
    assert_eq!(
        d.notes,
        [
            "20 duplicate training texts kept once",
            "7 test texts that also occur in training dropped from test",
            "7 duplicate test texts kept once"
        ]
    );
    let mut per_class = [0usize; 20];
    for &i in test {
        per_class[d.examples[i].label] += 1;
    }
    assert!(per_class.iter().all(|&n| n > 200), "{per_class:?}");
}

/// A missing newsgroups file names the file (and `hora assets fetch`); a corrupt one is refused
/// by its hash before a byte of it is read as data.
#[test]
fn missing_or_corrupt_newsgroups_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let assets = finetune::Assets {
        model_dir: dir.path().join("model"),
        tweets_csv: dir.path().join("tweets.csv"),
        cache_dir: dir.path().to_path_buf(),
    };
    match assets.dataset(Task::Newsgroups) {
        Err(FinetuneError::MissingAsset { path }) => {
            assert!(path.ends_with("newsgroups-train.tab"), "{path:?}")
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.path().join("newsgroups-train.tab"), "Category\tText\n").unwrap();
    match assets.dataset(Task::Newsgroups) {
        Err(FinetuneError::CorruptAsset { path, reason }) => {
            assert!(path.ends_with("newsgroups-train.tab") && reason.contains("sha256"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn per_class_budgets_are_exact_nested_and_seeded() {
    // 3 classes of 30, 30 and 5 examples.
    let labels: Vec<usize> = (0..65)
        .map(|i| {
            if i < 30 {
                0
            } else if i < 60 {
                1
            } else {
                2
            }
        })
        .collect();
    let train: Vec<usize> = (0..65).collect();
    let pick = |k: usize, seed: u64| train_budget(&train, &labels, 3, Budget::PerClass(k), seed);
    let count = |s: &[usize], c: usize| s.iter().filter(|&&i| labels[i] == c).count();
    let s4 = pick(4, 1);
    assert_eq!((count(&s4, 0), count(&s4, 1), count(&s4, 2)), (4, 4, 4));
    let s16 = pick(16, 1);
    // A class with fewer examples than k gives all it has.
    assert_eq!(
        (count(&s16, 0), count(&s16, 1), count(&s16, 2)),
        (16, 16, 5)
    );
    assert!(s4.iter().all(|i| s16.contains(i)), "nested");
    assert_eq!(pick(4, 1), s4);
    assert_ne!(pick(4, 2), s4);
    // The fraction budget of three classes is what every committed tweets run drew.
    assert_eq!(
        train_budget(&train, &labels, 3, Budget::Fraction(0.2), 9),
        finetune::data::train_subset(&train, &labels, 0.2, 9)
    );
}

#[test]
fn a_split_around_an_official_test_set_is_a_stratified_partition() {
    let labels: Vec<usize> = (0..200).map(|i| i % 4).collect();
    let test: Vec<usize> = (150..200).collect();
    let names = ["a", "b", "c", "d"];
    let s = Split::with_test(&labels, 4, &names, &test, 3, 0.2);
    let mut t = s.test.clone();
    t.sort_unstable();
    assert_eq!(t, test);
    let mut all: Vec<usize> = s
        .train
        .iter()
        .chain(&s.val)
        .chain(&s.test)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..200).collect::<Vec<_>>());
    // 150 outside test, ~37 per class, 20% of each to validation.
    for c in 0..4 {
        let v = s.val.iter().filter(|&&i| labels[i] == c).count();
        assert!((7..=8).contains(&v), "class {c}: {v}");
    }
    assert_eq!(s.test_fraction, 0.0);
    assert_eq!(s, Split::with_test(&labels, 4, &names, &test, 3, 0.2));
    // Stored and read back through the validation of a split file.
    let dir = tempfile::tempdir().unwrap();
    let data = finetune::data::Dataset {
        task: Task::Newsgroups,
        examples: labels
            .iter()
            .map(|&label| finetune::data::Example {
                text: String::new(),
                label,
            })
            .collect(),
        official_test: Some(test.clone()),
        notes: Vec::new(),
    };
    let path = dir.path().join("split.json");
    let made = Split::for_dataset(&path, &data, 3, 0.2, 0.1).unwrap();
    assert_eq!(made.test_fraction, 0.0);
    assert_eq!(Split::for_dataset(&path, &data, 3, 0.2, 0.1).unwrap(), made);
    assert!(Split::for_dataset(&path, &data, 4, 0.2, 0.1).is_err());
}

fn tiny_classifier() -> Classifier {
    let cfg = BertConfig {
        vocab_size: 50,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 32,
        max_position_embeddings: 24,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
    };
    let base = BertEncoder::random(&cfg.clone().check().unwrap(), 7, &Device::Cpu).unwrap();
    let tc = TrainConfig::default();
    Classifier::new(base, &AdapterSpec::from_config(&tc), 3, &Device::Cpu).unwrap()
}

fn encoded(n: usize, shift: usize) -> Encoded {
    Encoded {
        ids: (0..n)
            .map(|i| {
                let mut v = vec![2u32];
                v.extend((0..3 + i % 5).map(|k| (5 + (i * 7 + k * 3 + shift) % 40) as u32));
                v
            })
            .collect(),
        labels: (0..n).map(|i| i % 3).collect(),
    }
}

fn run(cfg: TrainConfig) -> finetune::RunRecord {
    let cfg = cfg.check().unwrap();
    train_model(
        &cfg,
        &tiny_classifier(),
        &encoded(40, 0),
        &encoded(12, 1),
        &encoded(12, 2),
        &Device::Cpu,
        None,
        std::time::Instant::now(),
    )
    .unwrap()
}

#[test]
fn evaluation_every_k_steps_ends_with_one_and_counts_patience_in_evaluations() {
    let base = TrainConfig {
        method: AdapterKind::Lora,
        batch_size: 8,
        epochs: 4,
        patience: 0,
        lr: 1e-2,
        ..Default::default()
    };
    // 5 steps an epoch, 20 in all; every 3 steps, and once at the end.
    let r = run(TrainConfig {
        eval_every: 3,
        ..base.clone()
    });
    let steps: Vec<Option<usize>> = r.epochs.iter().map(|e| e.step).collect();
    let want: Vec<Option<usize>> = [3, 6, 9, 12, 15, 18, 20].into_iter().map(Some).collect();
    assert_eq!(steps, want);
    assert_eq!(r.steps, 20);
    let numbers: Vec<usize> = r.epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(numbers, (1..=7).collect::<Vec<_>>());
    assert!(r.best_epoch >= 1 && r.best_epoch <= 7);
    // The same run again: the same numbers, bit for bit.
    let again = run(TrainConfig {
        eval_every: 3,
        ..base.clone()
    });
    assert_eq!(again.test_macro_f1.to_bits(), r.test_macro_f1.to_bits());
    let f1 = |r: &finetune::RunRecord| -> Vec<u64> {
        r.epochs.iter().map(|e| e.val_macro_f1.to_bits()).collect()
    };
    assert_eq!(f1(&again), f1(&r));
    // Per epoch (every committed run): four evaluations, no step recorded.
    let per_epoch = run(base.clone());
    assert_eq!(per_epoch.epochs.len(), 4);
    assert!(per_epoch.epochs.iter().all(|e| e.step.is_none()));

    // Patience 1 stops at the first evaluation without a better validation macro-F1, but not
    // before `min_steps`.
    let stopped = run(TrainConfig {
        eval_every: 1,
        patience: 1,
        ..base.clone()
    });
    let waited = run(TrainConfig {
        eval_every: 1,
        patience: 1,
        min_steps: 12,
        ..base.clone()
    });
    let last = |r: &finetune::RunRecord| r.epochs.last().unwrap().step.unwrap();
    assert!(last(&stopped) < 20, "no stop: {}", last(&stopped));
    assert!(last(&waited) >= 12 && last(&waited) >= last(&stopped));
    // Where it stopped, the last evaluation was one past the best.
    let s = &stopped;
    assert_eq!(s.epochs.len(), s.best_epoch + 1);
}

#[test]
fn a_minimum_past_the_last_step_is_refused() {
    let e = TrainConfig {
        max_steps: 10,
        min_steps: 20,
        ..Default::default()
    }
    .check()
    .unwrap_err()
    .to_string();
    assert!(e.contains("min_steps"), "{e}");
    // Two budgets at once are refused, not resolved silently.
    let e = TrainConfig {
        train_per_class: 16,
        train_fraction: 0.5,
        ..Default::default()
    }
    .check()
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("train_fraction") && e.contains("train_per_class"),
        "{e}"
    );
}
