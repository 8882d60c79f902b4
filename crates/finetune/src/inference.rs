//! A saved adapter folder put to use: the classifier it describes on its base model, with the
//! tokenisation it was trained with, turning texts into logits.

use std::path::Path;

use candle_core::Device;

use crate::adapter_dir::AdapterMetadata;
use crate::data::{Encoded, TextEncoder, LABELS};
use crate::encoder::BertEncoder;
use crate::error::Result;
use crate::model::Classifier;

/// Texts per forward pass.
const BATCH: usize = 64;

/// Tokens per text when the folder does not say (a peft folder without this project's
/// metadata): the model's full length, so nothing is truncated that training may have seen.
const UNKNOWN_MAX_LEN: usize = 512;

pub struct SavedClassifier {
    pub model: Classifier,
    /// Class names in logit order.
    pub labels: Vec<String>,
    pub metadata: Option<AdapterMetadata>,
    text: TextEncoder,
}

impl SavedClassifier {
    /// The classifier of the folder `dir` on the checkpoint in `model_dir` (`config.json`,
    /// `model.safetensors`, `tokenizer.json`).
    pub fn load(dir: &Path, model_dir: &Path, device: &Device) -> Result<Self> {
        let base = BertEncoder::load(model_dir, device)?;
        let (model, metadata) = Classifier::from_dir(base, dir, device)?;
        let labels = match &metadata {
            Some(m) => m.labels.clone(),
            None if model.num_labels() == LABELS.len() => {
                LABELS.iter().map(|l| l.to_string()).collect()
            }
            None => (0..model.num_labels())
                .map(|i| format!("label{i}"))
                .collect(),
        };
        let max_len = metadata
            .as_ref()
            .map_or(UNKNOWN_MAX_LEN, |m| m.max_len)
            .min(base_positions(&model));
        let text = TextEncoder::from_file(&model_dir.join("tokenizer.json"), max_len)?;
        Ok(Self {
            model,
            labels,
            metadata,
            text,
        })
    }

    /// Logits `(texts, labels)` of every text, in input order (no dropout).
    pub fn logits(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encoded = Encoded {
            ids: self.text.encode(texts)?,
            labels: vec![0; texts.len()],
        };
        let device = self.model.head().weight.device().clone();
        let mut out = vec![Vec::new(); texts.len()];
        for rows in encoded.eval_batches(BATCH) {
            let (ids, mask, _) = encoded.batch(&rows, &device)?;
            let logits: Vec<Vec<f32>> = self.model.logits(&ids, &mask, 0.0, None)?.to_vec2()?;
            for (r, l) in rows.iter().zip(logits) {
                out[*r] = l;
            }
        }
        Ok(out)
    }
}

fn base_positions(model: &Classifier) -> usize {
    model.base.config.max_position_embeddings
}
