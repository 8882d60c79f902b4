//! The training configuration: every default is written here, once, and `check` rejects a bad
//! value with the field name and the allowed range before any work starts.

use fsio::guard::{Checked, ParamGuard};
use serde::{Deserialize, Serialize};

use crate::data::Task;
use crate::error::{FinetuneError, Result};

/// Declares [`AdapterKind`] with its list [`AdapterKind::ALL`], its names and
/// [`METHODS_ALLOWED`] from one table, so a new adapter is one line here (plus its arm in
/// `adapters::build`, which the compiler asks for): nothing can list five of six.
macro_rules! adapter_kinds {
    (@one $variant:ident) => {
        1
    };
    ($(#[$doc:meta])* $first:ident => $first_name:literal,
     $($(#[$vdoc:meta])* $variant:ident => $name:literal,)*) => {
        /// Which parameters train.
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[serde(rename_all = "kebab-case")]
        pub enum AdapterKind {
            $(#[$doc])* $first,
            $($(#[$vdoc])* $variant,)*
        }

        impl AdapterKind {
            /// Every adapter, in the order of the tables.
            pub const ALL: [AdapterKind; 1 $(+ adapter_kinds!(@one $variant))*] =
                [Self::$first, $(Self::$variant,)*];

            /// The kebab-case name used in configs and files.
            pub fn name(self) -> &'static str {
                match self {
                    Self::$first => $first_name,
                    $(Self::$variant => $name,)*
                }
            }
        }

        /// The methods a config may name, for messages.
        pub const METHODS_ALLOWED: &str = concat!("one of ", $first_name, $(", ", $name,)*);
    };
}

adapter_kinds! {
    /// Linear probe: only the classification head trains (the floor).
    HeadOnly => "head-only",
    /// peft LoRA on query and value: `y = W x + (α/r)·B A x`.
    Lora => "lora",
    /// Independent rank-r A and B for every head of query and value.
    MhLora => "mh-lora",
    /// RepLoRA: per layer, shared A/B seeds and a small generator that specialises them to Q and V.
    Replora => "replora",
    /// HoRA: one generator per layer shared by all heads (shared A-bar, per-head B seeds).
    Hora => "hora",
    /// Every encoder weight trains (the ceiling).
    Full => "full",
}

impl AdapterKind {
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| FinetuneError::Config {
                field: "method",
                value: name.to_string(),
                allowed: METHODS_ALLOWED,
            })
    }
}

impl std::fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Elementwise activation of the RepLoRA / HoRA generators (THEORY.md §2's φ).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorActivation {
    Identity,
    Tanh,
}

/// How the classification head starts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HeadInit {
    /// Weight uniform ±1/√hidden, bias 0: every committed run.
    #[default]
    ZeroBias,
    /// PyTorch's `nn.Linear` (what a peft user's `torch.nn.Linear(hidden, labels)` starts from):
    /// weight and bias uniform ±1/√hidden. (transformers' `BertForSequenceClassification` instead
    /// draws its weight from N(0, 0.02²) with bias 0.)
    PytorchLinear,
}

/// One fine-tuning run's configuration, as written. [`ParamGuard::check`] turns it into a
/// [`ValidTrainConfig`], the only form training takes.
///
/// This struct is also the `train` part of a finetune job's key (`lab`'s `FinetuneJob`, hashed
/// into the job's id): a field added later must keep today's behaviour at its default and be
/// skipped while it holds it, `#[serde(default, skip_serializing_if = "fsio::key::is_default")]`,
/// or every committed finetune record would lose its id (DESIGN.md, "Job identity").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub method: AdapterKind,
    /// Rank r of every low-rank factor (per head for mh-lora and hora's B seeds).
    pub rank: usize,
    /// LoRA α; updates are scaled by α / r.
    pub alpha: f64,
    /// Dropout on the adapter input, training only (peft's `lora_dropout`).
    pub dropout: f64,
    /// Peak learning rate of the adapter and the head.
    pub lr: f64,
    /// Peak learning rate of the encoder weights when `method = "full"`.
    pub full_lr: f64,
    pub weight_decay: f64,
    /// Fraction of all steps spent in linear warm-up; the rest decays linearly to 0.
    pub warmup_fraction: f64,
    pub epochs: usize,
    /// Stop after this many steps in total (0: no cap).
    pub max_steps: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    /// Tokens per example after truncation (including [CLS] and [SEP]).
    pub max_len: usize,
    /// Stop after this many epochs without a better validation macro-F1 (0: never stop early).
    pub patience: usize,
    /// Fraction of the training split used (stratified, nested across fractions for one seed).
    pub train_fraction: f64,
    /// Seeds the training subset, the initialisation, the batch order and dropout.
    pub seed: u64,
    /// Seeds the train/validation/test split, shared by every method.
    pub split_seed: u64,
    pub val_fraction: f64,
    pub test_fraction: f64,
    /// Evaluate on at most this many validation and test examples (0: all).
    pub max_eval_examples: usize,
    pub generator_activation: GeneratorActivation,
    /// Dropout in training on the embeddings, on each attention and feed-forward output before
    /// its residual add, and on the pooled embedding before the head: BERT's
    /// `hidden_dropout_prob` (0.1 in transformers' train mode). 0, the default, is every
    /// committed run.
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub hidden_dropout: f64,
    /// Dropout in training on the attention probabilities: BERT's
    /// `attention_probs_dropout_prob` (0.1 in transformers). 0, the default, is every committed run.
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub attention_dropout: f64,
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub head_init: HeadInit,
    /// Draw every epoch's batch order from its own stream (`rng::BATCH_ORDER`), apart from the
    /// dropout masks (`rng::TRAINING`), so that every method of one seed and fraction sees the
    /// same batches in the same order in every epoch, whatever dropout it draws: a paired design.
    /// false, the default and every run before it existed: both come interleaved from
    /// `rng::TRAINING`, so after the first epoch the batch order of a method depends on how many
    /// dropout masks it drew (head-only and full draw none).
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub paired_order: bool,
    /// Evaluate on at most this many validation examples (0: as `max_eval_examples`). With
    /// `max_eval_examples = 0`, the epoch is chosen on a capped validation set and the final
    /// numbers come from the whole test split.
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub max_val_examples: usize,
    /// Clip the gradient of all trainable tensors together to this Euclidean norm before each
    /// update, as `torch.nn.utils.clip_grad_norm_` does (scale `c / (‖g‖ + 10⁻⁶)` when below 1;
    /// 1.0 in the usual PyTorch trainers). 0, the default and every committed run: no clipping.
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub grad_clip: f64,
    /// What is classified (issue 25): `tweets` (every committed run) or `newsgroups`.
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub task: Task,
    /// Train on this many examples of every class (0, every committed run: `train_fraction`
    /// of every class instead). Nested across budgets for one seed.
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub train_per_class: usize,
    /// Evaluate on validation every this many optimiser steps, and once more at the end (0,
    /// every committed run: at the end of every epoch). `patience` then counts evaluations.
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub eval_every: usize,
    /// Early stopping may not end a run before this many steps (0: no minimum).
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub min_steps: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            method: AdapterKind::Lora,
            rank: 8,
            alpha: 16.0,
            dropout: 0.1,
            lr: 1e-3,
            full_lr: 5e-5,
            weight_decay: 0.01,
            warmup_fraction: 0.1,
            epochs: 3,
            max_steps: 0,
            batch_size: 16,
            eval_batch_size: 64,
            max_len: 48,
            patience: 2,
            train_fraction: 1.0,
            seed: 0,
            split_seed: 0,
            val_fraction: 0.1,
            test_fraction: 0.1,
            max_eval_examples: 0,
            generator_activation: GeneratorActivation::Tanh,
            hidden_dropout: 0.0,
            attention_dropout: 0.0,
            head_init: HeadInit::ZeroBias,
            paired_order: false,
            max_val_examples: 0,
            grad_clip: 0.0,
            task: Task::Tweets,
            train_per_class: 0,
            eval_every: 0,
            min_steps: 0,
        }
    }
}

/// The ranks an adapter may have, in a configuration and in a loaded folder alike.
pub const RANK_RANGE: std::ops::RangeInclusive<usize> = 1..=256;
pub const RANK_ALLOWED: &str = "an integer in 1..=256";

fn bad(field: &'static str, value: impl std::fmt::Display, allowed: &'static str) -> FinetuneError {
    FinetuneError::Config {
        field,
        value: value.to_string(),
        allowed,
    }
}

/// A [`TrainConfig`] that passed its check ([`ParamGuard::check`], the workspace's one guard):
/// read-only (it dereferences to the configuration), serialised as the plain configuration, and
/// read back through the check.
pub type ValidTrainConfig = Checked<TrainConfig>;

impl ParamGuard for TrainConfig {
    type Error = FinetuneError;

    /// Every value against its allowed range; the error names the field and the range.
    fn validate(&self) -> Result<()> {
        let in_range = |x: f64, lo: f64, hi: f64| x.is_finite() && x >= lo && x <= hi;
        if !RANK_RANGE.contains(&self.rank) {
            return Err(bad("rank", self.rank, RANK_ALLOWED));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(bad("alpha", self.alpha, "a finite number > 0"));
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(bad("dropout", self.dropout, "a number in [0, 1)"));
        }
        for (field, p) in [
            ("hidden_dropout", self.hidden_dropout),
            ("attention_dropout", self.attention_dropout),
        ] {
            if !(p.is_finite() && (0.0..1.0).contains(&p)) {
                return Err(bad(field, p, "a number in [0, 1)"));
            }
        }
        if !(in_range(self.lr, 0.0, 1.0) && self.lr > 0.0) {
            return Err(bad("lr", self.lr, "a number in (0, 1]"));
        }
        if !(in_range(self.full_lr, 0.0, 1.0) && self.full_lr > 0.0) {
            return Err(bad("full_lr", self.full_lr, "a number in (0, 1]"));
        }
        if !in_range(self.weight_decay, 0.0, 1.0) {
            return Err(bad("weight_decay", self.weight_decay, "a number in [0, 1]"));
        }
        if !in_range(self.warmup_fraction, 0.0, 1.0) {
            return Err(bad(
                "warmup_fraction",
                self.warmup_fraction,
                "a number in [0, 1]",
            ));
        }
        if !in_range(self.grad_clip, 0.0, 1e6) {
            return Err(bad(
                "grad_clip",
                self.grad_clip,
                "a number in [0, 1e6] (0: no clipping)",
            ));
        }
        for (field, v) in [
            ("train_per_class", self.train_per_class),
            ("eval_every", self.eval_every),
            ("min_steps", self.min_steps),
        ] {
            if v > 1_000_000 {
                return Err(bad(field, v, "an integer in 0..=1000000 (0: off)"));
            }
        }
        if self.train_per_class > 0 && self.train_fraction != 1.0 {
            return Err(bad(
                "train_fraction",
                self.train_fraction,
                "1.0 (its default) when train_per_class sets the budget: give one of the two",
            ));
        }
        if self.min_steps > 0 && self.max_steps > 0 && self.min_steps > self.max_steps {
            return Err(bad(
                "min_steps",
                self.min_steps,
                "at most max_steps (early stopping may not wait past the last step)",
            ));
        }
        if !(1..=10_000).contains(&self.epochs) {
            return Err(bad("epochs", self.epochs, "an integer in 1..=10000"));
        }
        if !(1..=4096).contains(&self.batch_size) {
            return Err(bad("batch_size", self.batch_size, "an integer in 1..=4096"));
        }
        if !(1..=4096).contains(&self.eval_batch_size) {
            return Err(bad(
                "eval_batch_size",
                self.eval_batch_size,
                "an integer in 1..=4096",
            ));
        }
        if !(4..=512).contains(&self.max_len) {
            return Err(bad(
                "max_len",
                self.max_len,
                "an integer in 4..=512 (the model has 512 positions)",
            ));
        }
        if !(in_range(self.train_fraction, 0.0, 1.0) && self.train_fraction > 0.0) {
            return Err(bad(
                "train_fraction",
                self.train_fraction,
                "a number in (0, 1]",
            ));
        }
        if !(in_range(self.val_fraction, 0.0, 0.5) && self.val_fraction > 0.0) {
            return Err(bad(
                "val_fraction",
                self.val_fraction,
                "a number in (0, 0.5]",
            ));
        }
        if !(in_range(self.test_fraction, 0.0, 0.5) && self.test_fraction > 0.0) {
            return Err(bad(
                "test_fraction",
                self.test_fraction,
                "a number in (0, 0.5]",
            ));
        }
        if self.val_fraction + self.test_fraction >= 0.9 {
            return Err(bad(
                "val_fraction + test_fraction",
                self.val_fraction + self.test_fraction,
                "a sum below 0.9",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name a config writes is the name serde stores in a job key, and every listed name
    /// reads back as its kind: a table row of `adapter_kinds!` with a name other than the
    /// variant's kebab-case would fail here (the job keys store serde's).
    #[test]
    fn every_adapter_name_is_its_stored_name_and_reads_back() {
        for kind in AdapterKind::ALL {
            let stored = serde_json::to_value(kind).unwrap();
            assert_eq!(stored, serde_json::Value::from(kind.name()));
            assert_eq!(AdapterKind::from_name(kind.name()).unwrap(), kind);
            assert!(METHODS_ALLOWED.contains(kind.name()));
        }
        let e = AdapterKind::from_name("hira").unwrap_err().to_string();
        assert!(e.contains("hira") && e.contains(METHODS_ALLOWED), "{e}");
    }
}
