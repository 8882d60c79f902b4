//! Full fine-tuning (the ceiling): a trainable copy of every encoder weight. The base tensors are
//! copied into `Var`s, so the frozen base stays bit-identical and can be compared against.

use candle_core::Var;
use candle_nn::VarMap;

use super::{Adapter, PEFT_PREFIX};
use crate::config::AdapterKind;
use crate::encoder::{BertEncoder, LayerDeltas};
use crate::error::Result;

pub struct FullFinetune {
    encoder: BertEncoder,
}

impl FullFinetune {
    pub fn new(base: &BertEncoder, varmap: &VarMap) -> Result<Self> {
        let mut copies = std::collections::HashMap::new();
        {
            let mut data = super::lock_vars(varmap)?;
            for (name, tensor) in base.named_tensors() {
                // `Var::from_tensor` copies the storage: training never writes to the base.
                let var = Var::from_tensor(&tensor)?;
                copies.insert(name.clone(), var.as_tensor().clone());
                data.insert(format!("{PEFT_PREFIX}{name}"), var);
            }
        }
        let encoder = BertEncoder::from_lookup(&base.config, &|name| copies.get(name).cloned())?;
        Ok(Self { encoder })
    }
}

impl Adapter for FullFinetune {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Full
    }

    fn deltas(&self) -> Result<Vec<LayerDeltas>> {
        Ok(Vec::new())
    }

    fn trainable_encoder(&self) -> Option<&BertEncoder> {
        Some(&self.encoder)
    }
}
