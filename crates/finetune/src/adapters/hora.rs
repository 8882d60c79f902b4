//! HoRA: one generator per layer shared by all heads (THEORY.md §2). The A-seed `Ā ∈ R^{r×in}` is
//! shared by every head (and by Q and V); every head has its own B-seed `B̄_h ∈ R^{d_h×r}`; the
//! generator specialises them to Q and V:
//!
//!   `A_Q = φ(G_AQ Ā)`,  `B_Q[h] = φ(G_BQ B̄_h)`   (the same for V),
//!
//! with `G_AQ ∈ R^{r×r}` on the rank axis and `G_BQ ∈ R^{d_h×d_h}` on a head's output axis, the
//! one map every head goes through: this is the cross-head coupling, and it costs `2·d_h²`
//! parameters per layer over RepLoRA. The generated matrices are computed once per forward pass
//! (one batched matmul over heads) and can be exported as plain LoRA factors.
//! Init: Ā uniform ±1/√in, B̄ = 0, G = I, so ΔW = 0 at the start.

use super::generator::{Generator, Generators};
use super::init::AdapterInit;
use super::spec::Adapter;
use crate::config::AdapterKind;
use crate::error::Result;
use crate::low_rank::LayerDeltas;

pub struct Hora(Generators);

impl Hora {
    pub(crate) fn new(init: &mut AdapterInit) -> Result<Self> {
        let (heads, dh, r) = (
            init.cfg.num_attention_heads,
            init.cfg.head_dim(),
            init.spec.rank,
        );
        Ok(Self(Generators::new(init, "hora", &[heads, dh, r], dh)?))
    }

    pub fn generators(&self) -> &[Generator] {
        &self.0.layers
    }
}

impl Adapter for Hora {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Hora
    }

    fn deltas(&self) -> Result<Vec<LayerDeltas>> {
        self.0.deltas(|g, i| {
            let (heads, dh, r) = g.b_seed.dims3()?;
            // All heads in one batched matmul: (d_h, d_h) · (H, d_h, r) -> (H, d_h, r).
            let b = g.g_b[i].broadcast_matmul(&g.b_seed)?;
            Ok(b.reshape((heads * dh, r))?)
        })
    }
}
