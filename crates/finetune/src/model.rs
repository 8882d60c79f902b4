//! The sentence classifier: frozen encoder + adapter + mean pooling + linear head, with peft-style
//! save / load / merge of the trainable part (the folder's files: `adapter_dir.rs`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Module, Tensor};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;

use crate::adapter_dir::{
    folder_error, AdapterContext, AdapterFolder, AdapterMetadata, PeftLoraConfig, Pooling,
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_WEIGHTS, METADATA,
};
use crate::adapters::{self, new_var, peft_root, uniform, zeros, Adapter, AdapterSpec, TARGETS};
use crate::config::{AdapterKind, GeneratorActivation, HeadInit};
use crate::encoder::{mean_pool, BertEncoder, ForwardCtx};
use crate::error::{io_err, FinetuneError, Result};
use crate::layers::{Linear, Role};
use crate::low_rank::LayerDeltas;
use crate::rng::{init_rng, HEAD_INIT};
use crate::tensor_path::TensorPath;

/// `base_model.model.classifier`: the head, named as peft names a sequence classifier's.
pub fn head_path() -> TensorPath {
    peft_root().pp("classifier")
}

/// The dropout rates of a training forward pass (all 0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dropouts {
    /// On each adapter's input (peft's `lora_dropout`).
    pub adapter: f64,
    /// BERT's `hidden_dropout_prob`, also on the pooled embedding before the head.
    pub hidden: f64,
    /// BERT's `attention_probs_dropout_prob`.
    pub attention: f64,
}

impl Dropouts {
    pub fn of(cfg: &crate::config::TrainConfig) -> Self {
        Self {
            adapter: cfg.dropout,
            hidden: cfg.hidden_dropout,
            attention: cfg.attention_dropout,
        }
    }
}

pub struct Classifier {
    /// The pretrained encoder; never modified.
    pub base: BertEncoder,
    adapter: Box<dyn Adapter>,
    head: Linear,
    varmap: VarMap,
    spec: AdapterSpec,
    num_labels: usize,
    /// Encoder with the adapter folded in, while merged.
    merged: Option<BertEncoder>,
}

impl Classifier {
    /// Attach a fresh adapter and head (init drawn from `spec.seed`).
    pub fn new(
        base: BertEncoder,
        spec: &AdapterSpec,
        num_labels: usize,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let adapter = adapters::build(spec, &base, &varmap, device)?;
        let hidden = base.config.hidden_size;
        let mut rng = init_rng(spec.seed, HEAD_INIT);
        let bound = 1.0 / (hidden as f64).sqrt();
        let head = Linear::build(head_path(), num_labels, hidden, &mut |path, dims, role| {
            let init = match (role, spec.head_init) {
                (Role::Weight, _) | (Role::Bias, HeadInit::PytorchLinear) => {
                    uniform(&mut rng, dims, bound, device)?
                }
                (Role::Bias, HeadInit::ZeroBias) | (Role::Gain, _) => zeros(dims, device)?,
            };
            new_var(&varmap, path, init)
        })?;
        Ok(Self {
            base,
            adapter,
            head,
            varmap,
            spec: spec.clone(),
            num_labels,
            merged: None,
        })
    }

    pub fn spec(&self) -> &AdapterSpec {
        &self.spec
    }

    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// The trainable tensors, by saved name (what AdamW sees).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Scalars that train: adapter plus head.
    pub fn trainable_params(&self) -> usize {
        self.varmap.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Scalars of the head alone.
    pub fn head_params(&self) -> usize {
        self.num_labels * (self.base.config.hidden_size + 1)
    }

    /// Scalars of the frozen encoder.
    pub fn base_params(&self) -> usize {
        self.base
            .named_tensors()
            .iter()
            .map(|(_, t)| t.elem_count())
            .sum()
    }

    pub fn adapter(&self) -> &dyn Adapter {
        self.adapter.as_ref()
    }

    fn encoder(&self) -> &BertEncoder {
        self.merged
            .as_ref()
            .or(self.adapter.trainable_encoder())
            .unwrap_or(&self.base)
    }

    /// Mean-pooled sentence embeddings, at inference (no dropout).
    ///
    /// # Shapes
    /// `(batch, seq)` ids and mask; returns `(batch, hidden)`.
    pub fn embed(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.pooled(input_ids, attention_mask, None)
    }

    /// Class logits `(batch, num_labels)`; adapter dropout at rate `dropout` applies only when
    /// `rng` is given. Without `rng` this is evaluation: the result is detached (no gradient
    /// reaches any trainable tensor through it) and the pass keeps no backward graph of the
    /// adapter's updates; train through [`Classifier::training_logits`] or with an `rng`.
    pub fn logits(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        dropout: f64,
        rng: Option<&mut ChaCha8Rng>,
    ) -> Result<Tensor> {
        let rates = Dropouts {
            adapter: dropout,
            ..Dropouts::default()
        };
        let training = rng.is_some();
        let pooled = self.pooled(input_ids, attention_mask, rng.map(|rng| (rates, rng)))?;
        let logits = self.head.forward(&pooled)?;
        Ok(if training { logits } else { logits.detach() })
    }

    /// Class logits `(batch, num_labels)` in training: every dropout of `rates`, drawn from `rng`.
    pub fn training_logits(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        rates: Dropouts,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor> {
        let pooled = self.pooled(input_ids, attention_mask, Some((rates, rng)))?;
        Ok(self.head.forward(&pooled)?)
    }

    /// The forward pass to the pooled embeddings, with the dropout of `dropout` when given
    /// (hidden dropout also on the pooled embedding, as transformers' classifier dropout).
    fn pooled(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        dropout: Option<(Dropouts, &mut ChaCha8Rng)>,
    ) -> Result<Tensor> {
        let deltas = if self.merged.is_some() {
            Vec::new()
        } else if dropout.is_none() {
            // Evaluation: no backward graph (`LayerDeltas::detach`).
            self.adapter
                .deltas()?
                .iter()
                .map(LayerDeltas::detach)
                .collect()
        } else {
            self.adapter.deltas()?
        };
        let mut ctx = match dropout {
            Some((rates, rng)) => ForwardCtx {
                deltas: &deltas,
                dropout: rates.adapter,
                hidden_dropout: rates.hidden,
                attention_dropout: rates.attention,
                rng: Some(rng),
            },
            None => ForwardCtx::eval(&deltas),
        };
        // Evaluation through full fine-tuning's own weights: detached too (no graph).
        let detached = match self.adapter.trainable_encoder() {
            Some(e) if ctx.rng.is_none() && self.merged.is_none() => Some(e.detached()?),
            _ => None,
        };
        let hidden = detached
            .as_ref()
            .unwrap_or_else(|| self.encoder())
            .forward(input_ids, attention_mask, &mut ctx)?;
        let pooled = mean_pool(&hidden, attention_mask)?;
        ctx.drop(&pooled, ctx.hidden_dropout)
    }

    pub fn is_merged(&self) -> bool {
        self.merged.is_some()
    }

    /// Fold `ΔW` into the query and value weights for inference. Merging twice is an error.
    pub fn merge(&mut self) -> Result<()> {
        if self.merged.is_some() {
            return Err(FinetuneError::Data("adapter is already merged".into()));
        }
        let deltas = self.adapter.deltas()?;
        let encoder = self.adapter.trainable_encoder().unwrap_or(&self.base);
        self.merged = Some(encoder.merged(&deltas)?);
        Ok(())
    }

    /// Undo `merge`: the unmerged weights were never modified, so this is exact.
    pub fn unmerge(&mut self) -> Result<()> {
        if self.merged.take().is_none() {
            return Err(FinetuneError::Data("adapter is not merged".into()));
        }
        Ok(())
    }

    /// Current values of every trainable tensor (detached copies), for early-stopping snapshots.
    pub fn snapshot(&self) -> Result<HashMap<String, Tensor>> {
        let data = adapters::lock_vars(&self.varmap)?;
        data.iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?.detach())))
            .collect()
    }

    pub fn restore(&self, snapshot: &HashMap<String, Tensor>) -> Result<()> {
        let data = adapters::lock_vars(&self.varmap)?;
        for (k, v) in data.iter() {
            let t = snapshot
                .get(k)
                .ok_or_else(|| FinetuneError::Data(format!("snapshot lacks {k}")))?;
            v.set(t)?;
        }
        Ok(())
    }

    /// Write the folder `adapter_dir` describes: every adapter tensor under its peft-style key in
    /// `adapter_model.safetensors`, the head in `classifier.safetensors`, the metadata and, for
    /// LoRA only, peft's `adapter_config.json` (a native HoRA / RepLoRA / MH-LoRA folder has none,
    /// so peft refuses it instead of building an empty LoRA). Resuming training reads it back
    /// with [`Classifier::load`].
    pub fn save(&self, dir: &Path, ctx: &AdapterContext) -> Result<()> {
        let head = head_path();
        let data = adapters::lock_vars(&self.varmap)?;
        let adapter: Vec<(&String, &Tensor)> = data
            .iter()
            .filter(|(name, _)| !head.holds(name))
            .map(|(name, var)| (name, var.as_tensor()))
            .collect();
        let metadata = self.metadata(self.spec.kind, None, self.spec.rank, self.spec.alpha, ctx);
        write_folder(dir, adapter, &self.head, &metadata)
    }

    /// Load a folder written by [`Classifier::save`] or [`Classifier::export_plain_lora`], or a
    /// LoRA saved by peft, into this model. The method, rank, alpha and label count must match,
    /// and every tensor must be present with its shape; nothing is written unless all are.
    ///
    /// From peft: a LoRA on `query` and `value` of every layer, saved from `BertModel` /
    /// `AutoModel` (keys `base_model.model.encoder.…`) or from `BertForSequenceClassification`
    /// (`base_model.model.bert.encoder.…`, its head as `base_model.model.classifier.*` when
    /// `classifier` is in `modules_to_save`); `task_type` and `modules_to_save` may be null. The
    /// head must come from somewhere: peft's copy, or `classifier.safetensors` beside the adapter.
    /// It is applied to the mean-pooled embedding (a `BertForSequenceClassification` head was
    /// trained on the [CLS] pooler instead, which this model does not compute).
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        let device = self.head.weight.device().clone();
        let folder = AdapterFolder::read(dir, head_path().as_str(), &device)?;
        self.load_folder(dir, folder)
    }

    /// A classifier on `base` with the adapter and head of the folder `dir`, built from what the
    /// folder says (method, rank, alpha, labels); also returns the folder's metadata, if any.
    pub fn from_dir(
        base: BertEncoder,
        dir: &Path,
        device: &Device,
    ) -> Result<(Self, Option<AdapterMetadata>)> {
        let folder = AdapterFolder::read(dir, head_path().as_str(), device)?;
        let (kind, rank, alpha) = folder.method_rank_alpha(dir)?;
        let head_weight = head_path().pp("weight");
        let num_labels = match (&folder.metadata, folder.tensors.get(head_weight.as_str())) {
            (Some(m), _) => m.labels.len(),
            (None, Some(w)) => w.dim(0)?,
            (None, None) => return Err(folder_error(dir, missing_head())),
        };
        let spec = AdapterSpec {
            kind,
            rank,
            alpha,
            activation: folder
                .metadata
                .as_ref()
                .map_or(GeneratorActivation::Tanh, |m| m.generator_activation),
            seed: 0,
            head_init: HeadInit::default(),
        };
        let metadata = folder.metadata.clone();
        let mut model = Self::new(base, &spec, num_labels, device)?;
        model.load_folder(dir, folder)?;
        Ok((model, metadata))
    }

    fn load_folder(&mut self, dir: &Path, folder: AdapterFolder) -> Result<()> {
        let (kind, rank, alpha) = folder.method_rank_alpha(dir)?;
        let low_rank = !matches!(kind, AdapterKind::HeadOnly | AdapterKind::Full);
        if kind != self.spec.kind
            || (low_rank && (rank != self.spec.rank || alpha != self.spec.alpha))
        {
            return Err(folder_error(
                dir,
                format!(
                    "holds {kind} with r = {rank}, alpha = {alpha}; the model is {} with r = {}, alpha = {}",
                    self.spec.kind, self.spec.rank, self.spec.alpha
                ),
            ));
        }
        if let Some(m) = &folder.metadata {
            if m.labels.len() != self.num_labels {
                return Err(folder_error(
                    dir,
                    format!(
                        "has {} labels {:?}; the model has {}",
                        m.labels.len(),
                        m.labels,
                        self.num_labels
                    ),
                ));
            }
        }
        let tensors = folder.tensors;
        let head = head_path();
        let data = adapters::lock_vars(&self.varmap)?;
        // Check everything before writing anything, so a bad folder leaves the model untouched.
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let t = tensors.get(name).ok_or_else(|| {
                folder_error(
                    dir,
                    if head.holds(name) {
                        missing_head()
                    } else {
                        format!("tensor {name} is missing from {ADAPTER_WEIGHTS}")
                    },
                )
            })?;
            if t.dims() != var.dims() {
                return Err(folder_error(
                    dir,
                    format!(
                        "tensor {name} has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
        }
        let mut extra: Vec<&String> = tensors.keys().filter(|k| !data.contains_key(*k)).collect();
        extra.sort();
        if let Some(first) = extra.first() {
            return Err(folder_error(
                dir,
                format!(
                    "{} unexpected tensor(s), first {first}: this model adapts only {TARGETS:?} of every layer",
                    extra.len()
                ),
            ));
        }
        for (name, var) in data.iter() {
            var.set(&tensors[name].to_dtype(candle_core::DType::F32)?)?;
        }
        Ok(())
    }

    fn metadata(
        &self,
        method: AdapterKind,
        exported_from: Option<AdapterKind>,
        rank: usize,
        alpha: f64,
        ctx: &AdapterContext,
    ) -> AdapterMetadata {
        AdapterMetadata {
            method,
            exported_from,
            rank,
            alpha,
            dropout: ctx.dropout,
            generator_activation: self.spec.activation,
            labels: ctx.labels.clone(),
            pooling: Pooling::Mean,
            max_len: ctx.max_len,
            base_model: ctx.base_model.clone(),
            base_model_path: ctx.base_model_path.clone(),
        }
    }

    /// Export the current update as a peft LoRA folder (`lora_A.weight`, `lora_B.weight` per
    /// target, the head in `classifier.safetensors`): for HoRA and RepLoRA the generated A and B
    /// at rank r; for MH-LoRA the stacked A and block-diagonal B at rank H·r. Loading the result
    /// into a `lora` model of that rank, or into peft, reproduces the logits. Returns the rank.
    pub fn export_plain_lora(&self, dir: &Path, ctx: &AdapterContext) -> Result<usize> {
        let deltas: Vec<LayerDeltas> = self.adapter.deltas()?;
        if deltas.is_empty() {
            return Err(FinetuneError::Data(format!(
                "method {} has no low-rank update to export as LoRA",
                self.spec.kind
            )));
        }
        let mut out: Vec<(String, Tensor)> = Vec::new();
        let mut rank = 0;
        let mut scale = 0.0;
        for (l, d) in deltas.iter().enumerate() {
            for (target, lr) in TARGETS.iter().zip([&d.query, &d.value]) {
                let Some(lr) = lr else { continue };
                rank = lr.a.dim(0)?;
                scale = lr.scale;
                let [a_path, b_path] = adapters::lora_paths(l, target);
                out.push((a_path.into(), lr.a.detach().contiguous()?));
                out.push((b_path.into(), lr.b.detach().contiguous()?));
            }
        }
        let exported_from = (self.spec.kind != AdapterKind::Lora).then_some(self.spec.kind);
        let metadata = self.metadata(
            AdapterKind::Lora,
            exported_from,
            rank,
            scale * rank as f64,
            ctx,
        );
        write_folder(dir, out.iter().map(|(k, t)| (k, t)), &self.head, &metadata)?;
        Ok(rank)
    }

    /// The encoder with the adapter folded in (`W + s·B A` in every adapted projection), as a
    /// `BertModel` checkpoint's tensors by name.
    pub fn merged_weights(&self) -> Result<Vec<(String, Tensor)>> {
        let deltas = self.adapter.deltas()?;
        let encoder = self.adapter.trainable_encoder().unwrap_or(&self.base);
        Ok(encoder.merged(&deltas)?.named_tensors())
    }

    /// The head's weight `(labels, hidden)` and bias `(labels)`.
    pub fn head(&self) -> &Linear {
        &self.head
    }
}

fn missing_head() -> String {
    format!(
        "the classifier head is missing: found neither {HEAD_WEIGHTS} (`weight` (labels, hidden), \
         `bias` (labels)) nor base_model.model.classifier.{{weight,bias}} in {ADAPTER_WEIGHTS} \
         (peft saves a head only when `classifier` is in modules_to_save; an adapter saved from \
         BertModel / AutoModel has none: save your head beside it as {HEAD_WEIGHTS})"
    )
}

/// Write an adapter folder: the adapter tensors, the head, peft's config for LoRA (removed for
/// any other family, so a folder reused for a native save is never mistaken for LoRA), and the
/// metadata last, each file atomically.
fn write_folder<S, V>(
    dir: &Path,
    adapter: impl IntoIterator<Item = (S, V)>,
    head: &Linear,
    metadata: &AdapterMetadata,
) -> Result<()>
where
    S: AsRef<str> + Ord + std::fmt::Display,
    V: safetensors::View,
{
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        fsio::write_atomic(&path, bytes).map_err(io_err(path))
    };
    let serialize = |bytes: std::result::Result<Vec<u8>, safetensors::SafeTensorError>| {
        bytes.map_err(|e| FinetuneError::Candle(candle_core::Error::from(e)))
    };
    write(
        ADAPTER_WEIGHTS,
        &serialize(safetensors::serialize(adapter, None))?,
    )?;
    let bias = head
        .bias
        .as_ref()
        .ok_or_else(|| FinetuneError::Data("the head has no bias".into()))?;
    let head_tensors = [("weight", head.weight.detach()), ("bias", bias.detach())];
    write(
        HEAD_WEIGHTS,
        &serialize(safetensors::serialize(
            head_tensors.iter().map(|(k, t)| (*k, t)),
            None,
        ))?,
    )?;
    let config = dir.join(ADAPTER_CONFIG);
    if metadata.method == AdapterKind::Lora {
        let targets: Vec<&str> = TARGETS.to_vec();
        let peft = PeftLoraConfig::new(
            &metadata.base_model,
            metadata.rank,
            metadata.alpha,
            metadata.dropout,
            &targets,
        );
        write(
            ADAPTER_CONFIG,
            serde_json::to_string_pretty(&peft)?.as_bytes(),
        )?;
    } else if config.exists() {
        std::fs::remove_file(&config).map_err(io_err(&config))?;
    }
    write(METADATA, serde_json::to_string_pretty(metadata)?.as_bytes())
}
