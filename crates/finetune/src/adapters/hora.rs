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

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;

use super::{activate, eye, new_var, uniform, zeros, Adapter, AdapterSpec, PEFT_PREFIX};
use crate::config::{AdapterKind, GeneratorActivation};
use crate::encoder::{BertConfig, LayerDeltas, LowRank};
use crate::error::Result;

/// The per-layer generator and seeds of HoRA.
pub struct HoraGenerator {
    /// `(r, in)`, shared by all heads.
    pub a_seed: Tensor,
    /// `(H, d_h, r)`, one seed per head.
    pub b_seed: Tensor,
    /// `(r, r)` for query and value.
    pub g_a: [Tensor; 2],
    /// `(d_h, d_h)` for query and value, shared by all heads.
    pub g_b: [Tensor; 2],
}

pub struct Hora {
    layers: Vec<HoraGenerator>,
    scale: f64,
    activation: GeneratorActivation,
}

/// `base_model.model.encoder.layer.{l}.attention.self.hora.{name}`.
pub fn hora_key(layer: usize, name: &str) -> String {
    format!("{PEFT_PREFIX}encoder.layer.{layer}.attention.self.hora.{name}")
}

impl Hora {
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
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let key = |n: &str| hora_key(l, n);
            layers.push(HoraGenerator {
                a_seed: new_var(varmap, key("a_seed"), uniform(rng, &[r, h], bound, device)?)?,
                b_seed: new_var(varmap, key("b_seed"), zeros(&[heads, dh, r], device)?)?,
                g_a: [
                    new_var(varmap, key("g_a_query"), eye(r, device)?)?,
                    new_var(varmap, key("g_a_value"), eye(r, device)?)?,
                ],
                g_b: [
                    new_var(varmap, key("g_b_query"), eye(dh, device)?)?,
                    new_var(varmap, key("g_b_value"), eye(dh, device)?)?,
                ],
            });
        }
        Ok(Self {
            layers,
            scale: spec.scale(),
            activation: spec.activation,
        })
    }

    pub fn generators(&self) -> &[HoraGenerator] {
        &self.layers
    }
}

impl Adapter for Hora {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Hora
    }

    fn deltas(&self) -> Result<Vec<LayerDeltas>> {
        self.layers
            .iter()
            .map(|g| {
                let (heads, dh, r) = g.b_seed.dims3()?;
                let gen = |i: usize| -> Result<LowRank> {
                    // All heads in one batched matmul: (d_h, d_h) · (H, d_h, r) -> (H, d_h, r).
                    let b = g.g_b[i]
                        .broadcast_matmul(&g.b_seed)?
                        .reshape((heads * dh, r))?;
                    Ok(LowRank {
                        a: activate(g.g_a[i].matmul(&g.a_seed)?, self.activation)?,
                        b: activate(b, self.activation)?,
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
