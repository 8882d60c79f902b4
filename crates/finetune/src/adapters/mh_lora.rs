//! Multi-head LoRA: every head of query and value has its own rank-r pair `(A_h, B_h)`, nothing
//! shared (THEORY.md's independent-heads baseline). ΔW is block-structured: head h's output rows
//! get `(α/r)·B_h A_h`.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;

use super::{eye, new_var, peft_key, uniform, zeros, Adapter, AdapterSpec, TARGETS};
use crate::config::AdapterKind;
use crate::encoder::{BertConfig, LayerDeltas, LowRank};
use crate::error::Result;

pub struct MhLora {
    /// Per layer, per target: `(A: (H, r, in), B: (H, d_h, r))`.
    factors: Vec<[(Tensor, Tensor); 2]>,
    heads: usize,
    rank: usize,
    scale: f64,
    /// `(H, 1, H, 1)` identity that spreads B into a block-diagonal `(out, H·r)` matrix.
    block_mask: Tensor,
}

impl MhLora {
    pub fn new(
        spec: &AdapterSpec,
        cfg: &BertConfig,
        varmap: &VarMap,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let (h, heads, dh, r) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.head_dim(),
            spec.rank,
        );
        let bound = 1.0 / (h as f64).sqrt();
        let mut factors = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let mut make = |proj: &str| -> Result<(Tensor, Tensor)> {
                let a = new_var(
                    varmap,
                    peft_key(l, proj, "mh_lora_A.weight"),
                    uniform(rng, &[heads, r, h], bound, device)?,
                )?;
                let b = new_var(
                    varmap,
                    peft_key(l, proj, "mh_lora_B.weight"),
                    zeros(&[heads, dh, r], device)?,
                )?;
                Ok((a, b))
            };
            factors.push([make(TARGETS[0])?, make(TARGETS[1])?]);
        }
        let block_mask = eye(heads, device)?.reshape((heads, 1, heads, 1))?;
        Ok(Self {
            factors,
            heads,
            rank: spec.rank,
            scale: spec.scale(),
            block_mask,
        })
    }

    fn low_rank(&self, a: &Tensor, b: &Tensor) -> Result<LowRank> {
        let (heads, dh, r) = b.dims3()?;
        let in_dim = a.dim(2)?;
        let a_all = a.reshape((heads * r, in_dim))?;
        let b_block = b
            .unsqueeze(2)?
            .broadcast_mul(&self.block_mask)?
            .reshape((heads * dh, heads * r))?;
        debug_assert_eq!((heads, r), (self.heads, self.rank));
        Ok(LowRank {
            a: a_all,
            b: b_block,
            scale: self.scale,
        })
    }
}

impl Adapter for MhLora {
    fn kind(&self) -> AdapterKind {
        AdapterKind::MhLora
    }

    fn deltas(&self) -> Result<Vec<LayerDeltas>> {
        self.factors
            .iter()
            .map(|[q, v]| {
                Ok(LayerDeltas {
                    query: Some(self.low_rank(&q.0, &q.1)?),
                    value: Some(self.low_rank(&v.0, &v.1)?),
                })
            })
            .collect()
    }
}
