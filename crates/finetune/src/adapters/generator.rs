//! The per-layer generator RepLoRA and HoRA share: seeds `(Ā, B̄)` and, per target, maps
//! `G_A`, `G_B` that specialise them, `A = φ(G_A Ā)` and `B = φ(G_B ∘ B̄)`, where how `G_B` meets
//! `B̄` is the family's own. Init: Ā uniform ±1/√in, B̄ = 0, G = I, so ΔW = 0 at the start.

use candle_core::Tensor;

use super::init::AdapterInit;
use super::names::{adapter_path, TARGETS};
use super::tensors::activate;
use crate::config::GeneratorActivation;
use crate::error::Result;
use crate::low_rank::{LayerDeltas, LowRank};

/// The generator and seeds of one layer.
pub struct Generator {
    /// `(r, in)`, shared by query and value (and, in HoRA, by all heads).
    pub a_seed: Tensor,
    /// RepLoRA: `(out, r)`; HoRA: `(H, d_h, r)`, one seed per head.
    pub b_seed: Tensor,
    /// `(r, r)` for query and value.
    pub g_a: [Tensor; 2],
    /// For query and value. RepLoRA: `(r, r)` on the rank axis; HoRA: `(d_h, d_h)` on a head's
    /// output axis, shared by all heads.
    pub g_b: [Tensor; 2],
}

/// The generators of every layer, with the scale and activation φ their updates take.
pub(crate) struct Generators {
    pub layers: Vec<Generator>,
    scale: f64,
    activation: GeneratorActivation,
}

impl Generators {
    /// One generator per layer, registered under `….attention.self.{family}.` as `a_seed`,
    /// `b_seed` (shape `b_seed`), `g_a_{target}` and `g_b_{target}` (`(g_b, g_b)`). Per layer Ā
    /// alone draws from the RNG.
    pub fn new(init: &mut AdapterInit, family: &str, b_seed: &[usize], g_b: usize) -> Result<Self> {
        let (h, r) = (init.cfg.hidden_size, init.spec.rank);
        let mut layers = Vec::with_capacity(init.cfg.num_hidden_layers);
        for l in 0..init.cfg.num_hidden_layers {
            let site = adapter_path(l).pp(family);
            let a_seed = init.uniform(&site.pp("a_seed"), &[r, h])?;
            let b_seed = init.zeros(&site.pp("b_seed"), b_seed)?;
            let maps = |map: &str, n: usize| -> Result<[Tensor; 2]> {
                let [q, v] = TARGETS.map(|target| init.eye(&site.pp(format!("{map}_{target}")), n));
                Ok([q?, v?])
            };
            layers.push(Generator {
                a_seed,
                b_seed,
                g_a: maps("g_a", r)?,
                g_b: maps("g_b", g_b)?,
            });
        }
        Ok(Self {
            layers,
            scale: init.spec.scale(),
            activation: init.spec.activation,
        })
    }

    /// The updates of every layer: `A = φ(G_A[i] Ā)`, `B = φ(b(layer, i))` for target `i`.
    pub fn deltas(
        &self,
        b: impl Fn(&Generator, usize) -> Result<Tensor>,
    ) -> Result<Vec<LayerDeltas>> {
        LayerDeltas::per_layer(&self.layers, |g, i| {
            Ok(LowRank {
                a: activate(g.g_a[i].matmul(&g.a_seed)?, self.activation)?,
                b: activate(b(g, i)?, self.activation)?,
                scale: self.scale,
            })
        })
    }
}
