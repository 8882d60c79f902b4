//! The labelled tweets, the fixed stratified train/validation/test split every method shares,
//! tokenisation, and batching by length.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{io_err, FinetuneError, Result};
use crate::rng::{init_rng, SPLIT, SUBSET};

/// Class names in label-index order.
pub const LABELS: [&str; 3] = ["negative", "neutral", "positive"];

#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub text: String,
    pub label: usize,
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
    if out.is_empty() {
        return Err(FinetuneError::Data(format!(
            "{} has no rows",
            path.display()
        )));
    }
    Ok(out)
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

    /// Read and validate `path`, or create it (written atomically) when absent.
    pub fn load_or_create(
        path: &Path,
        labels: &[usize],
        split_seed: u64,
        val_fraction: f64,
        test_fraction: f64,
    ) -> Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(io_err(path))?;
            let split: Split = serde_json::from_str(&text).map_err(|e| FinetuneError::Split {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            split.validate(path, labels.len(), split_seed, val_fraction, test_fraction)?;
            return Ok(split);
        }
        let split = Self::stratified(
            labels,
            LABELS.len(),
            split_seed,
            val_fraction,
            test_fraction,
        );
        fsio::write_atomic(path, serde_json::to_string(&split)?.as_bytes())
            .map_err(io_err(path))?;
        Ok(split)
    }
}

/// A stratified subset of `train` holding `fraction` of every class (at least one example per
/// class). For one seed the subsets are nested: a larger fraction extends a smaller one.
pub fn train_subset(train: &[usize], labels: &[usize], fraction: f64, seed: u64) -> Vec<usize> {
    let mut rng = init_rng(seed, SUBSET);
    let mut out = Vec::new();
    for c in 0..LABELS.len() {
        let mut idx: Vec<usize> = train.iter().copied().filter(|&i| labels[i] == c).collect();
        if idx.is_empty() {
            continue;
        }
        idx.shuffle(&mut rng);
        let n = ((idx.len() as f64 * fraction).round() as usize).clamp(1, idx.len());
        out.extend_from_slice(&idx[..n]);
    }
    out.sort_unstable();
    out
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
    cache_dir.join(format!("tweets-split-seed{split_seed}.json"))
}
