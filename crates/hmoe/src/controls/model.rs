//! The model: `f_θ(x)`, its objective and gradient, and the estimator's view of it.
use super::{slots, stride, Expert};
use crate::fit::{BoxPenalty, Smooth};
use ndarray::Array2;

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

pub(super) fn experts_of(theta: &[f64], d: usize) -> usize {
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
