//! The layers of a BERT-family encoder, built the way candle builds them: each takes the path it
//! lives at and fetches its tensors, named `{path}.weight` and `{path}.bias` as PyTorch names
//! them, from a [`TensorSource`] (a checkpoint, trainable variables or random draws). A layer
//! keeps its path, so listing its tensors by name derives from the one place they were named.
//!
//! The layer norm is `fused::layer_norm` (on the CPU) or tensor ops: candle-nn's fused `LayerNorm` has no backward pass
//! (TOOLCHAIN.md), so gradients would silently stop at it.

use candle_core::{DType, Module, Tensor};

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
        let frozen = !self.weight.track_op() && !self.bias.as_ref().is_some_and(|b| b.track_op());
        if frozen && self.weight.device().is_cpu() && self.weight.dtype() == DType::F32 {
            let op = FrozenLinear {
                weight: self.weight.contiguous()?,
                bias: self.bias.as_ref().map(|b| b.contiguous()).transpose()?,
            };
            return flat
                .contiguous()?
                .apply_op1_arc(std::sync::Arc::new(Box::new(op)))?
                .reshape(out_dims);
        }
        let y = flat.matmul(&self.weight.t()?)?.reshape(out_dims)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x Wᵀ + b` for a frozen `W` and `b`, on the CPU: one gemm call that reads the input where it
/// lies and starts from the bias rows (candle's matmul would copy nothing less than the input and
/// then add the bias in a second pass), and a backward that returns only `∂L/∂x = ∂L/∂y · W`:
/// candle's matmul backward also computes `∂L/∂W` (a third of a linear layer's cost) even when
/// `W` is not trained.
struct FrozenLinear {
    /// `(out, in)`, contiguous.
    weight: Tensor,
    /// `(out)`, contiguous.
    bias: Option<Tensor>,
}

/// The contiguous f32 data of a CPU tensor, read in place.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (lo, hi) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("frozen-linear needs contiguous tensors".into()))?;
    match &*storage {
        candle_core::Storage::Cpu(cpu) => Ok(f(&cpu.as_slice::<f32>()?[lo..hi])),
        _ => candle_core::bail!("frozen-linear runs on the CPU only"),
    }
}

impl candle_core::CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let data = storage.as_slice::<f32>()?;
        let (lo, hi) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("frozen-linear needs a contiguous input".into())
        })?;
        let x = &data[lo..hi];
        let (out, inp) = self.weight.dims2()?;
        let rows = x.len() / inp.max(1);
        let mut y = vec![0f32; rows * out];
        let read_dst = match &self.bias {
            Some(b) => {
                with_f32(b, |b| {
                    for row in y.chunks_exact_mut(out) {
                        row.copy_from_slice(b);
                    }
                })?;
                true
            }
            None => false,
        };
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        with_f32(&self.weight, |w| {
            // SAFETY: y is rows × out, x rows × inp and w out × inp, all row-major and
            // contiguous; the strides below address exactly those elements.
            unsafe {
                gemm::gemm(
                    rows,
                    out,
                    inp,
                    y.as_mut_ptr(),
                    1,
                    out as isize,
                    read_dst,
                    x.as_ptr(),
                    1,
                    inp as isize,
                    w.as_ptr(),
                    inp as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                )
            }
        })?;
        Ok((candle_core::CpuStorage::F32(y), (rows, out).into()))
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

/// Layer norm with a backward pass (candle-nn's fused one has none: TOOLCHAIN.md).
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
    /// The fused kernel on the CPU (`fused::layer_norm`, with its own backward), candle's tensor
    /// ops elsewhere.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        crate::fused::layer_norm(xs, &self.weight, &self.bias, self.eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn frozen_linear_matches_the_plain_linear() {
        let dev = Device::Cpu;
        let w = Tensor::arange(0f32, 12.0, &dev)
            .unwrap()
            .reshape((3, 4))
            .unwrap()
            .affine(0.1, -0.5)
            .unwrap();
        let b = Tensor::new(&[0.3f32, -1.0, 2.5], &dev).unwrap();
        let x = candle_core::Var::from_tensor(
            &Tensor::arange(0f32, 40.0, &dev)
                .unwrap()
                .reshape((2, 5, 4))
                .unwrap()
                .cos()
                .unwrap(),
        )
        .unwrap();
        let frozen = Linear {
            weight: w.clone(),
            bias: Some(b.clone()),
            path: TensorPath::root(),
        };
        let plain = Linear {
            weight: candle_core::Var::from_tensor(&w)
                .unwrap()
                .as_tensor()
                .clone(),
            bias: Some(b.clone()),
            path: TensorPath::root(),
        };
        let (yf, yp) = (frozen.forward(&x).unwrap(), plain.forward(&x).unwrap());
        let close = |a: &Tensor, b: &Tensor| {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{x} vs {y}");
            }
        };
        assert_eq!(yf.dims(), &[2, 5, 3]);
        close(&yf, &yp);
        let gf = yf.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gp = yp.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        close(
            gf.get(x.as_tensor()).unwrap(),
            gp.get(x.as_tensor()).unwrap(),
        );
        assert!(
            gf.get(&w).is_none() && gf.get(&b).is_none(),
            "no gradient is computed for the frozen weight and bias"
        );
    }
}
