//! The low-rank updates `ΔW = s·B A` that adapters produce and the encoder adds to its query and
//! value projections: the one type both sides share, so neither depends on the other for it.

use candle_core::Tensor;

use crate::error::Result;

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

impl LayerDeltas {
    /// The same updates cut from the trainable tensors they were computed from: an evaluation
    /// forward pass through them builds no backward graph (candle records one for any op with
    /// a variable among its inputs), so each intermediate is freed as soon as it is used
    /// instead of living until the output is dropped. Same values, same bits.
    pub fn detach(&self) -> Self {
        let cut = |lr: &Option<LowRank>| {
            lr.as_ref().map(|lr| LowRank {
                a: lr.a.detach(),
                b: lr.b.detach(),
                scale: lr.scale,
            })
        };
        Self {
            query: cut(&self.query),
            value: cut(&self.value),
        }
    }

    /// The updates of every layer: `update(layer, i)` for target `i` (0: query, 1: value).
    pub fn per_layer<L>(
        layers: &[L],
        update: impl Fn(&L, usize) -> Result<LowRank>,
    ) -> Result<Vec<Self>> {
        layers
            .iter()
            .map(|layer| {
                Ok(Self {
                    query: Some(update(layer, 0)?),
                    value: Some(update(layer, 1)?),
                })
            })
            .collect()
    }
}
