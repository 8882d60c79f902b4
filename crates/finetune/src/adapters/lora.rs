//! LoRA with peft's semantics: `y = W x + (α/r)·B A x`, A uniform ±1/√in (peft's kaiming-uniform
//! with a = √5), B = 0, so the model starts exactly at the pretrained function.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;

use super::{new_var, peft_key, uniform, zeros, Adapter, AdapterSpec, TARGETS};
use crate::config::AdapterKind;
use crate::encoder::{BertConfig, LayerDeltas, LowRank};
use crate::error::Result;

pub struct Lora {
    /// Per layer, per target: `(A: (r, in), B: (out, r))`.
    factors: Vec<[(Tensor, Tensor); 2]>,
    scale: f64,
}

impl Lora {
    pub fn new(
        spec: &AdapterSpec,
        cfg: &BertConfig,
        varmap: &VarMap,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let (h, r) = (cfg.hidden_size, spec.rank);
        let bound = 1.0 / (h as f64).sqrt();
        let mut factors = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let mut make = |proj: &str| -> Result<(Tensor, Tensor)> {
                let a = new_var(
                    varmap,
                    peft_key(l, proj, "lora_A.weight"),
                    uniform(rng, &[r, h], bound, device)?,
                )?;
                let b = new_var(
                    varmap,
                    peft_key(l, proj, "lora_B.weight"),
                    zeros(&[h, r], device)?,
                )?;
                Ok((a, b))
            };
            factors.push([make(TARGETS[0])?, make(TARGETS[1])?]);
        }
        Ok(Self {
            factors,
            scale: spec.scale(),
        })
    }
}

impl Adapter for Lora {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Lora
    }

    fn deltas(&self) -> Result<Vec<LayerDeltas>> {
        Ok(self
            .factors
            .iter()
            .map(|[q, v]| LayerDeltas {
                query: Some(LowRank {
                    a: q.0.clone(),
                    b: q.1.clone(),
                    scale: self.scale,
                }),
                value: Some(LowRank {
                    a: v.0.clone(),
                    b: v.1.clone(),
                    scale: self.scale,
                }),
            })
            .collect())
    }
}
