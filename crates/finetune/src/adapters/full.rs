//! Full fine-tuning (the ceiling): a trainable copy of every encoder weight, registered under
//! peft's prefix and the checkpoint name. The base tensors are copied into `Var`s, so the frozen
//! base stays bit-identical and can be compared against.

use std::collections::HashMap;

use candle_core::Var;
use candle_nn::VarMap;

use super::names::peft_root;
use super::spec::Adapter;
use super::tensors::register;
use crate::config::AdapterKind;
use crate::encoder::BertEncoder;
use crate::error::{FinetuneError, Result};
use crate::low_rank::LayerDeltas;

pub struct FullFinetune {
    encoder: BertEncoder,
}

impl FullFinetune {
    pub fn new(base: &BertEncoder, varmap: &VarMap) -> Result<Self> {
        let weights: HashMap<String, _> = base.named_tensors().into_iter().collect();
        let root = peft_root();
        let encoder = BertEncoder::build(&base.config, &mut |path, _, _| {
            let tensor = weights.get(path.as_str()).ok_or_else(|| {
                FinetuneError::Checkpoint(format!("tensor {path} is missing from the base"))
            })?;
            // `Var::from_tensor` copies the storage: training never writes to the base.
            register(varmap, &root.pp(path), Var::from_tensor(tensor)?)
        })?;
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
