//! Multi-head LoRA: every head of query and value has its own rank-r pair `(A_h, B_h)`, nothing
//! shared (THEORY.md's independent-heads baseline). ΔW is block-structured: head h's output rows
//! get `(α/r)·B_h A_h`.

use candle_core::Tensor;

use super::factors::FactorPairs;
use super::init::AdapterInit;
use super::names::factor_paths;
use super::spec::Adapter;
use super::tensors::eye;
use crate::config::AdapterKind;
use crate::error::Result;
use crate::low_rank::{LayerDeltas, LowRank};

pub struct MhLora {
    /// Per layer, per target: `(A: (H, r, in), B: (H, d_h, r))`.
    factors: FactorPairs,
    heads: usize,
    rank: usize,
    scale: f64,
    /// `(H, 1, H, 1)` identity that spreads B into a block-diagonal `(out, H·r)` matrix.
    block_mask: Tensor,
}

impl MhLora {
    pub(crate) fn new(init: &mut AdapterInit) -> Result<Self> {
        let (h, r) = (init.cfg.hidden_size, init.spec.rank);
        let (heads, dh) = (init.cfg.num_attention_heads, init.cfg.head_dim());
        let paths = |l: usize, target: &str| factor_paths(l, target, "mh_lora");
        let factors = FactorPairs::new(init, paths, &[heads, r, h], &[heads, dh, r])?;
        let block_mask = eye(heads, init.device)?.reshape((heads, 1, heads, 1))?;
        Ok(Self {
            factors,
            heads,
            rank: r,
            scale: init.spec.scale(),
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
        self.factors.deltas(|a, b| self.low_rank(a, b))
    }
}
