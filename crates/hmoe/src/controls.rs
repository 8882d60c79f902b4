//! Controls (THEORY.md §4a): the classic softmax-gated mixture-of-experts regression, a second
//! model family for the rate curves and for the identifiability probe of §5a.
//!
//! Input `x ∈ R^d ~ Uniform[-1, 1]^d`, scalar output. Expert `j` has a gate `(β_j ∈ R^d, β0_j)`
//! and expert parameters `(a_j ∈ R^d, b_j)`; its output is `e_j(x) = a_jᵀx + b_j` (`linear`) or
//! `tanh(a_jᵀx + b_j)` (`tanh`). As the HMoE's inner level (THEORY.md §1), the normaliser holds
//! one frozen sink expert of score 0 and output 0, which removes softmax's translation invariance:
//!
//! ```text
//! f(x) = Σ_j exp(β_jᵀx + β0_j) e_j(x) / (1 + Σ_j exp(β_jᵀx + β0_j))
//! ```
//!
//! Scores are shifted by their maximum (the sink's 0 included) before `exp`, as in
//! `crate::model`. θ holds, expert after expert, `[β_j (d), β0_j, a_j (d), b_j]`.
//!
//! The estimator is the HMoE's (`crate::fit`: L-BFGS, the box and its penalty, starts near the
//! truth, the guard), reached through [`crate::fit::Smooth`]; the Voronoi loss is §4's with
//! cells in the joint distance of `(β, a, b)` ([`voronoi_loss`]); [`ControlProbe`] is the
//! family as `crate::probe` sees it.
use crate::config::{int_range, real_range, Checked, DataConfig, FitConfig, ParamGuard, ValidLoss};
use crate::error::{HmoeError, Result};
use crate::fit::{jitter, passes_guard, run_starts, BoxPenalty, Smooth, Starts};
use crate::loss::{Losses, VoronoiParts};
use crate::probe::{AtomState, Part, Probe, Role};
use crate::record::{derive_seed, FitStatus, Seeds, StartLog};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The experts' output function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expert {
    /// `e(x) = aᵀx + b`: an exact flat set when over-specified (THEORY.md §5a).
    Linear,
    /// `e(x) = tanh(aᵀx + b)`.
    Tanh,
}

impl std::fmt::Display for Expert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expert::Linear => "linear",
            Expert::Tanh => "tanh",
        })
    }
}

impl Expert {
    /// `(e(z), e'(z))` at the pre-activation `z = aᵀx + b`.
    #[inline]
    fn eval(self, z: f64) -> (f64, f64) {
        match self {
            Expert::Linear => (z, 1.0),
            Expert::Tanh => {
                let t = z.tanh();
                (t, 1.0 - t * t)
            }
        }
    }
}

/// Parameters per expert: `β (d), β0, a (d), b`.
pub fn stride(d: usize) -> usize {
    2 * d + 2
}

/// Offsets of expert `j`'s parts in θ.
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    pub beta: usize,
    pub beta0: usize,
    pub a: usize,
    pub b: usize,
}

/// Where expert `j`'s parameters sit in θ.
pub fn slots(d: usize, j: usize) -> Slots {
    let o = j * stride(d);
    Slots {
        beta: o,
        beta0: o + d,
        a: o + d + 1,
        b: o + 2 * d + 1,
    }
}

/// The model's sizes and expert type (`[model]` of a `controls` experiment, with the setting's
/// `expert` and `k_fit`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlModel {
    pub expert: Expert,
    /// Input dimension.
    pub d: usize,
    /// Experts of the truth.
    pub k_true: usize,
    /// Experts fitted: `k_true` exact, more over-specified.
    pub k_fit: usize,
}

impl ParamGuard for ControlModel {
    type Error = crate::error::HmoeError;
    fn validate(&self) -> Result<()> {
        int_range("d", self.d, 1, 64, "1..=64")?;
        int_range("k_true", self.k_true, 1, 16, "1..=16")?;
        if self.k_fit < self.k_true || self.k_fit > self.k_true + 8 {
            return Err(HmoeError::InvalidConfig {
                field: "k_fit",
                value: self.k_fit.to_string(),
                allowed: "k_true..=k_true+8 (the family must contain the truth)",
            });
        }
        Ok(())
    }
}

/// `f_θ(x)` at one input, with the per-expert quantities its gradient needs.
struct Eval {
    /// Gate probabilities `p_j` (the sink's is `1 − Σ p_j`).
    p: Vec<f64>,
    /// Expert outputs `e_j` and derivatives `e'_j`.
    e: Vec<f64>,
    de: Vec<f64>,
    score: Vec<f64>,
}

impl Eval {
    fn new(k: usize) -> Self {
        Eval {
            p: vec![0.0; k],
            e: vec![0.0; k],
            de: vec![0.0; k],
            score: vec![0.0; k],
        }
    }

    /// `f_θ(x)`, leaving `p`, `e`, `de` for the gradient.
    #[inline]
    fn forward(&mut self, expert: Expert, d: usize, theta: &[f64], x: &[f64]) -> f64 {
        let k = self.p.len();
        let mut mx = 0.0f64; // the sink's score
        for j in 0..k {
            let o = slots(d, j);
            let mut s = theta[o.beta0];
            let mut z = theta[o.b];
            for (i, xi) in x.iter().enumerate() {
                s += theta[o.beta + i] * xi;
                z += theta[o.a + i] * xi;
            }
            self.score[j] = s;
            mx = mx.max(s);
            let (e, de) = expert.eval(z);
            self.e[j] = e;
            self.de[j] = de;
        }
        let mut zsum = (-mx).exp();
        for j in 0..k {
            let w = (self.score[j] - mx).exp();
            self.p[j] = w;
            zsum += w;
        }
        let mut f = 0.0;
        for j in 0..k {
            self.p[j] /= zsum;
            f += self.p[j] * self.e[j];
        }
        f
    }
}

fn experts_of(theta: &[f64], d: usize) -> usize {
    assert_eq!(
        theta.len() % stride(d),
        0,
        "θ is not a whole number of experts"
    );
    theta.len() / stride(d)
}

/// `f_θ` at every row of `x` (`n × d`, row-major).
pub fn predict(expert: Expert, d: usize, theta: &[f64], x: &[f64]) -> Vec<f64> {
    let mut ev = Eval::new(experts_of(theta, d));
    x.chunks_exact(d)
        .map(|row| ev.forward(expert, d, theta, row))
        .collect()
}

/// `(1/n) Σ_k (f_θ(x_k) − y_k)²` and its gradient in θ.
pub fn objective_and_grad(
    expert: Expert,
    d: usize,
    theta: &[f64],
    x: &[f64],
    y: &[f64],
) -> (f64, Vec<f64>) {
    let k = experts_of(theta, d);
    let mut ev = Eval::new(k);
    let mut g = vec![0.0; theta.len()];
    let mut total = 0.0;
    for (row, yk) in x.chunks_exact(d).zip(y) {
        let f = ev.forward(expert, d, theta, row);
        let r = f - yk;
        total += r * r;
        for j in 0..k {
            let o = slots(d, j);
            let gs = r * ev.p[j] * (ev.e[j] - f);
            let ge = r * ev.p[j] * ev.de[j];
            for (i, xi) in row.iter().enumerate() {
                g[o.beta + i] += gs * xi;
                g[o.a + i] += ge * xi;
            }
            g[o.beta0] += gs;
            g[o.b] += ge;
        }
    }
    let n = y.len() as f64;
    g.iter_mut().for_each(|v| *v *= 2.0 / n);
    (total / n, g)
}

/// `(1/n) Σ_k (f_θ(x_k) − y_k)²`.
pub fn objective(expert: Expert, d: usize, theta: &[f64], x: &[f64], y: &[f64]) -> f64 {
    let f = predict(expert, d, theta, x);
    f.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / y.len() as f64
}

/// The least-squares objective of one data set, as the estimator of `crate::fit` sees it.
pub struct ControlObjective<'a> {
    pub expert: Expert,
    pub d: usize,
    pub x: &'a [f64],
    pub y: &'a [f64],
    boxed: BoxPenalty,
}

impl<'a> ControlObjective<'a> {
    pub fn new(
        expert: Expert,
        d: usize,
        x: &'a [f64],
        y: &'a [f64],
        bound: f64,
        penalty: f64,
    ) -> Self {
        ControlObjective {
            expert,
            d,
            x,
            y,
            boxed: BoxPenalty::new(bound, penalty),
        }
    }
}

impl Smooth for ControlObjective<'_> {
    fn value_and_grad(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        objective_and_grad(self.expert, self.d, theta, self.x, self.y)
    }
    fn box_penalty(&self) -> &BoxPenalty {
        &self.boxed
    }
    /// `(1/n) Σ_k ∇f_θ(x_k) ∇f_θ(x_k)ᵀ`, one sample's gradient at a time (`p = k(2d + 2)` is
    /// small): `∂f/∂β_j = p_j (e_j − f) x`, `∂f/∂β0_j = p_j (e_j − f)`, `∂f/∂a_j = p_j e'_j x`,
    /// `∂f/∂b_j = p_j e'_j`, the factors of [`objective_and_grad`]'s gradient.
    fn gauss_newton(&self, theta: &[f64]) -> Option<Array2<f64>> {
        let (d, k, p) = (self.d, experts_of(theta, self.d), theta.len());
        let mut ev = Eval::new(k);
        let mut jtj = Array2::<f64>::zeros((p, p));
        let mut row = vec![0.0; p];
        for x in self.x.chunks_exact(d) {
            let f = ev.forward(self.expert, d, theta, x);
            for j in 0..k {
                let o = slots(d, j);
                let (gs, ge) = (ev.p[j] * (ev.e[j] - f), ev.p[j] * ev.de[j]);
                for (i, xi) in x.iter().enumerate() {
                    row[o.beta + i] = gs * xi;
                    row[o.a + i] = ge * xi;
                }
                row[o.beta0] = gs;
                row[o.b] = ge;
            }
            for (a, ra) in row.iter().enumerate() {
                for (b, rb) in row.iter().enumerate() {
                    jtj[[a, b]] += ra * rb;
                }
            }
        }
        Some(jtj / self.y.len() as f64)
    }
}

/// `N(0, std²)` truncated at `±2·std`.
fn truncated(rng: &mut impl Rng, std: f64) -> f64 {
    loop {
        let z: f64 = StandardNormal.sample(rng);
        if z.abs() <= 2.0 {
            return std * z;
        }
    }
}

/// The true θ (`k_true` experts) drawn from `truth_seed`: `β, a ~ N(0, 1)` and `b ~ N(0, 0.5²)`,
/// each truncated at two standard deviations, `β0 ~ Uniform[-1/2, 1/2]`; expert after expert,
/// in θ's order. Every `|θ_j| ≤ 2`.
pub fn draw_truth(d: usize, k_true: usize, truth_seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
        "controls-truth-params",
        &[&truth_seed.to_string()],
    ));
    let mut theta = vec![0.0; k_true * stride(d)];
    for j in 0..k_true {
        let o = slots(d, j);
        for i in 0..d {
            theta[o.beta + i] = truncated(&mut rng, 1.0);
        }
        theta[o.beta0] = rng.random_range(-0.5..=0.5);
        for i in 0..d {
            theta[o.a + i] = truncated(&mut rng, 1.0);
        }
        theta[o.b] = truncated(&mut rng, 0.5);
    }
    theta
}

/// The truth in a family of `k_fit ≥ k_true` experts: experts `0..k_true` are the true ones,
/// expert `k_true + e` is a copy of true expert `copies[e]`, and every expert of a group of `c`
/// copies of true expert `j` gets `β0 = β0*_j − ln c`, so that `f_θ = f*` exactly.
pub fn embed(truth: &[f64], d: usize, copies: &[usize]) -> Vec<f64> {
    let k_true = experts_of(truth, d);
    let p = stride(d);
    let mut theta = truth.to_vec();
    let mut count = vec![1usize; k_true];
    for &j in copies {
        assert!(j < k_true, "a copy of true expert {j} of {k_true}");
        theta.extend_from_slice(&truth[j * p..(j + 1) * p]);
        count[j] += 1;
    }
    let owner: Vec<usize> = (0..k_true).chain(copies.iter().copied()).collect();
    for (i, &j) in owner.iter().enumerate() {
        theta[slots(d, i).beta0] = truth[slots(d, j).beta0] - (count[j] as f64).ln();
    }
    theta
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// `(‖β_i − β*_j‖, ‖(a_i, b_i) − (a*_j, b*_j)‖)`.
fn gaps(theta: &[f64], truth: &[f64], d: usize, i: usize, j: usize) -> (f64, f64) {
    let (o, t) = (slots(d, i), slots(d, j));
    (
        dist(&theta[o.beta..o.beta + d], &truth[t.beta..t.beta + d]),
        dist(&theta[o.a..=o.b], &truth[t.a..=t.b]),
    )
}

/// The Voronoi cell of every fitted expert: the true expert nearest in the joint Euclidean
/// distance of `(β, a, b)` (the lowest index on a tie).
pub fn nearest_cells(theta: &[f64], truth: &[f64], d: usize) -> Vec<usize> {
    let (k, kt) = (experts_of(theta, d), experts_of(truth, d));
    (0..k)
        .map(|i| {
            let mut best = (f64::INFINITY, 0);
            for j in 0..kt {
                let (gb, gv) = gaps(theta, truth, d, i, j);
                let d2 = gb * gb + gv * gv;
                if d2 < best.0 {
                    best = (d2, j);
                }
            }
            best.1
        })
        .collect()
}

/// `D(θ, θ*)` (THEORY.md §4a) with the given cells (`cells[i]`: the true expert of fitted expert
/// `i`), and its (sub)gradient in θ: a norm at 0 and a mass term at its kink contribute 0.
/// With `smooth > 0` every unsquared `|x|` (mass terms, norms of a cell of one expert) is
/// rounded off to `√(x² + smooth²) − smooth`, as [`crate::loss::voronoi_loss_and_grad`] does
/// for the probe; `smooth = 0` is `D` itself, with unchanged arithmetic.
///
/// `D = Σ_j |Σ_{i∈cell j} exp(β0_i) − exp(β0*_j)|`
/// `  + Σ_{cells of one expert} exp(β0_i)(‖β_i − β*_j‖ + ‖(a_i,b_i) − (a*_j,b*_j)‖)`
/// `  + Σ_{cells of ≥ 2} Σ_i exp(β0_i)(‖β_i − β*_j‖^ρ + ‖(a_i,b_i) − (a*_j,b*_j)‖^ρ)`;
/// an empty cell contributes its full mass `exp(β0*_j)`.
pub fn voronoi_with_cells(
    theta: &[f64],
    truth: &[f64],
    d: usize,
    cells: &[usize],
    rho: f64,
    smooth: f64,
) -> (f64, Vec<f64>) {
    // |x| (rounded off at `smooth`) and its derivative over x.
    let soft = |x: f64| -> (f64, f64) {
        let r = (x * x + smooth * smooth).sqrt();
        (r - smooth, if r > 0.0 { 1.0 / r } else { 0.0 })
    };
    let kt = experts_of(truth, d);
    assert_eq!(
        cells.len(),
        experts_of(theta, d),
        "one cell per fitted expert"
    );
    let mut g = vec![0.0; theta.len()];
    let mut total = 0.0;
    for j in 0..kt {
        let t = slots(d, j);
        let members: Vec<usize> = (0..cells.len()).filter(|&i| cells[i] == j).collect();
        let single = members.len() == 1;
        let mut mass = 0.0;
        let mut spread = 0.0;
        for &i in &members {
            let o = slots(d, i);
            let w = theta[o.beta0].exp();
            mass += w;
            let (gb, gv) = gaps(theta, truth, d, i, j);
            // d/dx of ‖x − x*‖^p at x ≠ x*: p ‖·‖^(p−2) (x − x*); p = 1 for a single expert.
            let p = if single { 1.0 } else { rho };
            let rounded = single && smooth > 0.0;
            let term = if rounded {
                w * (soft(gb).0 + soft(gv).0)
            } else {
                w * (gb.powf(p) + gv.powf(p))
            };
            spread += term;
            g[o.beta0] += term;
            let scale = |n: f64| {
                if rounded {
                    w * soft(n).1
                } else if n > 0.0 {
                    w * p * n.powf(p - 2.0)
                } else {
                    0.0
                }
            };
            let (sb, sv) = (scale(gb), scale(gv));
            for c in 0..d {
                g[o.beta + c] += sb * (theta[o.beta + c] - truth[t.beta + c]);
                g[o.a + c] += sv * (theta[o.a + c] - truth[t.a + c]);
            }
            g[o.b] += sv * (theta[o.b] - truth[t.b]);
        }
        let diff = mass - truth[t.beta0].exp();
        if smooth > 0.0 {
            let (abs, slope) = soft(diff);
            for &i in &members {
                let o = slots(d, i);
                g[o.beta0] += slope * diff * theta[o.beta0].exp();
            }
            total += abs + spread;
            continue;
        }
        let sign = if diff > 0.0 {
            1.0
        } else if diff < 0.0 {
            -1.0
        } else {
            0.0
        };
        for &i in &members {
            let o = slots(d, i);
            g[o.beta0] += sign * theta[o.beta0].exp();
        }
        total += diff.abs() + spread;
    }
    (total, g)
}

/// `D(θ, θ*)` with the nearest-expert cells ([`nearest_cells`]).
pub fn voronoi_loss(theta: &[f64], truth: &[f64], d: usize, rho: f64) -> f64 {
    voronoi_with_cells(theta, truth, d, &nearest_cells(theta, truth, d), rho, 0.0).0
}

/// [`voronoi_loss`] split into its mass term and the spread of live and of dead experts (weight
/// below `dead_weight` times their cell's true weight), as `crate::loss::voronoi_parts`.
pub fn voronoi_parts(
    theta: &[f64],
    truth: &[f64],
    d: usize,
    rho: f64,
    dead_weight: f64,
) -> VoronoiParts {
    let cells = nearest_cells(theta, truth, d);
    let mut p = VoronoiParts::default();
    for j in 0..experts_of(truth, d) {
        let w_true = truth[slots(d, j).beta0].exp();
        let members: Vec<usize> = (0..cells.len()).filter(|&i| cells[i] == j).collect();
        let mut mass = 0.0;
        for &i in &members {
            let w = theta[slots(d, i).beta0].exp();
            mass += w;
            let (gb, gv) = gaps(theta, truth, d, i, j);
            let spread = if members.len() == 1 {
                w * (gb + gv)
            } else {
                w * (gb.powf(rho) + gv.powf(rho))
            };
            if w < dead_weight * w_true {
                p.spread_dead += spread;
                p.dead_atoms += 1;
            } else {
                p.spread_live += spread;
            }
        }
        p.mass += (mass - w_true).abs();
    }
    p
}

/// `n` inputs `Uniform[-1, 1]^d`, row-major.
pub fn sample_inputs(d: usize, n: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..n * d).map(|_| rng.random_range(-1.0..=1.0)).collect()
}

/// `n` samples `(x, y = f*(x) + σ ε)` from `seed` alone: the inputs first, then the noise.
pub fn sample_data(
    expert: Expert,
    d: usize,
    truth: &[f64],
    sigma: f64,
    n: usize,
    seed: u64,
) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = sample_inputs(d, n, &mut rng);
    let mut y = predict(expert, d, truth, &x);
    y.iter_mut().for_each(|v| {
        let e: f64 = StandardNormal.sample(&mut rng);
        *v += sigma * e
    });
    (x, y)
}

/// One fit of a `controls` experiment, as written: its stored form is the job key (its canonical
/// JSON is hashed into the job's id), so it follows DESIGN.md's rule: it only grows, and a field
/// added later is skipped while it holds its default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSpec {
    pub experiment: String,
    pub setting: String,
    pub model: ControlModel,
    pub data: DataConfig,
    pub fit: FitConfig,
    pub n: usize,
    pub replicate: u32,
}

impl ParamGuard for ControlSpec {
    type Error = crate::error::HmoeError;
    fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.data.validate()?;
        self.fit.validate()?;
        // Every true parameter lies in [-2, 2] (`draw_truth`).
        real_range(
            "bound",
            self.fit.bound,
            self.fit.bound > 2.0,
            "a finite value > 2 (the truth's parameters reach ±2)",
        )?;
        int_range("n", self.n, 1, usize::MAX, ">= 1")?;
        Ok(())
    }
}

/// A checked control job: what [`run_control_fit`] takes.
pub type ControlJob = Checked<ControlSpec>;

impl ControlSpec {
    /// The truth depends on `(experiment, d, k_true)` only and the data on those and `(n,
    /// replicate)`: every setting of an experiment (linear or tanh experts, exact or
    /// over-specified) draws the same true parameters and the same inputs and noise (common
    /// random numbers); the starts depend on the setting too.
    pub fn seeds(&self) -> Seeds {
        let (e, d, k) = (
            &self.experiment,
            self.model.d.to_string(),
            self.model.k_true.to_string(),
        );
        let (n, r) = (self.n.to_string(), self.replicate.to_string());
        Seeds {
            truth: derive_seed("controls-truth", &[e, &d, &k]),
            data: derive_seed("controls-data", &[e, &d, &k, &n, &r]),
            init: derive_seed("controls-init", &[e, &self.setting, &n, &r]),
        }
    }
}

/// The raw result of one control fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlRecord {
    pub job: ControlJob,
    pub seeds: Seeds,
    /// The truth, `k_true` experts.
    pub true_theta: Vec<f64>,
    /// The estimate, `k_fit` experts.
    pub theta: Vec<f64>,
    pub objective: f64,
    pub objective_at_truth: f64,
    pub grad_norm: f64,
    pub iterations: u64,
    pub converged: bool,
    pub starts: usize,
    pub status: FitStatus,
    pub max_abs_param: f64,
    pub seconds: f64,
    pub starts_log: Vec<StartLog>,
}

/// The starting point of start `k`: the truth embedded with the extra experts copying true
/// experts round-robin over starts (extra expert `e` copies true expert `(k + e) mod k_true`),
/// plus `N(0, init_noise²)` noise, in the box.
pub fn initial_point(truth: &[f64], job: &ControlSpec, init_seed: u64, k: usize) -> Vec<f64> {
    let m = &job.model;
    let copies: Vec<usize> = (0..m.k_fit - m.k_true)
        .map(|e| (k + e) % m.k_true)
        .collect();
    let mut theta = embed(truth, m.d, &copies);
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
        "controls-start",
        &[&init_seed.to_string(), &k.to_string()],
    ));
    jitter(&mut theta, &job.fit, &mut rng);
    theta
}

/// The starting point of prior start `k`: a fresh draw of the truth's prior with `k_fit`
/// experts, in the box.
fn prior_point(job: &ControlSpec, init_seed: u64, k: usize) -> Vec<f64> {
    let seed = derive_seed(
        "controls-prior-start",
        &[&init_seed.to_string(), &k.to_string()],
    );
    let mut theta = draw_truth(job.model.d, job.model.k_fit, seed);
    crate::fit::clamp_to_box(&mut theta, job.fit.bound);
    theta
}

/// Fit one control job with the estimator of `crate::fit`.
pub fn run_control_fit(job: &ControlJob) -> Result<ControlRecord> {
    let t0 = Instant::now();
    let seeds = job.seeds();
    let m = &job.model;
    let truth = draw_truth(m.d, m.k_true, seeds.truth);
    let (x, y) = sample_data(m.expert, m.d, &truth, job.data.sigma, job.n, seeds.data);
    let objective_at_truth = objective(m.expert, m.d, &truth, &x, &y);
    let obj = ControlObjective::new(m.expert, m.d, &x, &y, job.fit.bound, job.fit.box_penalty);
    let Starts {
        best, starts, log, ..
    } = run_starts(
        &obj,
        &job.fit,
        Some(objective_at_truth),
        |k| initial_point(&truth, job, seeds.init, k),
        |k| prior_point(job, seeds.init, k),
    )?;
    let status = if passes_guard(best.objective, objective_at_truth) {
        FitStatus::Ok
    } else {
        FitStatus::GuardFailed
    };
    Ok(ControlRecord {
        job: job.clone(),
        seeds,
        true_theta: truth,
        max_abs_param: best.theta.iter().fold(0.0, |a, t| a.max(t.abs())),
        theta: best.theta,
        objective: best.objective,
        objective_at_truth,
        grad_norm: best.grad_norm,
        iterations: best.iterations,
        converged: best.converged,
        starts,
        status,
        seconds: t0.elapsed().as_secs_f64(),
        starts_log: log,
    })
}

/// `‖f̂ − f*‖_{L²}` on `n` fresh inputs drawn from `seed`.
pub fn regression_error(
    expert: Expert,
    d: usize,
    theta: &[f64],
    truth: &[f64],
    n: usize,
    seed: u64,
) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = sample_inputs(d, n, &mut rng);
    let (f, fs) = (predict(expert, d, theta, &x), predict(expert, d, truth, &x));
    (f.iter()
        .zip(&fs)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / n as f64)
        .sqrt()
}

/// Every loss of a record, from the record alone.
pub fn record_losses(rec: &ControlRecord, cfg: &ValidLoss) -> Result<Losses> {
    let m = &rec.job.model;
    let p = stride(m.d);
    if rec.theta.len() != m.k_fit * p || rec.true_theta.len() != m.k_true * p {
        return Err(HmoeError::Inconsistent(
            "theta or true_theta do not match the record's model".into(),
        ));
    }
    let fresh = derive_seed("fresh", &[&rec.seeds.data.to_string()]);
    Ok(Losses {
        voronoi: voronoi_loss(&rec.theta, &rec.true_theta, m.d, cfg.rho),
        regression: regression_error(
            m.expert,
            m.d,
            &rec.theta,
            &rec.true_theta,
            cfg.fresh_samples,
            fresh,
        ),
    })
}

/// The Voronoi loss at the end of every logged start of a record, in the order run.
pub fn start_losses(rec: &ControlRecord, cfg: &ValidLoss) -> Vec<f64> {
    rec.starts_log
        .iter()
        .map(|s| voronoi_loss(&s.theta, &rec.true_theta, rec.job.model.d, cfg.rho))
        .collect()
}

/// The controls as the identifiability probe sees them (`crate::probe`).
///
/// The cells are FIXED: those of the embedded truth, where the extra fitted expert (index
/// `k_true`) belongs to true expert 0 and expert `i < k_true` to true expert `i`. The nearest-
/// expert assignment of [`voronoi_loss`] jumps when two fitted experts trade places, and `D`
/// with it; with the assignment fixed, `D` is continuous in θ (Lipschitz inside the box), which
/// a search that moves θ near the truth needs. The two agree wherever every fitted expert is
/// nearest to its fixed cell's true expert, which holds in a neighbourhood of the embedded truth
/// (half the smallest distance between two true experts). Outside it the probe's `D` is the
/// loss of one fixed matching, which need not equal, nor bound either way, the nearest-
/// assignment `D` of the same θ (the nearest cells minimise the matching distance, not `D`);
/// the probe's ratios are read near the truth, where the two agree.
pub struct ControlProbe {
    expert: Expert,
    d: usize,
    /// The truth, `k_true` experts.
    true_theta: Vec<f64>,
    /// The truth embedded in the fitted family.
    embedded: Vec<f64>,
    bound: f64,
    x: Vec<f64>,
    fstar: Vec<f64>,
    roles: Vec<Role>,
    cells: Vec<usize>,
    rho: f64,
}

impl ControlProbe {
    /// A probe of `k_fit ∈ {k_true, k_true + 1}` experts against the truth drawn from
    /// `truth_seed`, on `n_inputs` inputs drawn from `input_seed`, in the box `[-bound, bound]`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        expert: Expert,
        k_true: usize,
        k_fit: usize,
        d: usize,
        truth_seed: u64,
        n_inputs: usize,
        input_seed: u64,
        bound: f64,
    ) -> ControlProbe {
        assert!(
            k_fit == k_true || k_fit == k_true + 1,
            "the probe embeds k_fit = k_true or k_true + 1 experts (got {k_fit} for {k_true})"
        );
        assert!(d >= 1 && k_true >= 1 && n_inputs >= 1);
        let true_theta = draw_truth(d, k_true, truth_seed);
        let copies: Vec<usize> = if k_fit > k_true { vec![0] } else { vec![] };
        let embedded = embed(&true_theta, d, &copies);
        let mut rng = ChaCha8Rng::seed_from_u64(input_seed);
        let x = sample_inputs(d, n_inputs, &mut rng);
        let fstar = predict(expert, d, &true_theta, &x);
        let mut roles = Vec::with_capacity(embedded.len());
        for j in 0..k_fit {
            let role = |part| Role {
                part,
                atoms: vec![j],
            };
            roles.extend((0..d).map(|_| role(Part::Gate)));
            roles.push(role(Part::Weight));
            roles.extend((0..=d).map(|_| role(Part::Value)));
        }
        let cells = (0..k_true).chain(copies).collect();
        ControlProbe {
            expert,
            d,
            true_theta,
            embedded,
            bound,
            x,
            fstar,
            roles,
            cells,
            rho: 2.0,
        }
    }

    /// The truth with its own `k_true` experts.
    pub fn true_theta(&self) -> &[f64] {
        &self.true_theta
    }

    /// `f_θ` on the probe's inputs.
    pub fn predict(&self, theta: &[f64]) -> Vec<f64> {
        predict(self.expert, self.d, theta, &self.x)
    }
}

impl Probe for ControlProbe {
    fn dim(&self) -> usize {
        self.embedded.len()
    }
    fn truth(&self) -> &[f64] {
        &self.embedded
    }
    fn bound(&self) -> f64 {
        self.bound
    }
    fn residuals(&self, theta: &[f64]) -> Vec<f64> {
        let scale = 1.0 / (self.fstar.len() as f64).sqrt();
        self.predict(theta)
            .iter()
            .zip(&self.fstar)
            .map(|(f, t)| (f - t) * scale)
            .collect()
    }
    // The Jacobian is the trait's central differences: 4(d+1) parameters per expert, cheap.
    fn loss(&self, theta: &[f64], smooth: f64) -> (f64, Vec<f64>) {
        voronoi_with_cells(
            theta,
            &self.true_theta,
            self.d,
            &self.cells,
            self.rho,
            smooth,
        )
    }
    fn roles(&self) -> &[Role] {
        &self.roles
    }
    fn cells(&self) -> Vec<Vec<usize>> {
        let kt = experts_of(&self.true_theta, self.d);
        (0..kt)
            .map(|j| {
                (0..self.cells.len())
                    .filter(|&i| self.cells[i] == j)
                    .collect()
            })
            .collect()
    }
    fn atom_states(&self, theta: &[f64]) -> Vec<AtomState> {
        self.cells
            .iter()
            .enumerate()
            .map(|(i, &j)| {
                let (gate, value) = gaps(theta, &self.true_theta, self.d, i, j);
                AtomState {
                    cell: j,
                    weight: theta[slots(self.d, i).beta0].exp(),
                    gate,
                    value,
                }
            })
            .collect()
    }
}
