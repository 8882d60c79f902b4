//! The batched kernel of `Model::objective_and_grad` and `Model::predict`: the same model as
//! the per-sample reference loop in `model.rs`, computed over blocks of [`LANES`] samples at once.
//!
//! # Layout
//! Samples are taken in blocks of [`LANES`] = 8. A block is transposed into structure-of-arrays
//! form (each input coordinate contiguous over the block), and every per-atom quantity (score,
//! softmax weight, expert output, gradient contribution) is a `[f64; 8]`, one lane per sample.
//! Gradient accumulators are also per lane, and are reduced across lanes only at the end of a
//! chunk of [`CHUNK`] samples.
//!
//! # The same bits on every machine
//! A fit must not depend on which instruction set the dispatcher picks, so nothing in the
//! arithmetic depends on the register width:
//! - the block width is fixed at 8 (one AVX-512 register, two AVX2 ones, four SSE2 ones);
//! - every fused multiply-add is written as `f64::mul_add` (one rounding, in hardware or in libm);
//!   plain products and sums are never contracted (Rust does not contract floating point);
//! - `exp` is the polynomial [`exp_lane`] on every path, built from `+`, `×`, `mul_add`, and
//!   bit operations only;
//! - every reduction has a fixed order: lanes `0..8` in turn at the end of a chunk, chunks in index
//!   order at the end of a call. The chunk boundaries depend on `n` alone, never on the number of
//!   threads, so a call gives the same bits with one thread or many.
//!
//! The instruction-set variants ([`Isa`]) are the one generic body compiled under different
//! `#[target_feature]`s; runtime detection picks the widest available. `tests/kernel.rs` forces
//! each available variant and compares the bits.
//!
//! # Where the time goes
//! Measured on this workspace's 2-core AVX2 VM with `examples/kernel_time.rs` (best of 300 calls,
//! lora atoms, m = 2, n = 10⁴, one thread; two builds run alternately, since the VM's speed
//! drifts by tens of percent within minutes). The reference loop takes about 3.7 ms.
//! - Before the changes below: 577 µs. About a third of it was in [`exp_lane`] (an affine stub
//!   in its place took a call from 0.78 to 0.53 ms in an earlier, noisier measurement).
//! - 483 µs: each block's softmax exps are taken side by side ([`exp_many`]: the Horner steps of
//!   three arguments interleaved, so their 13-deep chains of multiply-adds overlap).
//! - 435 µs: full blocks are loaded without per-value padding tests.
//! - 414 µs: softmax weights are normalised straight from the exps, and each head's output is
//!   summed in a register.
//!
//! Each of these moves no bit: every lane sees the same operations in the same order, and
//! `tests/kernel.rs` pins the bits by digest.
//!
//! Tried and not kept, all bit-preserving and all slower:
//! - groups of 2 or 4 exps (506, 565 µs against 483);
//! - a fixed-size, fully unrolled exp group (511–579 µs);
//! - two blocks' forward passes side by side, backward still block by block (488–558 µs
//!   against 440);
//! - staging eight blocks' gradient terms, so that each accumulator stays in a register
//!   (486 µs against 436);
//! - literal head counts, and exact-length slices so that the bounds checks fold away
//!   (720–800 µs: the fully unrolled body ran slower).
//!
//! The literal-size copies from `with_sizes` gain nothing measurable on this machine: 433 µs
//! without the (S, m, d, q) = (2, 2, 2, 2) copy, 434 µs with it. They are kept: they cost only
//! compile time, and other CPUs may differ.
//!
//! # Threads
//! The chunks of one call run on the current rayon pool. Inside a sweep that already occupies
//! every thread they run on the calling thread; at the tail of a sweep, or for a single large fit,
//! idle threads take chunks.
use crate::atoms::Atoms;
use rayon::prelude::*;
use std::sync::OnceLock;

/// Samples per block: the SIMD lane count of every per-sample quantity.
pub const LANES: usize = 8;
/// Samples per chunk: the unit of parallel work and of the lane reduction (a multiple of
/// [`LANES`]). Fixed, so results never depend on the thread count.
pub const CHUNK: usize = 2048;

type L = [f64; LANES];
const ZERO: L = [0.0; LANES];

/// An instruction-set variant of the kernel. All give the same bits; they differ in speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// The target's baseline (SSE2 on x86-64, NEON on aarch64); `mul_add` may be a libm call.
    Baseline,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// x86-64 with AVX-512F.
    Avx512,
}

impl Isa {
    /// Every variant this CPU can run, the baseline first (detected once: every objective
    /// call checks its variant against this list).
    pub fn available() -> &'static [Isa] {
        static AVAILABLE: OnceLock<Vec<Isa>> = OnceLock::new();
        AVAILABLE.get_or_init(|| {
            let mut v = vec![Isa::Baseline];
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    v.push(Isa::Avx2);
                }
                if is_x86_feature_detected!("avx512f") {
                    v.push(Isa::Avx512);
                }
            }
            v
        })
    }

    /// The widest variant this CPU can run.
    pub fn best() -> Isa {
        *Isa::available()
            .last()
            .expect("the baseline is always there")
    }
}

/// The frozen and fitted matrices of one call, with the sizes the kernel loops over.
pub(crate) struct Prepared<'a> {
    pub heads: usize,
    pub slots: usize,
    pub m: usize,
    pub d: usize,
    pub q: usize,
    /// `P + ΔQ` per atom (`d × d`), `E + ΔV` per atom (`q × d`), `c` per atom.
    pub gate: &'a [f64],
    pub value: &'a [f64],
    pub c: &'a [f64],
    /// The outer gate `γ` (`H × d`), if on.
    pub gamma: Option<&'a [f64]>,
    /// The gate's query is slot `s`'s own token instead of `u` (the self-attention variant).
    pub self_attention: bool,
}

impl Prepared<'_> {
    fn atoms(&self) -> usize {
        self.heads * self.slots * self.m
    }
    fn width(&self) -> usize {
        (self.slots + 1) * self.d
    }
}

/// The sums of one chunk (unscaled): `Σ‖r‖²` and `Σ ∂‖r‖²/∂(ΔQ, ΔV, c)`.
struct Sums {
    total: f64,
    dq: Vec<f64>,
    dv: Vec<f64>,
    c: Vec<f64>,
}

/// Per-block intermediate values and per-lane accumulators of one chunk.
struct Block {
    xs: Vec<L>,
    ys: Vec<L>,
    mask: L,
    pi: Vec<L>,
    uv: Vec<L>,
    /// The exponents of every head's softmax (sink first), then their `exp`.
    ex: Vec<L>,
    prob: Vec<L>,
    y: Vec<L>,
    fh: Vec<L>,
    f: Vec<L>,
    /// `∂‖r‖²/∂f` per output.
    g: Vec<L>,
    acc_total: L,
    acc_dq: Vec<L>,
    acc_dv: Vec<L>,
    acc_c: Vec<L>,
}

impl Block {
    fn new(p: &Prepared, grad: bool) -> Block {
        let (k, d, q) = (p.atoms(), p.d, p.q);
        let g = |len: usize| if grad { vec![ZERO; len] } else { Vec::new() };
        Block {
            xs: vec![ZERO; p.width()],
            ys: vec![ZERO; q],
            mask: ZERO,
            pi: vec![ZERO; p.heads],
            uv: vec![ZERO; p.slots * d * d],
            ex: vec![ZERO; p.heads * (p.slots * p.m + 1)],
            prob: vec![ZERO; k],
            y: vec![ZERO; k * q],
            fh: vec![ZERO; p.heads * q],
            f: vec![ZERO; q],
            g: vec![ZERO; q],
            acc_total: ZERO,
            acc_dq: g(k * d * d),
            acc_dv: g(k * q * d),
            acc_c: g(k),
        }
    }

    /// Transpose rows `start..start+len` (`len ≤ 8`) of `x` (and `y`) into lanes; padding lanes
    /// hold zeros and a zero mask.
    #[inline(always)]
    fn load(&mut self, x: &[f64], y: Option<&[f64]>, w: usize, q: usize, start: usize, len: usize) {
        if len == LANES {
            // A full block (all but the last of a chunk): no padding, no per-value test.
            self.mask = [1.0; LANES];
            let rows = &x[start * w..(start + LANES) * w];
            for (l, row) in rows.chunks_exact(w).enumerate() {
                for (xs, v) in self.xs.iter_mut().zip(row) {
                    xs[l] = *v;
                }
            }
            if let Some(y) = y {
                let rows = &y[start * q..(start + LANES) * q];
                for (l, row) in rows.chunks_exact(q).enumerate() {
                    for (ys, v) in self.ys.iter_mut().zip(row) {
                        ys[l] = *v;
                    }
                }
            }
            return;
        }
        for l in 0..LANES {
            let live = l < len;
            self.mask[l] = if live { 1.0 } else { 0.0 };
            for (col, xs) in self.xs.iter_mut().enumerate() {
                xs[l] = if live { x[(start + l) * w + col] } else { 0.0 };
            }
            if let Some(y) = y {
                for (o, ys) in self.ys.iter_mut().enumerate() {
                    ys[l] = if live { y[(start + l) * q + o] } else { 0.0 };
                }
            }
        }
    }
}

#[inline(always)]
fn fma(a: L, b: L, c: L) -> L {
    let mut o = ZERO;
    for l in 0..LANES {
        o[l] = a[l].mul_add(b[l], c[l]);
    }
    o
}

#[inline(always)]
fn fma_s(a: f64, b: L, c: L) -> L {
    let mut o = ZERO;
    for l in 0..LANES {
        o[l] = a.mul_add(b[l], c[l]);
    }
    o
}

#[inline(always)]
fn mul(a: L, b: L) -> L {
    let mut o = ZERO;
    for l in 0..LANES {
        o[l] = a[l] * b[l];
    }
    o
}

#[inline(always)]
fn sub(a: L, b: L) -> L {
    let mut o = ZERO;
    for l in 0..LANES {
        o[l] = a[l] - b[l];
    }
    o
}

#[inline(always)]
fn add(a: L, b: L) -> L {
    let mut o = ZERO;
    for l in 0..LANES {
        o[l] = a[l] + b[l];
    }
    o
}

#[inline(always)]
fn max(a: L, b: L) -> L {
    let mut o = ZERO;
    for l in 0..LANES {
        o[l] = if b[l] > a[l] { b[l] } else { a[l] };
    }
    o
}

/// `exp` of every value of `v`, in place: [`exp_lane`] lane by lane, with the Horner steps of up
/// to [`EXP_GROUP`] arguments interleaved, so that their dependency chains overlap instead of
/// running one after another. Each lane sees exactly [`exp_lane`]'s operations in its order,
/// so the bits are [`exp_lane`]'s.
#[inline(always)]
fn exp_many(v: &mut [L]) {
    for grp in v.chunks_mut(EXP_GROUP) {
        let n = grp.len();
        let mut shifted = [ZERO; EXP_GROUP];
        let mut r = [ZERO; EXP_GROUP];
        let mut p = [[EXP_C[0]; LANES]; EXP_GROUP];
        for a in 0..n {
            for l in 0..LANES {
                (shifted[a][l], r[a][l]) = exp_reduce(grp[a][l]);
            }
        }
        for c in &EXP_C[1..] {
            for a in 0..n {
                for l in 0..LANES {
                    p[a][l] = p[a][l].mul_add(r[a][l], *c);
                }
            }
        }
        for a in 0..n {
            for l in 0..LANES {
                grp[a][l] = exp_finish(grp[a][l], shifted[a][l], p[a][l]);
            }
        }
    }
}

/// Arguments whose `exp` [`exp_many`] evaluates side by side: 3 arguments of 8 lanes are 6
/// AVX2 registers of polynomial. Measured on AVX2 (m = 2, n = 10⁴): 2 or 4 were slower, and so
/// was a fully unrolled group of fixed size.
const EXP_GROUP: usize = 3;

/// 1/13!, 1/12!, ..., 1/1!, 1/0!, each the correctly rounded quotient: the Taylor coefficients
/// of `e^r` in Horner order.
const EXP_C: [f64; 14] = [
    1.0 / 6227020800.0,
    1.0 / 479001600.0,
    1.0 / 39916800.0,
    1.0 / 3628800.0,
    1.0 / 362880.0,
    1.0 / 40320.0,
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];
const EXP_SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
const EXP_MIN: f64 = -708.0;

/// `exp(x)` for `x ≤ 0` (softmax arguments after the max shift), to about 1 ulp; 0 below −708,
/// NaN for NaN. Cody–Waite reduction `x = k ln 2 + r`, `|r| ≤ ln 2 / 2`, with `k` rounded by the
/// `1.5·2⁵²` trick (round to nearest even, exact for `|k| < 2⁵¹`); `e^r` by its Taylor polynomial
/// to degree 13 (remainder below 4e-18 relative) in Horner form with `mul_add`; `2^k` from bits.
/// Every operation is `+`, `×`, `mul_add` or an integer operation, so every path gives the same
/// bits, and the loop over lanes vectorises.
#[inline(always)]
pub fn exp_lane(x: f64) -> f64 {
    let (shifted, r) = exp_reduce(x);
    let mut p = EXP_C[0];
    for c in &EXP_C[1..] {
        p = p.mul_add(r, *c);
    }
    exp_finish(x, shifted, p)
}

/// The first step of [`exp_lane`]: `k` (held in the low bits of `shifted`) and `r = x − k ln 2`.
#[inline(always)]
fn exp_reduce(x: f64) -> (f64, f64) {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    let xc = if x < EXP_MIN { EXP_MIN } else { x };
    let shifted = xc * LOG2E + EXP_SHIFT;
    let k = shifted - EXP_SHIFT;
    let r = (-k).mul_add(LN2_HI, xc);
    let r = (-k).mul_add(LN2_LO, r);
    (shifted, r)
}

/// The last step of [`exp_lane`]: `e^r · 2^k`, or 0 below the range.
#[inline(always)]
fn exp_finish(x: f64, shifted: f64, p: f64) -> f64 {
    // The integer k sits in the low bits of `shifted`: 2^k = bits((k + 1023) << 52).
    let ki = (shifted.to_bits() as i64).wrapping_sub(EXP_SHIFT.to_bits() as i64);
    let two_k = f64::from_bits((ki.wrapping_add(1023) as u64) << 52);
    let e = p * two_k;
    if x < EXP_MIN {
        0.0
    } else {
        e
    }
}

/// The forward pass of one loaded block: `π`, `u v_sᵀ`, scores, softmax weights, expert outputs,
/// per-head outputs `f_h` and `f`, all per lane.
///
/// The sizes are passed in (equal to `p`'s) so that a call with literal sizes compiles to fully
/// unrolled loops; the arithmetic and its order are the same whatever the call.
#[inline(always)]
fn forward(p: &Prepared, z: Sizes, b: &mut Block) {
    let Sizes { slots, m, d, q } = z;
    let heads = p.heads;
    // Separate slices: the compiler then knows the buffers never alias, so their pointers and
    // lengths stay in registers across the stores below.
    let (xs, pi_, uv_, ex, prob, y, fh, f) = (
        &b.xs[..],
        &mut b.pi[..],
        &mut b.uv[..],
        &mut b.ex[..],
        &mut b.prob[..],
        &mut b.y[..],
        &mut b.fh[..],
        &mut b.f[..],
    );
    let (gate, value, cs) = (p.gate, p.value, p.c);
    // Outer weights.
    match p.gamma {
        None => {
            let w = [1.0 / heads as f64; LANES];
            pi_.iter_mut().for_each(|pi| *pi = w);
        }
        Some(g) => {
            let mut mx = [f64::NEG_INFINITY; LANES];
            for h in 0..heads {
                let mut z = ZERO;
                for j in 0..d {
                    z = fma_s(g[h * d + j], xs[j], z);
                }
                pi_[h] = z;
                mx = max(mx, z);
            }
            for pi in pi_.iter_mut() {
                *pi = sub(*pi, mx);
            }
            exp_many(pi_);
            let mut tot = ZERO;
            for pi in pi_.iter() {
                tot = add(tot, *pi);
            }
            for pi in pi_.iter_mut() {
                for l in 0..LANES {
                    pi[l] /= tot[l];
                }
            }
        }
    }
    // u v_sᵀ per slot (v_s v_sᵀ in the self-attention variant: only the query's index moves).
    for s in 0..slots {
        let query = if p.self_attention { (s + 1) * d } else { 0 };
        for a in 0..d {
            for c in 0..d {
                uv_[(s * d + a) * d + c] = mul(xs[query + a], xs[(s + 1) * d + c]);
            }
        }
    }
    for f in f.iter_mut() {
        *f = ZERO;
    }
    // Scores and expert outputs of every head, then the exponents of every head's softmax,
    // sink first (its score is 0), shifted by the head's maximum: `ex` holds
    // `heads × (slots·m + 1)` arguments, whose `exp` is then taken side by side.
    let per = slots * m + 1;
    for h in 0..heads {
        let base = h * slots * m;
        let mut mx = ZERO; // the sink's score
        for s in 0..slots {
            let uv = &uv_[s * d * d..(s + 1) * d * d];
            let v = &xs[(s + 1) * d..(s + 2) * d];
            for i in 0..m {
                let k = base + s * m + i;
                let g = &gate[k * d * d..(k + 1) * d * d];
                let mut sc = [cs[k]; LANES];
                for (gj, uvj) in g.iter().zip(uv) {
                    sc = fma_s(*gj, *uvj, sc);
                }
                ex[h * per + 1 + s * m + i] = sc;
                mx = max(mx, sc);
                let val = &value[k * q * d..(k + 1) * q * d];
                for (o, vrow) in val.chunks_exact(d).enumerate() {
                    let mut acc = ZERO;
                    for (vj, vb) in vrow.iter().zip(v) {
                        acc = fma_s(*vj, *vb, acc);
                    }
                    y[k * q + o] = acc;
                }
            }
        }
        let args = &mut ex[h * per..(h + 1) * per];
        args[0] = sub(ZERO, mx);
        for a in &mut args[1..] {
            *a = sub(*a, mx);
        }
    }
    exp_many(&mut ex[..heads * per]);
    for h in 0..heads {
        let base = h * slots * m;
        let w = &ex[h * per..(h + 1) * per];
        let mut z = w[0];
        for wk in &w[1..] {
            z = add(z, *wk);
        }
        let mut inv = ZERO;
        for l in 0..LANES {
            inv[l] = 1.0 / z[l];
        }
        for (k, wk) in (base..base + slots * m).zip(&w[1..]) {
            prob[k] = mul(*wk, inv);
        }
        for o in 0..q {
            let mut acc = ZERO;
            for k in base..base + slots * m {
                acc = fma(prob[k], y[k * q + o], acc);
            }
            fh[h * q + o] = acc;
        }
        for o in 0..q {
            f[o] = fma(pi_[h], fh[h * q + o], f[o]);
        }
    }
}

/// The residual of a loaded and forwarded block, accumulated into the lane sums: `Σ‖r‖²` and the
/// gradient `∂‖r‖²/∂θ` (THEORY.md §1; see `Model::objective_and_grad` for the formulas).
#[inline(always)]
fn backward(p: &Prepared, z: Sizes, b: &mut Block) {
    let Sizes { slots, m, d, q } = z;
    let heads = p.heads;
    let (xs, ys, mask, pi_, uv_, prob, y, fh, f, g) = (
        &b.xs[..],
        &b.ys[..],
        b.mask,
        &b.pi[..],
        &b.uv[..],
        &b.prob[..],
        &b.y[..],
        &b.fh[..],
        &b.f[..],
        &mut b.g[..],
    );
    let (acc_total, acc_dq, acc_dv, acc_c) = (
        &mut b.acc_total,
        &mut b.acc_dq[..],
        &mut b.acc_dv[..],
        &mut b.acc_c[..],
    );
    for o in 0..q {
        let r = mul(sub(f[o], ys[o]), mask);
        *acc_total = fma(r, r, *acc_total);
        g[o] = add(r, r);
    }
    let gvec = &g[..q];
    for h in 0..heads {
        let pi = pi_[h];
        for s in 0..slots {
            let v = &xs[(s + 1) * d..(s + 2) * d];
            let uv = &uv_[s * d * d..(s + 1) * d * d];
            for i in 0..m {
                let j = (h * slots + s) * m + i;
                let pj = mul(prob[j], pi);
                let mut delta = ZERO;
                for (o, go) in gvec.iter().enumerate() {
                    delta = fma(*go, sub(y[j * q + o], fh[h * q + o]), delta);
                }
                let delta = mul(delta, pj);
                acc_c[j] = add(acc_c[j], delta);
                let dq = &mut acc_dq[j * d * d..(j + 1) * d * d];
                for (acc, x) in dq.iter_mut().zip(uv) {
                    *acc = fma(delta, *x, *acc);
                }
                let dv = &mut acc_dv[j * q * d..(j + 1) * q * d];
                for (row, go) in dv.chunks_exact_mut(d).zip(gvec) {
                    let w = mul(pj, *go);
                    for (acc, vb) in row.iter_mut().zip(v) {
                        *acc = fma(w, *vb, *acc);
                    }
                }
            }
        }
    }
}

/// Sum lanes `0..8` in order.
#[inline(always)]
fn lane_sum(a: &L) -> f64 {
    let mut s = 0.0;
    for v in a {
        s += *v;
    }
    s
}

/// The sizes the inner loops run over. Passed by value, so that a call with literal sizes
/// ([`with_sizes`]) compiles to unrolled loops.
#[derive(Clone, Copy)]
struct Sizes {
    slots: usize,
    m: usize,
    d: usize,
    q: usize,
}

/// Calls `$f(sizes)` with literal sizes for the shapes of the committed experiments (S = 2,
/// m ≤ 3, d = q = 2) and other small `d`, `q`, so each gets its own unrolled copy of the loops,
/// and with the runtime sizes otherwise.
macro_rules! with_sizes {
    ($p:expr, $f:expr) => {{
        let z = |slots, m, d, q| Sizes { slots, m, d, q };
        match ($p.slots, $p.m, $p.d, $p.q) {
            (2, 1, 2, 2) => $f(z(2, 1, 2, 2)),
            (2, 2, 2, 2) => $f(z(2, 2, 2, 2)),
            (2, 3, 2, 2) => $f(z(2, 3, 2, 2)),
            (s, m, 2, 2) => $f(z(s, m, 2, 2)),
            (s, m, 2, 3) => $f(z(s, m, 2, 3)),
            (s, m, 3, 2) => $f(z(s, m, 3, 2)),
            (s, m, 3, 3) => $f(z(s, m, 3, 3)),
            (s, m, d, q) => $f(z(s, m, d, q)),
        }
    }};
}

#[inline(always)]
fn chunk_sums_body(p: &Prepared, x: &[f64], y: &[f64], start: usize, end: usize) -> Sums {
    let mut b = Block::new(p, true);
    #[inline(always)]
    fn run(p: &Prepared, z: Sizes, b: &mut Block, x: &[f64], y: &[f64], range: (usize, usize)) {
        let (mut at, end) = range;
        while at < end {
            let len = LANES.min(end - at);
            b.load(x, Some(y), (z.slots + 1) * z.d, z.q, at, len);
            forward(p, z, b);
            backward(p, z, b);
            at += len;
        }
    }
    with_sizes!(p, |z| run(p, z, &mut b, x, y, (start, end)));
    let fold = |v: &Vec<L>| v.iter().map(lane_sum).collect::<Vec<f64>>();
    Sums {
        total: lane_sum(&b.acc_total),
        dq: fold(&b.acc_dq),
        dv: fold(&b.acc_dv),
        c: fold(&b.acc_c),
    }
}

#[inline(always)]
fn predict_chunk_body(p: &Prepared, x: &[f64], start: usize, end: usize, out: &mut [f64]) {
    let w = p.width();
    let mut b = Block::new(p, false);
    let mut at = start;
    while at < end {
        let len = LANES.min(end - at);
        b.load(x, None, w, p.q, at, len);
        with_sizes!(p, |z| forward(p, z, &mut b));
        for l in 0..len {
            for o in 0..p.q {
                out[(at - start + l) * p.q + o] = b.f[o][l];
            }
        }
        at += len;
    }
}

/// One generic body per instruction set: the same source compiled with more registers.
macro_rules! variants {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name(isa: Isa, $($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                match isa {
                    // SAFETY: `Isa::Avx2`/`Isa::Avx512` are only handed out by
                    // `Isa::available`, after runtime detection of those features; `run_*`
                    // re-checks a caller's choice against it.
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    Isa::Baseline => {}
                }
            }
            let _ = isa;
            $body($($arg),*)
        }
    };
}

variants!(chunk_sums, chunk_sums_body, (p: &Prepared, x: &[f64], y: &[f64], start: usize, end: usize) -> Sums);
variants!(predict_chunk, predict_chunk_body, (p: &Prepared, x: &[f64], start: usize, end: usize, out: &mut [f64]) -> ());

fn checked(isa: Isa) -> Isa {
    assert!(
        Isa::available().contains(&isa),
        "instruction set {isa:?} is not available on this CPU"
    );
    isa
}

/// `(Σ_k ‖Y_k − f(X_k)‖²) / n` and its gradient in the atoms (scaled by `1/n`), batched.
pub(crate) fn objective_and_grad(
    isa: Isa,
    p: &Prepared,
    x: &[f64],
    y: &[f64],
    n: usize,
    grad: &mut Atoms,
) -> f64 {
    let isa = checked(isa);
    let chunks = n.div_ceil(CHUNK);
    let sums: Vec<Sums> = (0..chunks)
        .into_par_iter()
        .map(|c| chunk_sums(isa, p, x, y, c * CHUNK, ((c + 1) * CHUNK).min(n)))
        .collect();
    let scale = 1.0 / n as f64;
    let mut total = 0.0;
    grad.fill_zero();
    for s in &sums {
        total += s.total;
        for (g, v) in grad.dq.iter_mut().zip(&s.dq) {
            *g += v;
        }
        for (g, v) in grad.dv.iter_mut().zip(&s.dv) {
            *g += v;
        }
        for (g, v) in grad.c.iter_mut().zip(&s.c) {
            *g += v;
        }
    }
    grad.dq.iter_mut().for_each(|g| *g *= scale);
    grad.dv.iter_mut().for_each(|g| *g *= scale);
    grad.c.iter_mut().for_each(|g| *g *= scale);
    total * scale
}

/// `f(X)` for `n` rows, batched.
pub(crate) fn predict(isa: Isa, p: &Prepared, x: &[f64], n: usize) -> Vec<f64> {
    let isa = checked(isa);
    let q = p.q;
    let mut out = vec![0.0; n * q];
    out.par_chunks_mut(CHUNK * q)
        .enumerate()
        .for_each(|(c, o)| predict_chunk(isa, p, x, c * CHUNK, ((c + 1) * CHUNK).min(n), o));
    out
}
