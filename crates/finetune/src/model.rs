//! The sentence classifier: frozen encoder + adapter + mean pooling + linear head, with peft-style
//! save / load / merge of the trainable part.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Module, Tensor};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adapters::{self, new_var, peft_root, uniform, zeros, Adapter, AdapterSpec, TARGETS};
use crate::config::{AdapterKind, GeneratorActivation};
use crate::encoder::{mean_pool, BertEncoder, ForwardCtx};
use crate::error::{io_err, FinetuneError, Result};
use crate::layers::{Linear, Role};
use crate::low_rank::LayerDeltas;
use crate::rng::{init_rng, HEAD_INIT};
use crate::tensor_path::TensorPath;

pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// `base_model.model.classifier`: the head, named as peft names a sequence classifier's.
pub fn head_path() -> TensorPath {
    peft_root().pp("classifier")
}

/// `adapter_config.json`: peft's LoRA fields, plus ours (`hora_method`, `hora_*`) so a file
/// always says which family produced it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AdapterConfigFile {
    pub peft_type: String,
    pub task_type: String,
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    pub bias: String,
    pub fan_in_fan_out: bool,
    pub modules_to_save: Vec<String>,
    pub base_model_name_or_path: Option<String>,
    pub hora_method: AdapterKind,
    pub hora_generator_activation: GeneratorActivation,
    pub hora_num_labels: usize,
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
            let init = match role {
                Role::Weight => uniform(&mut rng, dims, bound, device)?,
                Role::Bias | Role::Gain => zeros(dims, device)?,
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

    /// Class logits `(batch, num_labels)`; dropout applies only when `rng` is given.
    pub fn logits(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        dropout: f64,
        rng: Option<&mut ChaCha8Rng>,
    ) -> Result<Tensor> {
        let pooled = self.pooled(input_ids, attention_mask, rng.map(|rng| (dropout, rng)))?;
        Ok(self.head.forward(&pooled)?)
    }

    /// The forward pass to the pooled embeddings; adapter dropout at rate `p` when
    /// `dropout = Some((p, rng))`.
    fn pooled(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        dropout: Option<(f64, &mut ChaCha8Rng)>,
    ) -> Result<Tensor> {
        let deltas = if self.merged.is_some() {
            Vec::new()
        } else {
            self.adapter.deltas()?
        };
        let mut ctx = match dropout {
            Some((p, rng)) => ForwardCtx {
                deltas: &deltas,
                dropout: p,
                rng: Some(rng),
            },
            None => ForwardCtx::eval(&deltas),
        };
        let hidden = self
            .encoder()
            .forward(input_ids, attention_mask, &mut ctx)?;
        mean_pool(&hidden, attention_mask)
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

    fn config_file(&self, r: usize, alpha: f64, method: AdapterKind) -> AdapterConfigFile {
        AdapterConfigFile {
            peft_type: "LORA".into(),
            task_type: "SEQ_CLS".into(),
            r,
            lora_alpha: alpha,
            lora_dropout: 0.0,
            target_modules: TARGETS.iter().map(|s| s.to_string()).collect(),
            bias: "none".into(),
            fan_in_fan_out: false,
            modules_to_save: vec!["classifier".into()],
            base_model_name_or_path: None,
            hora_method: method,
            hora_generator_activation: self.spec.activation,
            hora_num_labels: self.num_labels,
        }
    }

    /// Write `adapter_model.safetensors` (every trainable tensor under its peft-style key) and
    /// `adapter_config.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let cfg = self.config_file(self.spec.rank, self.spec.alpha, self.spec.kind);
        let data = adapters::lock_vars(&self.varmap)?;
        let weights = data.iter().map(|(name, var)| (name, var.as_tensor()));
        write_adapter(dir, &cfg, weights)
    }

    /// Load a directory written by `save` (or, for `lora`, by peft) into this model. The method,
    /// rank and label count must match, and every tensor must be present with its shape.
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        let cfg_path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
        let cfg: AdapterConfigFile = serde_json::from_str(&text)?;
        let bad = |reason: String| FinetuneError::AdapterFile {
            path: dir.to_path_buf(),
            reason,
        };
        if cfg.hora_method != self.spec.kind || cfg.hora_num_labels != self.num_labels {
            return Err(bad(format!(
                "holds method {} with {} labels, model is {} with {}",
                cfg.hora_method, cfg.hora_num_labels, self.spec.kind, self.num_labels
            )));
        }
        if self.spec.kind != AdapterKind::Lora
            && (cfg.r != self.spec.rank || cfg.lora_alpha != self.spec.alpha)
        {
            return Err(bad(format!(
                "r = {}, alpha = {}; model has r = {}, alpha = {}",
                cfg.r, cfg.lora_alpha, self.spec.rank, self.spec.alpha
            )));
        }
        let weights_path = dir.join(ADAPTER_WEIGHTS);
        let device = self.head.weight.device().clone();
        let tensors = candle_core::safetensors::load(&weights_path, &device)
            .map_err(|e| bad(format!("{ADAPTER_WEIGHTS}: {e}")))?;
        let data = adapters::lock_vars(&self.varmap)?;
        // Check everything before writing anything, so a bad file leaves the model untouched.
        for (name, var) in data.iter() {
            let t = tensors
                .get(name)
                .ok_or_else(|| bad(format!("tensor {name} is missing")))?;
            if t.dims() != var.dims() {
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
        }
        if let Some(extra) = tensors.keys().find(|k| !data.contains_key(*k)) {
            return Err(bad(format!("unexpected tensor {extra}")));
        }
        for (name, var) in data.iter() {
            var.set(&tensors[name])?;
        }
        Ok(())
    }

    /// Export the current update as plain peft LoRA (`lora_A.weight`, `lora_B.weight` per target,
    /// plus the head): for HoRA and RepLoRA the generated A and B at rank r; for MH-LoRA the
    /// stacked A and block-diagonal B at rank H·r. Loading the result into a `lora` model of
    /// that rank reproduces the logits.
    pub fn export_plain_lora(&self, dir: &Path) -> Result<usize> {
        let deltas: Vec<LayerDeltas> = self.adapter.deltas()?;
        if deltas.is_empty() {
            return Err(FinetuneError::Data(format!(
                "method {} has no low-rank update to export",
                self.spec.kind
            )));
        }
        let mut out: HashMap<String, Tensor> = HashMap::new();
        let mut rank = 0;
        let mut scale = 0.0;
        for (l, d) in deltas.iter().enumerate() {
            for (target, lr) in TARGETS.iter().zip([&d.query, &d.value]) {
                let Some(lr) = lr else { continue };
                rank = lr.a.dim(0)?;
                scale = lr.scale;
                let [a_path, b_path] = adapters::lora_paths(l, target);
                out.insert(a_path.into(), lr.a.detach().contiguous()?);
                out.insert(b_path.into(), lr.b.detach().contiguous()?);
            }
        }
        for (path, t) in self.head.named_tensors() {
            out.insert(path.into(), t.detach());
        }
        let cfg = self.config_file(rank, scale * rank as f64, AdapterKind::Lora);
        write_adapter(dir, &cfg, &out)?;
        Ok(rank)
    }
}

/// `adapter_config.json`, then `adapter_model.safetensors`, each written atomically into `dir`.
fn write_adapter<S, V>(
    dir: &Path,
    cfg: &AdapterConfigFile,
    weights: impl IntoIterator<Item = (S, V)>,
) -> Result<()>
where
    S: AsRef<str> + Ord + std::fmt::Display,
    V: safetensors::View,
{
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        fsio::write_atomic(&path, bytes).map_err(io_err(path))
    };
    write(
        ADAPTER_CONFIG,
        serde_json::to_string_pretty(cfg)?.as_bytes(),
    )?;
    let bytes = safetensors::serialize(weights, None).map_err(candle_core::Error::from)?;
    write(ADAPTER_WEIGHTS, &bytes)
}
