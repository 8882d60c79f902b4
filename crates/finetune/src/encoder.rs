//! A BERT-family encoder on candle whose weights are plain tensors loaded by name, plus the
//! hooks through which adapters add low-rank updates to the query and value projections.
//!
//! The layer norm is written from tensor ops and attention uses `ops::softmax`: candle-nn's
//! fused `LayerNorm` and `softmax_last_dim` have no backward pass (TOOLCHAIN.md), so gradients
//! would silently stop at them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, FinetuneError, Result};

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
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let cfg: Self = serde_json::from_str(&text)?;
        cfg.check()?;
        Ok(cfg)
    }

    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of is newer than the workspace MSRV
    pub fn check(&self) -> Result<()> {
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

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

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

/// `y = x Wᵀ + b` with `W` of shape `(out, in)` as in PyTorch.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        // As a 2-D matmul on the flattened rows: candle's backward computes the weight's gradient
        // even when it is frozen, and for a broadcast weight that is one (in, out) matrix per
        // batch element, summed afterwards; flat, it is a single (in, out) product.
        let dims = xs.dims();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap_or(&mut 0) = self.weight.dim(0)?;
        let flat = xs.reshape((rows, dims[dims.len() - 1]))?;
        let y = if self.weight.track_op() || !self.weight.device().is_cpu() {
            flat.matmul(&self.weight.t()?)?
        } else {
            flat.contiguous()?
                .apply_op1_arc(std::sync::Arc::new(Box::new(FrozenMatmul {
                    weight: self.weight.clone(),
                })))?
        };
        let y = y.reshape(out_dims)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x Wᵀ` for a frozen `W`: candle's matmul backward also computes `∂L/∂W` (a third of a
/// linear layer's cost) even when `W` is not trained, so frozen projections go through this op
/// whose backward returns only `∂L/∂x = ∂L/∂y · W`. CPU only; other devices use the plain matmul.
struct FrozenMatmul {
    weight: Tensor,
}

impl candle_core::CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let data = storage.as_slice::<f32>()?;
        let (lo, hi) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("frozen-matmul needs a contiguous input".into())
        })?;
        let x = Tensor::from_slice(&data[lo..hi], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.weight.t()?)?;
        let shape = y.shape().clone();
        Ok((
            candle_core::CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?),
            shape,
        ))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.weight)?))
    }
}

/// Layer norm from tensor ops, so it has a backward pass.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// A low-rank update `ΔW = scale · B A` of one projection.
///
/// # Shapes
/// `a`: `(R, in)`, `b`: `(out, R)`.
#[derive(Clone, Debug)]
pub struct LowRank {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
}

impl LowRank {
    /// The dense `(out, in)` update.
    pub fn dense(&self) -> Result<Tensor> {
        Ok((self.b.matmul(&self.a)? * self.scale)?)
    }
}

/// The updates of one layer's query and value projections.
#[derive(Clone, Debug, Default)]
pub struct LayerDeltas {
    pub query: Option<LowRank>,
    pub value: Option<LowRank>,
}

/// State of one forward pass: whether adapter dropout is on, and its seeded RNG.
pub struct ForwardCtx<'a> {
    pub deltas: &'a [LayerDeltas],
    pub dropout: f64,
    pub rng: Option<&'a mut ChaCha8Rng>,
}

impl<'a> ForwardCtx<'a> {
    /// Inference: no dropout.
    pub fn eval(deltas: &'a [LayerDeltas]) -> Self {
        Self {
            deltas,
            dropout: 0.0,
            rng: None,
        }
    }

    fn dropout(&mut self, xs: &Tensor) -> Result<Tensor> {
        let p = self.dropout;
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
                let x = self.dropout(xs)?;
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

/// The encoder. Tensor names follow the Hugging Face `BertModel` checkpoint.
#[derive(Clone, Debug)]
pub struct BertEncoder {
    pub config: BertConfig,
    pub word_embeddings: Tensor,
    pub position_embeddings: Tensor,
    pub token_type_embeddings: Tensor,
    pub embed_norm: LayerNorm,
    pub layers: Vec<BertLayer>,
}

/// Path of a query or value projection, as in the checkpoint and in peft's keys.
pub fn projection_path(layer: usize, proj: &str) -> String {
    format!("encoder.layer.{layer}.attention.self.{proj}")
}

impl BertEncoder {
    /// Build from a name → tensor lookup (a checkpoint map, or a map of `Var`s for full
    /// fine-tuning). Every tensor is checked against the shape the config implies.
    pub fn from_lookup(config: &BertConfig, get: &dyn Fn(&str) -> Option<Tensor>) -> Result<Self> {
        config.check()?;
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let fetch = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = get(name)
                .ok_or_else(|| FinetuneError::Checkpoint(format!("tensor {name} is missing")))?;
            if t.dims() != shape {
                return Err(FinetuneError::Checkpoint(format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            Ok(t)
        };
        let linear = |p: &str, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear {
                weight: fetch(&format!("{p}.weight"), &[out, inp])?,
                bias: Some(fetch(&format!("{p}.bias"), &[out])?),
            })
        };
        let norm = |p: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: fetch(&format!("{p}.weight"), &[h])?,
                bias: fetch(&format!("{p}.bias"), &[h])?,
                eps: config.layer_norm_eps,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            layers.push(BertLayer {
                query: linear(&format!("{p}.attention.self.query"), h, h)?,
                key: linear(&format!("{p}.attention.self.key"), h, h)?,
                value: linear(&format!("{p}.attention.self.value"), h, h)?,
                attn_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(&format!("{p}.intermediate.dense"), i, h)?,
                output: linear(&format!("{p}.output.dense"), h, i)?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Self {
            config: config.clone(),
            word_embeddings: fetch("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position_embeddings: fetch(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?,
            token_type_embeddings: fetch(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, h],
            )?,
            embed_norm: norm("embeddings.LayerNorm")?,
            layers,
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
    pub fn random(config: &BertConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = crate::adapters::init_rng(seed, 99);
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let mut map = HashMap::new();
        let mut put = |name: String, dims: &[usize], centre: f32| -> Result<()> {
            let n: usize = dims.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|_| centre + rng.random_range(-0.2f32..0.2))
                .collect();
            map.insert(name, Tensor::from_vec(data, dims, device)?);
            Ok(())
        };
        put(
            "embeddings.word_embeddings.weight".into(),
            &[config.vocab_size, h],
            0.0,
        )?;
        put(
            "embeddings.position_embeddings.weight".into(),
            &[config.max_position_embeddings, h],
            0.0,
        )?;
        put(
            "embeddings.token_type_embeddings.weight".into(),
            &[config.type_vocab_size, h],
            0.0,
        )?;
        put("embeddings.LayerNorm.weight".into(), &[h], 1.0)?;
        put("embeddings.LayerNorm.bias".into(), &[h], 0.0)?;
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            for (name, out, inp) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", i, h),
                ("output.dense", h, i),
            ] {
                put(format!("{p}.{name}.weight"), &[out, inp], 0.0)?;
                put(format!("{p}.{name}.bias"), &[out], 0.0)?;
            }
            for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
                put(format!("{p}.{name}.weight"), &[h], 1.0)?;
                put(format!("{p}.{name}.bias"), &[h], 0.0)?;
            }
        }
        Self::from_lookup(config, &|name| map.get(name).cloned())
    }

    /// Every weight by checkpoint name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            (
                "embeddings.word_embeddings.weight".to_string(),
                self.word_embeddings.clone(),
            ),
            (
                "embeddings.position_embeddings.weight".to_string(),
                self.position_embeddings.clone(),
            ),
            (
                "embeddings.token_type_embeddings.weight".to_string(),
                self.token_type_embeddings.clone(),
            ),
            (
                "embeddings.LayerNorm.weight".to_string(),
                self.embed_norm.weight.clone(),
            ),
            (
                "embeddings.LayerNorm.bias".to_string(),
                self.embed_norm.bias.clone(),
            ),
        ];
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("encoder.layer.{l}");
            let lin = |out: &mut Vec<(String, Tensor)>, name: String, lin: &Linear| {
                out.push((format!("{name}.weight"), lin.weight.clone()));
                if let Some(b) = &lin.bias {
                    out.push((format!("{name}.bias"), b.clone()));
                }
            };
            let norm = |out: &mut Vec<(String, Tensor)>, name: String, n: &LayerNorm| {
                out.push((format!("{name}.weight"), n.weight.clone()));
                out.push((format!("{name}.bias"), n.bias.clone()));
            };
            lin(&mut out, format!("{p}.attention.self.query"), &layer.query);
            lin(&mut out, format!("{p}.attention.self.key"), &layer.key);
            lin(&mut out, format!("{p}.attention.self.value"), &layer.value);
            lin(
                &mut out,
                format!("{p}.attention.output.dense"),
                &layer.attn_out,
            );
            norm(
                &mut out,
                format!("{p}.attention.output.LayerNorm"),
                &layer.attn_norm,
            );
            lin(
                &mut out,
                format!("{p}.intermediate.dense"),
                &layer.intermediate,
            );
            lin(&mut out, format!("{p}.output.dense"), &layer.output);
            norm(&mut out, format!("{p}.output.LayerNorm"), &layer.out_norm);
        }
        out
    }

    /// A copy with `W ← W + ΔW` in every adapted projection (the base is left untouched).
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
            .index_select(&flat, 0)?
            .reshape((b, t, h))?;
        let positions = self.position_embeddings.narrow(0, 0, t)?;
        let types = self.token_type_embeddings.narrow(0, 0, 1)?;
        let mut xs = self
            .embed_norm
            .forward(&words.broadcast_add(&positions)?.broadcast_add(&types)?)?;

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
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&additive)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
            let attn = layer
                .attn_norm
                .forward(&(layer.attn_out.forward(&context)? + &xs)?)?;
            let inter = layer.intermediate.forward(&attn)?;
            let inter = match self.config.hidden_act.as_str() {
                "relu" => inter.relu()?,
                "gelu_new" => inter.gelu()?,
                _ => inter.gelu_erf()?,
            };
            xs = layer
                .out_norm
                .forward(&(layer.output.forward(&inter)? + attn)?)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_matmul_gradient_matches_the_plain_matmul() {
        let dev = Device::Cpu;
        let w = Tensor::arange(0f32, 12.0, &dev)
            .unwrap()
            .reshape((3, 4))
            .unwrap()
            .affine(0.1, -0.5)
            .unwrap();
        let x = candle_core::Var::from_tensor(
            &Tensor::arange(0f32, 8.0, &dev)
                .unwrap()
                .reshape((1, 2, 4))
                .unwrap()
                .cos()
                .unwrap(),
        )
        .unwrap();
        let frozen = Linear {
            weight: w.clone(),
            bias: None,
        };
        let plain = Linear {
            weight: candle_core::Var::from_tensor(&w)
                .unwrap()
                .as_tensor()
                .clone(),
            bias: None,
        };
        let (yf, yp) = (frozen.forward(&x).unwrap(), plain.forward(&x).unwrap());
        assert_eq!(yf.to_vec3::<f32>().unwrap(), yp.to_vec3::<f32>().unwrap());
        let gf = yf.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gp = yp.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (
            gf.get(x.as_tensor()).unwrap(),
            gp.get(x.as_tensor()).unwrap(),
        );
        assert_eq!(a.to_vec3::<f32>().unwrap(), b.to_vec3::<f32>().unwrap());
        assert!(
            gf.get(&w).is_none(),
            "no gradient is computed for the frozen weight"
        );
    }
}
