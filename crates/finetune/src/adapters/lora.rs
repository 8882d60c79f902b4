//! LoRA with peft's semantics: `y = W x + (α/r)·B A x`, A uniform ±1/√in (peft's kaiming-uniform
//! with a = √5), B = 0, so the model starts exactly at the pretrained function.

use super::factors::FactorPairs;
use super::init::AdapterInit;
use super::names::lora_paths;
use super::spec::Adapter;
use crate::config::AdapterKind;
use crate::error::Result;
use crate::low_rank::{LayerDeltas, LowRank};

pub struct Lora {
    /// Per layer, per target: `(A: (r, in), B: (out, r))`.
    factors: FactorPairs,
    scale: f64,
}

impl Lora {
    pub(crate) fn new(init: &mut AdapterInit) -> Result<Self> {
        let (h, r) = (init.cfg.hidden_size, init.spec.rank);
        Ok(Self {
            factors: FactorPairs::new(init, lora_paths, &[r, h], &[h, r])?,
            scale: init.spec.scale(),
        })
    }
}

impl Adapter for Lora {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Lora
    }

    fn deltas(&self) -> Result<Vec<LayerDeltas>> {
        self.factors.deltas(|a, b| {
            Ok(LowRank {
                a: a.clone(),
                b: b.clone(),
                scale: self.scale,
            })
        })
    }
}
