//! What every family's constructor draws on: the spec, the encoder's shape, the `VarMap` its
//! tensors are registered in, and the adapter RNG (stream `rng::ADAPTER_INIT`). The RNG is consumed
//! in the order the tensors are made (`factors.rs`, `generator.rs`: layer by layer, query before
//! value), so that order fixes every initialisation.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;

use super::spec::AdapterSpec;
use super::tensors::{eye, new_var, uniform, zeros};
use crate::encoder::BertConfig;
use crate::error::Result;
use crate::tensor_path::TensorPath;

/// A family's constructor's one argument; `uniform` is the only draw from `rng`.
pub(crate) struct AdapterInit<'a> {
    pub spec: &'a AdapterSpec,
    pub cfg: &'a BertConfig,
    pub varmap: &'a VarMap,
    pub rng: ChaCha8Rng,
    pub device: &'a Device,
}

impl AdapterInit<'_> {
    /// A new trainable tensor at `path`, uniform ±1/√in (peft's kaiming-uniform with a = √5, `in`
    /// the hidden width), drawn from the adapter RNG now.
    pub fn uniform(&mut self, path: &TensorPath, dims: &[usize]) -> Result<Tensor> {
        let bound = 1.0 / (self.cfg.hidden_size as f64).sqrt();
        let init = uniform(&mut self.rng, dims, bound, self.device)?;
        new_var(self.varmap, path, init)
    }

    /// A new trainable tensor at `path`, all zeros.
    pub fn zeros(&self, path: &TensorPath, dims: &[usize]) -> Result<Tensor> {
        new_var(self.varmap, path, zeros(dims, self.device)?)
    }

    /// A new trainable `(n, n)` identity at `path`.
    pub fn eye(&self, path: &TensorPath, n: usize) -> Result<Tensor> {
        new_var(self.varmap, path, eye(n, self.device)?)
    }
}
