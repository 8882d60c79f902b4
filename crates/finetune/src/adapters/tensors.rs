//! The trainable tensors of the adapter families: registering them in the model's `VarMap` under
//! their saved name, their seeded initial values, and the generators' activation φ.

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::GeneratorActivation;
use crate::error::{FinetuneError, Result};
use crate::tensor_path::TensorPath;

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
pub(crate) fn new_var(varmap: &VarMap, path: &TensorPath, init: Tensor) -> Result<Tensor> {
    register(varmap, path, Var::from_tensor(&init)?)
}

/// Register `var` under `path`; a name is registered once.
pub(crate) fn register(varmap: &VarMap, path: &TensorPath, var: Var) -> Result<Tensor> {
    let tensor = var.as_tensor().clone();
    let mut data = lock_vars(varmap)?;
    if data.insert(path.to_string(), var).is_some() {
        return Err(FinetuneError::Data(format!(
            "variable {path} registered twice"
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
