//! The factor pairs LoRA and MH-LoRA share: per layer, per target, an `(A, B)` pair, A uniform
//! ±1/√in and B = 0, so ΔW = 0 at the start.

use candle_core::Tensor;

use super::init::AdapterInit;
use super::names::TARGETS;
use crate::error::Result;
use crate::low_rank::{LayerDeltas, LowRank};
use crate::tensor_path::TensorPath;

/// Per layer, per target (in the order of [`TARGETS`]): a factor pair `(A, B)`.
pub(crate) struct FactorPairs(Vec<[(Tensor, Tensor); 2]>);

impl FactorPairs {
    /// Per layer, per target, A (uniform, `a_dims`) then B (zeros, `b_dims`), at the two paths
    /// `paths(layer, target)` gives.
    pub fn new(
        init: &mut AdapterInit,
        paths: impl Fn(usize, &str) -> [TensorPath; 2],
        a_dims: &[usize],
        b_dims: &[usize],
    ) -> Result<Self> {
        let mut factors = Vec::with_capacity(init.cfg.num_hidden_layers);
        for l in 0..init.cfg.num_hidden_layers {
            let mut pair = |target: &str| -> Result<(Tensor, Tensor)> {
                let [a_path, b_path] = paths(l, target);
                let a = init.uniform(&a_path, a_dims)?;
                let b = init.zeros(&b_path, b_dims)?;
                Ok((a, b))
            };
            factors.push([pair(TARGETS[0])?, pair(TARGETS[1])?]);
        }
        Ok(Self(factors))
    }

    /// The updates of every layer: `update(A, B)` for each target's pair.
    pub fn deltas(
        &self,
        update: impl Fn(&Tensor, &Tensor) -> Result<LowRank>,
    ) -> Result<Vec<LayerDeltas>> {
        LayerDeltas::per_layer(&self.0, |pairs, i| {
            let (a, b) = &pairs[i];
            update(a, b)
        })
    }
}
