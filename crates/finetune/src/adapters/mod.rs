//! Parameter-efficient adapters on the query and value projections of every layer. Each family
//! implements one trait, [`Adapter`]: it owns its trainable tensors (registered in the model's
//! `VarMap` under peft-style names, all made in `names.rs`) and turns them, once per forward
//! pass, into low-rank updates `ΔW = s·B A`. This file is the list of families.

mod factors;
mod full;
mod generator;
mod head_only;
mod hora;
mod init;
mod lora;
mod mh_lora;
mod names;
mod replora;
mod spec;
mod tensors;

pub use full::FullFinetune;
pub use head_only::HeadOnly;
pub use hora::Hora;
pub use lora::Lora;
pub use mh_lora::MhLora;
pub use names::{adapter_path, lora_paths, peft_root, TARGETS};
pub use replora::RepLora;
pub use spec::{Adapter, AdapterSpec};
pub(crate) use tensors::{lock_vars, new_var, uniform, zeros};

use candle_core::Device;
use candle_nn::VarMap;
use init::AdapterInit;

use crate::config::AdapterKind;
use crate::encoder::BertEncoder;
use crate::error::Result;
use crate::rng::{init_rng, ADAPTER_INIT};

/// Build the adapter family named by `spec.kind`, registering its tensors in `varmap`.
pub fn build(
    spec: &AdapterSpec,
    base: &BertEncoder,
    varmap: &VarMap,
    device: &Device,
) -> Result<Box<dyn Adapter>> {
    // Every spec is checked here, with the ranges of a training configuration, whether it came
    // from a checked `TrainConfig` or from an adapter folder's own `r` and `lora_alpha`.
    spec.validate()?;
    let mut init = AdapterInit {
        spec,
        cfg: &base.config,
        varmap,
        rng: init_rng(spec.seed, ADAPTER_INIT),
        device,
    };
    Ok(match spec.kind {
        AdapterKind::HeadOnly => Box::new(HeadOnly),
        AdapterKind::Lora => Box::new(Lora::new(&mut init)?),
        AdapterKind::MhLora => Box::new(MhLora::new(&mut init)?),
        AdapterKind::Replora => Box::new(RepLora::new(&mut init)?),
        AdapterKind::Hora => Box::new(Hora::new(&mut init)?),
        AdapterKind::Full => Box::new(FullFinetune::new(base, varmap)?),
    })
}
