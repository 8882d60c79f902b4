//! RepLoRA: per layer one pair of seeds `(Ā, B̄)` shared by query and value, and a small generator
//! that specialises them: `A_Q = φ(G_AQ Ā)`, `A_V = φ(G_AV Ā)`, `B_Q = φ(B̄ G_BQ)`,
//! `B_V = φ(B̄ G_BV)` with `G ∈ R^{r×r}` acting on the rank axis (a `d×d` generator as in the
//! simulator would cost 147k parameters per matrix at d = 384). Heads are not distinguished.
//! Init: Ā uniform ±1/√in, B̄ = 0, G = I, so ΔW = 0 at the start as in LoRA.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;

use super::{activate, eye, new_var, uniform, zeros, Adapter, AdapterSpec, PEFT_PREFIX};
use crate::config::{AdapterKind, GeneratorActivation};
use crate::encoder::{BertConfig, LayerDeltas, LowRank};
use crate::error::Result;

struct LayerGenerator {
    a_seed: Tensor,
    b_seed: Tensor,
    g_a: [Tensor; 2],
    g_b: [Tensor; 2],
}

pub struct RepLora {
    layers: Vec<LayerGenerator>,
    scale: f64,
    activation: GeneratorActivation,
}

/// `base_model.model.encoder.layer.{l}.attention.self.replora.{name}`.
pub fn replora_key(layer: usize, name: &str) -> String {
    format!("{PEFT_PREFIX}encoder.layer.{layer}.attention.self.replora.{name}")
}

impl RepLora {
    pub fn new(
        spec: &AdapterSpec,
        cfg: &BertConfig,
        varmap: &VarMap,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let (h, r) = (cfg.hidden_size, spec.rank);
        let bound = 1.0 / (h as f64).sqrt();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let key = |n: &str| replora_key(l, n);
            layers.push(LayerGenerator {
                a_seed: new_var(varmap, key("a_seed"), uniform(rng, &[r, h], bound, device)?)?,
                b_seed: new_var(varmap, key("b_seed"), zeros(&[h, r], device)?)?,
                g_a: [
                    new_var(varmap, key("g_a_query"), eye(r, device)?)?,
                    new_var(varmap, key("g_a_value"), eye(r, device)?)?,
                ],
                g_b: [
                    new_var(varmap, key("g_b_query"), eye(r, device)?)?,
                    new_var(varmap, key("g_b_value"), eye(r, device)?)?,
                ],
            });
        }
        Ok(Self {
            layers,
            scale: spec.scale(),
            activation: spec.activation,
        })
    }
}

impl Adapter for RepLora {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Replora
    }

    fn deltas(&self) -> Result<Vec<LayerDeltas>> {
        self.layers
            .iter()
            .map(|g| {
                let gen = |i: usize| -> Result<LowRank> {
                    Ok(LowRank {
                        a: activate(g.g_a[i].matmul(&g.a_seed)?, self.activation)?,
                        b: activate(g.b_seed.matmul(&g.g_b[i])?, self.activation)?,
                        scale: self.scale,
                    })
                };
                Ok(LayerDeltas {
                    query: Some(gen(0)?),
                    value: Some(gen(1)?),
                })
            })
            .collect()
    }
}
