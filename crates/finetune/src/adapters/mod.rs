//! Parameter-efficient adapters on the query and value projections of every layer. Each family
//! implements one trait: it owns its trainable tensors (registered in the model's `VarMap` under
//! peft-style names) and turns them, once per forward pass, into low-rank updates `ΔW = s·B A`.

mod full;
mod head_only;
mod hora;
mod lora;
mod mh_lora;
mod replora;

pub use full::FullFinetune;
pub use head_only::HeadOnly;
pub use hora::Hora;
pub use lora::Lora;
pub use mh_lora::MhLora;
pub use replora::RepLora;

use candle_core::Var;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::{AdapterKind, GeneratorActivation, TrainConfig};
use crate::encoder::{BertEncoder, LayerDeltas};
use crate::error::{FinetuneError, Result};

/// Prefix of every saved key, as peft writes it for a wrapped model.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// The projections every adapter targets (peft's `target_modules`).
pub const TARGETS: [&str; 2] = ["query", "value"];

/// What an adapter needs to build itself.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterSpec {
    pub kind: AdapterKind,
    pub rank: usize,
    pub alpha: f64,
    pub activation: GeneratorActivation,
    pub seed: u64,
}

impl AdapterSpec {
    pub fn from_config(cfg: &TrainConfig) -> Self {
        Self {
            kind: cfg.method,
            rank: cfg.rank,
            alpha: cfg.alpha,
            activation: cfg.generator_activation,
            seed: cfg.seed,
        }
    }

    /// peft's scaling `α / r`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

pub trait Adapter: Send + Sync {
    fn kind(&self) -> AdapterKind;

    /// The low-rank updates of every layer, computed once per forward pass (a generator runs
    /// here, not once per head).
    fn deltas(&self) -> Result<Vec<LayerDeltas>>;

    /// The encoder whose weights train, for full fine-tuning; `None` means the frozen base.
    fn trainable_encoder(&self) -> Option<&BertEncoder> {
        None
    }
}

/// Build the adapter family named by `spec.kind`, registering its tensors in `varmap`.
pub fn build(
    spec: &AdapterSpec,
    base: &BertEncoder,
    varmap: &VarMap,
    device: &Device,
) -> Result<Box<dyn Adapter>> {
    if spec.rank == 0 {
        return Err(FinetuneError::Config {
            field: "rank",
            value: "0".into(),
            allowed: "an integer >= 1",
        });
    }
    let mut rng = init_rng(spec.seed, 1);
    Ok(match spec.kind {
        AdapterKind::HeadOnly => Box::new(HeadOnly),
        AdapterKind::Lora => Box::new(Lora::new(spec, &base.config, varmap, &mut rng, device)?),
        AdapterKind::MhLora => Box::new(MhLora::new(spec, &base.config, varmap, &mut rng, device)?),
        AdapterKind::Replora => {
            Box::new(RepLora::new(spec, &base.config, varmap, &mut rng, device)?)
        }
        AdapterKind::Hora => Box::new(Hora::new(spec, &base.config, varmap, &mut rng, device)?),
        AdapterKind::Full => Box::new(FullFinetune::new(base, varmap)?),
    })
}

/// A seeded RNG for one purpose (`stream`) of one run.
pub fn init_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// `base_model.model.encoder.layer.{layer}.attention.self.{proj}.{suffix}`.
pub fn peft_key(layer: usize, proj: &str, suffix: &str) -> String {
    format!(
        "{PEFT_PREFIX}{}.{suffix}",
        crate::encoder::projection_path(layer, proj)
    )
}

/// The trainable variables by name, locked (a poisoned lock is an error, not a panic).
pub(crate) fn lock_vars(
    varmap: &VarMap,
) -> Result<std::sync::MutexGuard<'_, std::collections::HashMap<String, Var>>> {
    varmap
        .data()
        .lock()
        .map_err(|_| FinetuneError::Data("variable map lock poisoned".into()))
}

/// Register `init` as a new trainable variable and return the tensor the graph uses.
pub(crate) fn new_var(varmap: &VarMap, name: String, init: Tensor) -> Result<Tensor> {
    let var = Var::from_tensor(&init)?;
    let tensor = var.as_tensor().clone();
    let mut data = lock_vars(varmap)?;
    if data.insert(name.clone(), var).is_some() {
        return Err(FinetuneError::Data(format!(
            "variable {name} registered twice"
        )));
    }
    Ok(tensor)
}

/// Uniform(-bound, bound) entries, drawn from the run's seeded RNG.
pub(crate) fn uniform(
    rng: &mut ChaCha8Rng,
    dims: &[usize],
    bound: f64,
    device: &Device,
) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect();
    Ok(Tensor::from_vec(data, dims, device)?)
}

pub(crate) fn zeros(dims: &[usize], device: &Device) -> Result<Tensor> {
    Ok(Tensor::zeros(dims, candle_core::DType::F32, device)?)
}

pub(crate) fn eye(n: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::eye(n, candle_core::DType::F32, device)?)
}

pub(crate) fn activate(x: Tensor, act: GeneratorActivation) -> Result<Tensor> {
    Ok(match act {
        GeneratorActivation::Identity => x,
        GeneratorActivation::Tanh => x.tanh()?,
    })
}
