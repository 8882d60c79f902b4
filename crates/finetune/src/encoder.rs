//! A BERT-family encoder on candle, built layer by layer from tensors named as in the Hugging
//! Face checkpoint (each name made once, from its path; see `layers`), plus the hooks through
//! which adapters add low-rank updates to the query and value projections.
//!
//! Softmax, layer norm and GELU go through `fused` (CPU kernels with their own backward;
//! candle-nn's fused `softmax_last_dim` and layer norm have no backward pass (TOOLCHAIN.md), so
//! gradients would silently stop at them).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use fsio::guard::{Checked, ParamGuard};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, FinetuneError, Result};
use crate::layers::{Embedding, LayerNorm, Linear, Role, TensorSource};
use crate::low_rank::{LayerDeltas, LowRank};
use crate::rng::{init_rng, RANDOM_ENCODER};
use crate::tensor_path::TensorPath;

/// The fields of a Hugging Face `config.json` that the encoder uses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

impl BertConfig {
    /// A checkpoint's `config.json`, checked.
    pub fn from_file(path: &Path) -> Result<Checked<Self>> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let cfg: Self = serde_json::from_str(&text)?;
        cfg.check()
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

impl ParamGuard for BertConfig {
    type Error = FinetuneError;

    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of is newer than the workspace MSRV
    fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0
            || self.num_hidden_layers == 0
            || self.hidden_size % self.num_attention_heads != 0
        {
            return Err(FinetuneError::Checkpoint(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_new" | "relu") {
            return Err(FinetuneError::Checkpoint(format!(
                "hidden_act {} is not one of gelu, gelu_new, relu",
                self.hidden_act
            )));
        }
        Ok(())
    }
}

impl BertConfig {
    /// Number of scalars in the encoder (embeddings, layers; no pooler, no head).
    pub fn param_count(&self) -> usize {
        let (h, i, l) = (
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
        );
        let emb =
            (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h;
        let layer = 4 * (h * h + h) + 2 * (h * i) + i + h + 4 * h;
        emb + l * layer
    }
}

/// State of one forward pass: the dropout rates in force, and their seeded RNG (none: eval).
pub struct ForwardCtx<'a> {
    pub deltas: &'a [LayerDeltas],
    /// On an adapter's input (peft's `lora_dropout`).
    pub dropout: f64,
    /// On the embeddings and on each sublayer's output before its residual add (BERT's
    /// `hidden_dropout_prob`).
    pub hidden_dropout: f64,
    /// On the attention probabilities (BERT's `attention_probs_dropout_prob`).
    pub attention_dropout: f64,
    pub rng: Option<&'a mut ChaCha8Rng>,
}

impl<'a> ForwardCtx<'a> {
    /// Inference: no dropout.
    pub fn eval(deltas: &'a [LayerDeltas]) -> Self {
        Self {
            deltas,
            dropout: 0.0,
            hidden_dropout: 0.0,
            attention_dropout: 0.0,
            rng: None,
        }
    }

    /// Inverted dropout at rate `p`; a rate of 0 draws nothing from the RNG, so a run without
    /// hidden or attention dropout consumes it exactly as before those existed.
    pub fn drop(&mut self, xs: &Tensor, p: f64) -> Result<Tensor> {
        let rng = match (&mut self.rng, p > 0.0) {
            (Some(rng), true) => rng,
            _ => return Ok(xs.clone()),
        };
        let keep = 1.0 / (1.0 - p) as f32;
        let mask: Vec<f32> = (0..xs.elem_count())
            .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
            .collect();
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?;
        Ok((xs * mask)?)
    }

    fn project(&mut self, linear: &Linear, delta: Option<&LowRank>, xs: &Tensor) -> Result<Tensor> {
        let y = linear.forward(xs)?;
        match delta {
            None => Ok(y),
            Some(lr) => {
                let x = self.drop(xs, self.dropout)?;
                let dims = x.dims().to_vec();
                let rows: usize = dims[..dims.len() - 1].iter().product();
                let up = x
                    .reshape((rows, dims[dims.len() - 1]))?
                    .matmul(&lr.a.t()?)?
                    .matmul(&lr.b.t()?)?
                    .reshape(y.shape())?;
                Ok((y + (up * lr.scale)?)?)
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct BertLayer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub attn_out: Linear,
    pub attn_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub out_norm: LayerNorm,
}

/// `encoder.layer.{l}`: where layer `l`'s tensors lie in the checkpoint.
pub fn layer_path(l: usize) -> TensorPath {
    TensorPath::root().pp("encoder").pp("layer").pp(l)
}

fn attention_path(l: usize) -> TensorPath {
    layer_path(l).pp("attention")
}

/// `encoder.layer.{l}.attention.self`: the query, key and value projections of layer `l`, and
/// (under peft's prefix) the adapters of that layer.
pub fn self_attention_path(l: usize) -> TensorPath {
    attention_path(l).pp("self")
}

impl BertLayer {
    /// Layer `l` as the Hugging Face `BertModel` checkpoint names it. The linears are taken
    /// before the norms: `BertEncoder::random` draws in this order.
    fn build(l: usize, config: &BertConfig, source: &mut TensorSource<'_>) -> Result<Self> {
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let attention = self_attention_path(l);
        let attention_output = attention_path(l).pp("output");
        let layer_output = layer_path(l).pp("output");
        let query = Linear::build(attention.pp("query"), h, h, source)?;
        let key = Linear::build(attention.pp("key"), h, h, source)?;
        let value = Linear::build(attention.pp("value"), h, h, source)?;
        let attn_out = Linear::build(attention_output.pp("dense"), h, h, source)?;
        let intermediate =
            Linear::build(layer_path(l).pp("intermediate").pp("dense"), i, h, source)?;
        let output = Linear::build(layer_output.pp("dense"), h, i, source)?;
        let attn_norm = LayerNorm::build(attention_output.pp("LayerNorm"), h, eps, source)?;
        let out_norm = LayerNorm::build(layer_output.pp("LayerNorm"), h, eps, source)?;
        Ok(Self {
            query,
            key,
            value,
            attn_out,
            attn_norm,
            intermediate,
            output,
            out_norm,
        })
    }

    fn named_tensors(&self) -> Vec<(TensorPath, Tensor)> {
        let mut out = Vec::new();
        for lin in [&self.query, &self.key, &self.value, &self.attn_out] {
            out.extend(lin.named_tensors());
        }
        out.extend(self.attn_norm.named_tensors());
        out.extend(self.intermediate.named_tensors());
        out.extend(self.output.named_tensors());
        out.extend(self.out_norm.named_tensors());
        out
    }
}

/// The encoder. Tensor names follow the Hugging Face `BertModel` checkpoint.
#[derive(Clone, Debug)]
pub struct BertEncoder {
    pub config: Checked<BertConfig>,
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub embed_norm: LayerNorm,
    pub layers: Vec<BertLayer>,
}

impl BertEncoder {
    /// Build from `source`, which is asked for every tensor by its checkpoint name: the
    /// embeddings first, then the layers in order. Every tensor is checked against the shape the
    /// config implies.
    pub fn build(config: &Checked<BertConfig>, source: &mut TensorSource<'_>) -> Result<Self> {
        let h = config.hidden_size;
        let embeddings = TensorPath::root().pp("embeddings");
        let word_embeddings = Embedding::build(
            embeddings.pp("word_embeddings"),
            config.vocab_size,
            h,
            source,
        )?;
        let position_embeddings = Embedding::build(
            embeddings.pp("position_embeddings"),
            config.max_position_embeddings,
            h,
            source,
        )?;
        let token_type_embeddings = Embedding::build(
            embeddings.pp("token_type_embeddings"),
            config.type_vocab_size,
            h,
            source,
        )?;
        let embed_norm =
            LayerNorm::build(embeddings.pp("LayerNorm"), h, config.layer_norm_eps, source)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            layers.push(BertLayer::build(l, config, source)?);
        }
        Ok(Self {
            config: config.clone(),
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embed_norm,
            layers,
        })
    }

    /// Build from a name → tensor lookup (a checkpoint map, or a map of `Var`s for full
    /// fine-tuning).
    pub fn from_lookup(
        config: &Checked<BertConfig>,
        get: &dyn Fn(&str) -> Option<Tensor>,
    ) -> Result<Self> {
        Self::build(config, &mut |path, _, _| {
            get(path.as_str())
                .ok_or_else(|| FinetuneError::Checkpoint(format!("tensor {path} is missing")))
        })
    }

    /// Load `config.json` + `model.safetensors` from a directory. A leading `bert.` on the
    /// tensor names (as in `BertForSequenceClassification` checkpoints) is stripped.
    pub fn load(model_dir: &Path, device: &Device) -> Result<Self> {
        let config = BertConfig::from_file(&model_dir.join("config.json"))?;
        let weights = load_checkpoint(&model_dir.join("model.safetensors"), device)?;
        Self::from_lookup(&config, &|name| weights.get(name).cloned())
    }

    /// A randomly initialised encoder (entries uniform in ±0.2, layer-norm gains near 1), for
    /// tests and benchmarks that need no download.
    pub fn random(config: &Checked<BertConfig>, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = init_rng(seed, RANDOM_ENCODER);
        Self::build(config, &mut |_, dims, role| {
            let centre = if role == Role::Gain { 1.0 } else { 0.0 };
            let n: usize = dims.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|_| centre + rng.random_range(-0.2f32..0.2))
                .collect();
            Ok(Tensor::from_vec(data, dims, device)?)
        })
    }

    /// Every weight by checkpoint name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for emb in [
            &self.word_embeddings,
            &self.position_embeddings,
            &self.token_type_embeddings,
        ] {
            out.extend(emb.named_tensors());
        }
        out.extend(self.embed_norm.named_tensors());
        for layer in &self.layers {
            out.extend(layer.named_tensors());
        }
        out.into_iter().map(|(path, t)| (path.into(), t)).collect()
    }

    /// A copy with `W ← W + ΔW` in every adapted projection (the base is left untouched).
    /// The same encoder cut from the trainable variables its weights may be (full fine-tuning):
    /// the same storage, so the same values and bits, but a forward pass through it builds no
    /// backward graph (evaluation).
    pub fn detached(&self) -> Result<Self> {
        let weights: HashMap<String, Tensor> = self.named_tensors().into_iter().collect();
        Self::build(&self.config, &mut |path, _, _| {
            weights
                .get(path.as_str())
                .map(Tensor::detach)
                .ok_or_else(|| {
                    FinetuneError::Checkpoint(format!("tensor {path} is missing from the encoder"))
                })
        })
    }

    pub fn merged(&self, deltas: &[LayerDeltas]) -> Result<Self> {
        let mut out = self.clone();
        for (layer, d) in out.layers.iter_mut().zip(deltas) {
            if let Some(q) = &d.query {
                layer.query.weight = (layer.query.weight.detach() + q.dense()?.detach())?;
            }
            if let Some(v) = &d.value {
                layer.value.weight = (layer.value.weight.detach() + v.dense()?.detach())?;
            }
        }
        Ok(out)
    }

    /// Last hidden states.
    ///
    /// # Shapes
    /// `input_ids`, `attention_mask`: `(batch, seq)` u32; returns `(batch, seq, hidden)`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let dh = self.config.head_dim();
        let flat = input_ids.flatten_all()?;
        let words = self
            .word_embeddings
            .weight
            .index_select(&flat, 0)?
            .reshape((b, t, h))?;
        let positions = self.position_embeddings.weight.narrow(0, 0, t)?;
        let types = self.token_type_embeddings.weight.narrow(0, 0, 1)?;
        let embedded = self
            .embed_norm
            .forward(&words.broadcast_add(&positions)?.broadcast_add(&types)?)?;
        let mut xs = ctx.drop(&embedded, ctx.hidden_dropout)?;

        // Additive mask: 0 where attended, a large negative number on padding.
        let mask = attention_mask.to_dtype(DType::F32)?;
        let additive = ((mask - 1.0)? * 1e9)?.reshape((b, 1, 1, t))?;
        let scale = 1.0 / (dh as f64).sqrt();
        let no_delta = LayerDeltas::default();
        for (l, layer) in self.layers.iter().enumerate() {
            let d = ctx.deltas.get(l).unwrap_or(&no_delta);
            let (dq, dv) = (d.query.clone(), d.value.clone());
            let split = |x: Tensor| -> candle_core::Result<Tensor> {
                x.reshape((b, t, heads, dh))?.transpose(1, 2)?.contiguous()
            };
            let q = split(ctx.project(&layer.query, dq.as_ref(), &xs)?)?;
            let k = split(layer.key.forward(&xs)?)?;
            let v = split(ctx.project(&layer.value, dv.as_ref(), &xs)?)?;
            let scores = (crate::fused::matmul(&q, &k.t()?)? * scale)?.broadcast_add(&additive)?;
            let probs = crate::fused::softmax_last_dim(&scores)?;
            let probs = ctx.drop(&probs, ctx.attention_dropout)?;
            let context = crate::fused::matmul(&probs, &v)?
                .transpose(1, 2)?
                .reshape((b, t, h))?;
            let attn = layer.attn_norm.forward(
                &(ctx.drop(&layer.attn_out.forward(&context)?, ctx.hidden_dropout)? + &xs)?,
            )?;
            let inter = layer.intermediate.forward(&attn)?;
            let inter = match self.config.hidden_act.as_str() {
                "relu" => inter.relu()?,
                "gelu_new" => inter.gelu()?,
                _ => crate::fused::gelu_erf(&inter)?,
            };
            xs = layer.out_norm.forward(
                &(ctx.drop(&layer.output.forward(&inter)?, ctx.hidden_dropout)? + attn)?,
            )?;
        }
        Ok(xs)
    }
}

/// Mean of the hidden states over the non-padding tokens (sentence-transformers pooling).
///
/// # Shapes
/// `hidden`: `(batch, seq, hidden)`, `attention_mask`: `(batch, seq)`; returns `(batch, hidden)`.
pub fn mean_pool(hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let mask = attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
    Ok(summed.broadcast_div(&counts)?)
}

/// All f32 tensors of a safetensors file by name (integer buffers such as `position_ids` are
/// skipped). A file that does not parse is reported as corrupt.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(FinetuneError::MissingAsset {
            path: path.to_path_buf(),
        });
    }
    crate::assets::check_safetensors(path)?;
    let all = candle_core::safetensors::load(path, device)?;
    Ok(all
        .into_iter()
        .filter(|(_, t)| t.dtype() == DType::F32)
        .map(|(k, t)| (k.strip_prefix("bert.").map(str::to_string).unwrap_or(k), t))
        .collect())
}
