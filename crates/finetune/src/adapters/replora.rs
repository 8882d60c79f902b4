//! RepLoRA: per layer one pair of seeds `(Ā, B̄)` shared by query and value, and a small generator
//! that specialises them: `A_Q = φ(G_AQ Ā)`, `A_V = φ(G_AV Ā)`, `B_Q = φ(B̄ G_BQ)`,
//! `B_V = φ(B̄ G_BV)` with `G ∈ R^{r×r}` acting on the rank axis (a `d×d` generator as in the
//! simulator would cost 147k parameters per matrix at d = 384). Heads are not distinguished.
//! Init: Ā uniform ±1/√in, B̄ = 0, G = I, so ΔW = 0 at the start as in LoRA.

use super::generator::Generators;
use super::init::AdapterInit;
use super::spec::Adapter;
use crate::config::AdapterKind;
use crate::error::Result;
use crate::low_rank::LayerDeltas;

pub struct RepLora(Generators);

impl RepLora {
    pub(crate) fn new(init: &mut AdapterInit) -> Result<Self> {
        let (h, r) = (init.cfg.hidden_size, init.spec.rank);
        Ok(Self(Generators::new(init, "replora", &[h, r], r)?))
    }
}

impl Adapter for RepLora {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Replora
    }

    fn deltas(&self) -> Result<Vec<LayerDeltas>> {
        self.0.deltas(|g, i| Ok(g.b_seed.matmul(&g.g_b[i])?))
    }
}
