//! The layers of a BERT-family encoder, built the way candle builds them: each takes the path it
//! lives at and fetches its tensors, named `{path}.weight` and `{path}.bias` as PyTorch names
//! them, from a [`TensorSource`] (a checkpoint, trainable variables or random draws). A layer
//! keeps its path, so listing its tensors by name derives from the one place they were named.
//!
//! The layer norm is written from tensor ops: candle-nn's fused `LayerNorm` has no backward pass
//! (TOOLCHAIN.md), so gradients would silently stop at it.

use candle_core::{Device, Module, Tensor, D};

use crate::error::{FinetuneError, Result};
use crate::tensor_path::TensorPath;

const WEIGHT: &str = "weight";
const BIAS: &str = "bias";

/// What a tensor is for, so that a source can initialise it (candle's `Init` hints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A projection matrix or an embedding table.
    Weight,
    /// An additive bias, of a projection or a layer norm.
    Bias,
    /// A layer norm's multiplicative gain (1 in a fresh layer).
    Gain,
}

/// Where a layer's tensors come from while it is built: called once per tensor, with its path,
/// the shape the layer expects and its role, in the order the builders ask for them.
pub type TensorSource<'a> = dyn FnMut(&TensorPath, &[usize], Role) -> Result<Tensor> + 'a;

/// One tensor from `source`, checked against the shape the layer implies.
fn take(
    source: &mut TensorSource<'_>,
    path: TensorPath,
    shape: &[usize],
    role: Role,
) -> Result<Tensor> {
    let t = source(&path, shape, role)?;
    if t.dims() != shape {
        return Err(FinetuneError::Checkpoint(format!(
            "tensor {path} has shape {:?}, expected {shape:?}",
            t.dims()
        )));
    }
    Ok(t)
}

/// An embedding table `(rows, hidden)`, named `{path}.weight`.
#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: Tensor,
    pub path: TensorPath,
}

impl Embedding {
    pub fn build(
        path: TensorPath,
        rows: usize,
        hidden: usize,
        source: &mut TensorSource<'_>,
    ) -> Result<Self> {
        let weight = take(source, path.pp(WEIGHT), &[rows, hidden], Role::Weight)?;
        Ok(Self { weight, path })
    }

    pub fn named_tensors(&self) -> Vec<(TensorPath, Tensor)> {
        vec![(self.path.pp(WEIGHT), self.weight.clone())]
    }
}

/// `y = x Wᵀ + b` with `W` of shape `(out, in)` as in PyTorch.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub path: TensorPath,
}

impl Linear {
    /// Weight `(out, in)`, then bias `(out)`.
    pub fn build(
        path: TensorPath,
        out: usize,
        inp: usize,
        source: &mut TensorSource<'_>,
    ) -> Result<Self> {
        let weight = take(source, path.pp(WEIGHT), &[out, inp], Role::Weight)?;
        let bias = take(source, path.pp(BIAS), &[out], Role::Bias)?;
        Ok(Self {
            weight,
            bias: Some(bias),
            path,
        })
    }

    pub fn named_tensors(&self) -> Vec<(TensorPath, Tensor)> {
        let mut out = vec![(self.path.pp(WEIGHT), self.weight.clone())];
        if let Some(b) = &self.bias {
            out.push((self.path.pp(BIAS), b.clone()));
        }
        out
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        // As a 2-D matmul on the flattened rows: candle's backward computes the weight's gradient
        // even when it is frozen, and for a broadcast weight that is one (in, out) matrix per
        // batch element, summed afterwards; flat, it is a single (in, out) product.
        let dims = xs.dims();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap_or(&mut 0) = self.weight.dim(0)?;
        let flat = xs.reshape((rows, dims[dims.len() - 1]))?;
        let y = if self.weight.track_op() || !self.weight.device().is_cpu() {
            flat.matmul(&self.weight.t()?)?
        } else {
            flat.contiguous()?
                .apply_op1_arc(std::sync::Arc::new(Box::new(FrozenMatmul {
                    weight: self.weight.clone(),
                })))?
        };
        let y = y.reshape(out_dims)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x Wᵀ` for a frozen `W`: candle's matmul backward also computes `∂L/∂W` (a third of a
/// linear layer's cost) even when `W` is not trained, so frozen projections go through this op
/// whose backward returns only `∂L/∂x = ∂L/∂y · W`. CPU only; other devices use the plain matmul.
struct FrozenMatmul {
    weight: Tensor,
}

impl candle_core::CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let data = storage.as_slice::<f32>()?;
        let (lo, hi) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("frozen-matmul needs a contiguous input".into())
        })?;
        let x = Tensor::from_slice(&data[lo..hi], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.weight.t()?)?;
        let shape = y.shape().clone();
        Ok((
            candle_core::CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?),
            shape,
        ))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.weight)?))
    }
}

/// Layer norm from tensor ops, so it has a backward pass.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
    pub path: TensorPath,
}

impl LayerNorm {
    /// Gain `(hidden)`, then bias `(hidden)`.
    pub fn build(
        path: TensorPath,
        hidden: usize,
        eps: f64,
        source: &mut TensorSource<'_>,
    ) -> Result<Self> {
        let weight = take(source, path.pp(WEIGHT), &[hidden], Role::Gain)?;
        let bias = take(source, path.pp(BIAS), &[hidden], Role::Bias)?;
        Ok(Self {
            weight,
            bias,
            eps,
            path,
        })
    }

    pub fn named_tensors(&self) -> Vec<(TensorPath, Tensor)> {
        vec![
            (self.path.pp(WEIGHT), self.weight.clone()),
            (self.path.pp(BIAS), self.bias.clone()),
        ]
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_matmul_gradient_matches_the_plain_matmul() {
        let dev = Device::Cpu;
        let w = Tensor::arange(0f32, 12.0, &dev)
            .unwrap()
            .reshape((3, 4))
            .unwrap()
            .affine(0.1, -0.5)
            .unwrap();
        let x = candle_core::Var::from_tensor(
            &Tensor::arange(0f32, 8.0, &dev)
                .unwrap()
                .reshape((1, 2, 4))
                .unwrap()
                .cos()
                .unwrap(),
        )
        .unwrap();
        let frozen = Linear {
            weight: w.clone(),
            bias: None,
            path: TensorPath::root(),
        };
        let plain = Linear {
            weight: candle_core::Var::from_tensor(&w)
                .unwrap()
                .as_tensor()
                .clone(),
            bias: None,
            path: TensorPath::root(),
        };
        let (yf, yp) = (frozen.forward(&x).unwrap(), plain.forward(&x).unwrap());
        assert_eq!(yf.to_vec3::<f32>().unwrap(), yp.to_vec3::<f32>().unwrap());
        let gf = yf.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gp = yp.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (
            gf.get(x.as_tensor()).unwrap(),
            gp.get(x.as_tensor()).unwrap(),
        );
        assert_eq!(a.to_vec3::<f32>().unwrap(), b.to_vec3::<f32>().unwrap());
        assert!(
            gf.get(&w).is_none(),
            "no gradient is computed for the frozen weight"
        );
    }
}
