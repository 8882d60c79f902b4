//! Fused CPU kernels, each with its own backward pass, for the three elementwise-heavy pieces of
//! a BERT layer: layer norm, the row softmax of attention, and GELU (erf form); and attention's
//! batched matrix products spread over the threads ([`matmul`]).
//!
//! Built from candle's tensor ops, these are 9–20 small ops each (every one a fresh buffer and a
//! pass over memory, and in the backward a zero tensor per node that the gradient is added to),
//! and candle's erf is a scalar `libm` call: together about half of a training step. candle-nn's
//! own fused layer norm and softmax have no backward (TOOLCHAIN.md's trap), so these ops write
//! theirs. Each computes in one pass per row, reductions in a fixed order (rows are cut into
//! fixed chunks, partial sums added in chunk order), so a result does not depend on the number of
//! threads. Off the CPU the tensor-op form ([`reference`]) runs; it is also the oracle in tests.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor, D};
use rayon::prelude::*;

/// Elements per parallel task: below this a row range runs on one thread.
const GRAIN: usize = 1 << 15;

/// `e^x` in f32: Cody–Waite reduction to `r ∈ [−ln2/2, ln2/2]`, a degree-7 Taylor polynomial
/// (truncation below 6e-9 relative) and an exponent shift; branch-free so loops vectorise. Inputs
/// are clamped to [−87.3, 88], where the result stays a normal float: below, it returns about
/// 1e-38 where `expf` returns a smaller number or 0.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.3, 88.0);
    let k = (x * LOG2E + ROUND) - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// `erf(z)` for `z ≥ 0` given `e = e^{−z²}` (Abramowitz & Stegun 7.1.26: absolute error below
/// 1.5e-7).
#[inline(always)]
fn erf_nonneg(z: f32, e: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    1.0 - poly * e
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π)
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Φ(x) (the standard normal CDF) and φ(x) (its density) at once, sharing `e^{−x²/2}`.
#[inline(always)]
fn phi(x: f32) -> (f32, f32) {
    let e = exp_f32(-0.5 * x * x);
    let erf = erf_nonneg(x.abs() * FRAC_1_SQRT_2, e);
    let erf = if x < 0.0 { -erf } else { erf };
    (0.5 * (1.0 + erf), INV_SQRT_2PI * e)
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    let (lo, hi) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what} needs a contiguous input")))?;
    Ok(&data[lo..hi])
}

/// Rows per parallel task for rows of `width` elements.
fn rows_per_task(width: usize) -> usize {
    (GRAIN / width.max(1)).max(1)
}

/// `f(x_chunk, y_chunk)` over fixed chunks of whole rows, in parallel.
fn map_rows(x: &[f32], width: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    let chunk = rows_per_task(width) * width;
    y.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(y, x)| f(x, y));
    y
}

/// `f(a_chunk, b_chunk, out_chunk)` over fixed chunks of whole rows of two inputs, in parallel.
fn map_rows2(
    a: &[f32],
    b: &[f32],
    width: usize,
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; a.len()];
    let chunk = rows_per_task(width) * width;
    out.par_chunks_mut(chunk)
        .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
        .for_each(|(out, (a, b))| f(a, b, out));
    out
}

fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1)
}

// ---------------------------------------------------------------------------------------------
// GELU

struct Gelu;
struct GeluGrad;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, self.name())?;
        let y = map_rows(x, 1, |x, y| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x * phi(x).0;
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&dy.contiguous()?, &GeluGrad)?))
    }
}

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "fused-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, dy) = (
            contiguous(s1, l1, self.name())?,
            contiguous(s2, l2, self.name())?,
        );
        let dx = map_rows2(x, dy, 1, |x, dy, dx| {
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                let (cdf, pdf) = phi(x);
                *dx = dy * (cdf + x * pdf);
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax over the last dimension

struct Softmax;
struct SoftmaxGrad;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, self.name())?;
        let n = last_dim(l);
        let y = map_rows(x, n, |x, y| {
            for (y, x) in y.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
                let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = exp_f32(x - m);
                    sum += *y;
                }
                let inv = 1.0 / sum;
                y.iter_mut().for_each(|y| *y *= inv);
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&dy.contiguous()?, &SoftmaxGrad)?))
    }
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "fused-softmax-grad"
    }

    /// `dx = y ⊙ (dy − ⟨dy, y⟩)` per row.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (y, dy) = (
            contiguous(s1, l1, self.name())?,
            contiguous(s2, l2, self.name())?,
        );
        let n = last_dim(l1);
        let dx = map_rows2(y, dy, n, |y, dy, dx| {
            for ((dx, y), dy) in dx
                .chunks_exact_mut(n)
                .zip(y.chunks_exact(n))
                .zip(dy.chunks_exact(n))
            {
                let dot: f32 = y.iter().zip(dy).map(|(y, d)| y * d).sum();
                for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
                    *dx = y * (dy - dot);
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// Layer norm over the last dimension

struct LayerNorm {
    eps: f32,
}

struct LayerNormGrad {
    eps: f32,
}

/// Mean and 1/√(var + eps) of one row (two passes, f64 sums).
#[inline]
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1, self.name())?;
        let (gain, bias) = (
            contiguous(s2, l2, self.name())?,
            contiguous(s3, l3, self.name())?,
        );
        let n = last_dim(l1);
        let y = map_rows(x, n, |x, y| {
            for (y, x) in y.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
                let (mean, rstd) = moments(x, self.eps);
                for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gain).zip(bias) {
                    *y = (x - mean) * rstd * g + b;
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        bias: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = gain.elem_count();
        let rows = x.elem_count() / n;
        // One buffer: dx (rows × n), then d gain (n), then d bias (n).
        let all = x.apply_op3_no_bwd(gain, &dy.contiguous()?, &LayerNormGrad { eps: self.eps })?;
        let dx = all.narrow(0, 0, rows * n)?.reshape(x.shape())?;
        let dgain = gain
            .track_op()
            .then(|| all.narrow(0, rows * n, n))
            .transpose()?;
        let dbias = bias
            .track_op()
            .then(|| all.narrow(0, rows * n + n, n))
            .transpose()?;
        Ok((Some(dx), dgain, dbias))
    }
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "fused-layer-norm-grad"
    }

    /// With `x̂ = (x − mean)·rstd` and `g = dy ⊙ gain`: `dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂))`;
    /// `d gain = Σ_rows dy ⊙ x̂`, `d bias = Σ_rows dy`, summed in f64 per chunk, chunks in order.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1, self.name())?;
        let gain = contiguous(s2, l2, self.name())?;
        let dy = contiguous(s3, l3, self.name())?;
        let n = gain.len();
        let chunk = rows_per_task(n) * n;
        let mut out = vec![0f32; x.len() + 2 * n];
        let (dx, _) = out.split_at_mut(x.len());
        let partials: Vec<Vec<f64>> = dx
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(dy.par_chunks(chunk)))
            .map(|(dx, (x, dy))| {
                let mut part = vec![0f64; 2 * n];
                let (pg, pb) = part.split_at_mut(n);
                let mut xhat = vec![0f32; n];
                for ((dx, x), dy) in dx
                    .chunks_exact_mut(n)
                    .zip(x.chunks_exact(n))
                    .zip(dy.chunks_exact(n))
                {
                    let (mean, rstd) = moments(x, self.eps);
                    let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                    for (i, (&x, &dy)) in x.iter().zip(dy).enumerate() {
                        let xh = (x - mean) * rstd;
                        xhat[i] = xh;
                        let g = dy * gain[i];
                        sum_g += g;
                        sum_gx += g * xh;
                        pg[i] += (dy * xh) as f64;
                        pb[i] += dy as f64;
                    }
                    let (mg, mgx) = (sum_g / n as f32, sum_gx / n as f32);
                    for (i, dx) in dx.iter_mut().enumerate() {
                        *dx = rstd * (dy[i] * gain[i] - mg - xhat[i] * mgx);
                    }
                }
                part
            })
            .collect();
        let mut sums = vec![0f64; 2 * n];
        for part in &partials {
            for (s, p) in sums.iter_mut().zip(part) {
                *s += p;
            }
        }
        for (o, s) in out[x.len()..].iter_mut().zip(sums) {
            *o = s as f32;
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

// ---------------------------------------------------------------------------------------------
// Batched matrix product over the heads of attention

/// `C[i] = A[i] · B[i]` for every batch index `i` (the batch dimensions flattened). candle's CPU
/// matmul runs the batch as a loop of gemm calls one after the other; attention's products are
/// 16 × 12 = 192 small ones (48 × 48 × 32) per call, too small for gemm to split, so one core
/// works while the other waits. Here each product is one single-threaded gemm call and the batch
/// is spread over the threads: every product is computed the same way on any thread count.
struct BatchedMatmul;

/// A rank ≥ 2 f32 operand seen as a batch of matrices: batch count and stride, rows, columns,
/// row and column strides, and the offset of the first element.
struct Batch {
    count: usize,
    stride: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    offset: usize,
}

impl Batch {
    /// The batch dimensions must flatten into one stride (true of a contiguous tensor and of one
    /// with its last two dimensions transposed).
    fn of(l: &Layout, what: &str) -> candle_core::Result<Batch> {
        let (dims, strides) = (l.dims(), l.stride());
        let r = dims.len();
        if r < 2 {
            return Err(candle_core::Error::Msg(format!(
                "{what}: rank {r} is not a batch of matrices"
            )));
        }
        // Dimensions of size 1 take no steps, whatever their stride says.
        let batch: Vec<(usize, usize)> = (0..r - 2)
            .filter(|&i| dims[i] > 1)
            .map(|i| (dims[i], strides[i]))
            .collect();
        if batch.windows(2).any(|w| w[0].1 != w[1].1 * w[1].0) {
            return Err(candle_core::Error::Msg(format!(
                "{what}: batch dimensions {dims:?} with strides {strides:?} do not flatten"
            )));
        }
        let count: usize = batch.iter().map(|d| d.0).product();
        let stride = batch.last().map_or(0, |d| d.1);
        Ok(Batch {
            count,
            stride,
            rows: dims[r - 2],
            cols: dims[r - 1],
            rs: strides[r - 2],
            cs: strides[r - 1],
            offset: l.start_offset(),
        })
    }

    /// One past the largest index the batch reads.
    fn end(&self) -> usize {
        if self.count == 0 || self.rows == 0 || self.cols == 0 {
            return self.offset;
        }
        self.offset
            + (self.count - 1) * self.stride
            + (self.rows - 1) * self.rs
            + (self.cols - 1) * self.cs
            + 1
    }
}

impl CustomOp2 for BatchedMatmul {
    fn name(&self) -> &'static str {
        "batched-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = (s1.as_slice::<f32>()?, s2.as_slice::<f32>()?);
        let (la, lb) = (Batch::of(l1, self.name())?, Batch::of(l2, self.name())?);
        let (r1, r2) = (l1.dims().len(), l2.dims().len());
        if r1 != r2 || l1.dims()[..r1 - 2] != l2.dims()[..r2 - 2] || la.cols != lb.rows {
            return Err(candle_core::Error::Msg(format!(
                "{}: shapes {:?} and {:?} do not multiply",
                self.name(),
                l1.dims(),
                l2.dims()
            )));
        }
        if la.end() > a.len() || lb.end() > b.len() {
            return Err(candle_core::Error::Msg(format!(
                "{}: a layout reaches past its storage",
                self.name()
            )));
        }
        let (m, k, n) = (la.rows, la.cols, lb.cols);
        let mut c = vec![0f32; la.count * m * n];
        if m * n > 0 {
            c.par_chunks_mut(m * n).enumerate().for_each(|(i, c)| {
                // SAFETY: c is one m × n row-major block; the reads of A[i] (m × k) and B[i]
                // (k × n) at their strides stay below `end()`, checked against the slices above.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr().add(la.offset + i * la.stride),
                        la.cs as isize,
                        la.rs as isize,
                        b.as_ptr().add(lb.offset + i * lb.stride),
                        lb.cs as isize,
                        lb.rs as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            });
        }
        let mut dims = l1.dims().to_vec();
        dims[r1 - 1] = n;
        Ok((CpuStorage::F32(c), Shape::from(dims)))
    }

    /// `∂A = ∂C · Bᵀ`, `∂B = Aᵀ · ∂C`, both by this op on transposed views (no copies).
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _c: &Tensor,
        dc: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dc = dc.contiguous()?;
        let da = dc.apply_op2_no_bwd(&b.t()?, &BatchedMatmul)?;
        let db = a.t()?.apply_op2_no_bwd(&dc, &BatchedMatmul)?;
        Ok((Some(da), Some(db)))
    }
}

// ---------------------------------------------------------------------------------------------
// The ops as functions

fn on_cpu(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == candle_core::DType::F32
}

/// `0.5·x·(1 + erf(x/√2))`, elementwise.
pub fn gelu_erf(xs: &Tensor) -> candle_core::Result<Tensor> {
    if !on_cpu(xs) {
        return reference::gelu_erf(xs);
    }
    xs.contiguous()?.apply_op1(Gelu)
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(xs: &Tensor) -> candle_core::Result<Tensor> {
    if !on_cpu(xs) {
        return reference::softmax_last_dim(xs);
    }
    xs.contiguous()?.apply_op1(Softmax)
}

/// The batched matrix product `a · b` of two tensors with the same batch dimensions (rank ≥ 3):
/// on the CPU one single-threaded gemm per matrix, the batch spread over the threads; elsewhere
/// candle's `matmul`.
pub fn matmul(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if !(on_cpu(a) && on_cpu(b)) || a.rank() < 3 {
        return a.matmul(b);
    }
    a.apply_op2(b, BatchedMatmul)
}

/// Layer norm over the last dimension with gain and bias `(hidden)`.
pub fn layer_norm(
    xs: &Tensor,
    gain: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    if !on_cpu(xs) {
        return reference::layer_norm(xs, gain, bias, eps);
    }
    xs.contiguous()?.apply_op3(
        &gain.contiguous()?,
        &bias.contiguous()?,
        LayerNorm { eps: eps as f32 },
    )
}

/// The same three functions from candle's tensor ops (each with candle's own backward): what runs
/// off the CPU, and the oracle of the fused kernels' tests.
pub mod reference {
    use super::*;

    pub fn gelu_erf(xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.gelu_erf()
    }

    /// candle-nn's `ops::softmax` (the fused `softmax_last_dim` has no backward).
    pub fn softmax_last_dim(xs: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::softmax(xs, D::Minus1)
    }

    pub fn layer_norm(
        xs: &Tensor,
        gain: &Tensor,
        bias: &Tensor,
        eps: f64,
    ) -> candle_core::Result<Tensor> {
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
        normed.broadcast_mul(gain)?.broadcast_add(bias)
    }
}
