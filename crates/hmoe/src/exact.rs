//! The exact search of issue 26: the identifiability probe run on the algebraic conditions
//! under which `f_θ = f*` on every input, instead of on a sample of inputs.
//!
//! In one head, `f_h(X) = Σ_{s,i} e^{score_{s,i}} (E_s + ΔV_{s,i}) v_s / (1 + Σ e^{score})`
//! (THEORY.md §1). With the box (every weight `e^c ≥ e^{−b} > 0`), `f_θ = f*` everywhere holds
//! when every fitted atom of a cell has the true gate and the cell's weights and weighted values
//! sum to the truth's:
//!
//! - `ΔQ_i = ΔQ*` for every atom `i` of the cell (its symmetric part, in the self-attention
//!   variant, which sees nothing else);
//! - `Σ_{i∈cell} e^{c_i} = e^{c*}`;
//! - `Σ_{i∈cell} e^{c_i} ΔV_i = e^{c*} ΔV*`.
//!
//! (Then the scores and the numerators of every head agree term by term after summing the atoms
//! of a cell.) [`AlgebraicProbe`] is a [`Probe`] whose residuals are these conditions, so that
//! [`crate::probe::search`], from the same structured starts, minimises them with `D` pinned at
//! `ε`. A zero of them is a member of the flat set; its misfit on fresh inputs (a sampled probe of
//! the same truth on other inputs, [`crate::probe::ratio_at`]) must then be at rounding level,
//! which is the test a caller applies. A search that settles away from 0 shows no member of this
//! kind near its starts, not that none exists (a cancellation across heads or slots would need
//! other conditions).
use crate::geometry::atoms_jacobian;
use crate::probe::{AtomState, HmoeProbe, Probe, Role};
use ndarray::Array2;

/// A sampled probe's family and truth, probed on the algebraic conditions instead of on inputs.
pub struct AlgebraicProbe {
    inner: HmoeProbe,
}

impl AlgebraicProbe {
    pub fn new(inner: HmoeProbe) -> Self {
        Self { inner }
    }

    /// The sampled probe it wraps (its inputs give the misfit of a found point).
    pub fn sampled(&self) -> &HmoeProbe {
        &self.inner
    }

    /// Row counts: gates (`K·d²`), masses (`C`), weighted values (`C·q·d`).
    fn shape(&self) -> (usize, usize, usize) {
        let t = self.inner.truth_atoms();
        let k = t.count() * self.inner.atoms_per_slot();
        (k * t.d * t.d, t.count(), t.count() * t.q * t.d)
    }
}

impl Probe for AlgebraicProbe {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn truth(&self) -> &[f64] {
        self.inner.truth()
    }
    fn bound(&self) -> f64 {
        self.inner.bound()
    }

    /// Gates, then masses, then weighted values, cell by cell.
    fn residuals(&self, theta: &[f64]) -> Vec<f64> {
        let atoms = self.inner.atoms_at(theta);
        let t = self.inner.truth_atoms();
        let m = self.inner.atoms_per_slot();
        let (ng, nm, nv) = self.shape();
        let mut r = Vec::with_capacity(ng + nm + nv);
        for k in 0..atoms.count() {
            let star = t.dq(k / m);
            r.extend(atoms.dq(k).iter().zip(star).map(|(a, b)| a - b));
        }
        for cell in 0..t.count() {
            let mass: f64 = (cell * m..(cell + 1) * m).map(|k| atoms.c[k].exp()).sum();
            r.push(mass - t.c[cell].exp());
        }
        for cell in 0..t.count() {
            let w_star = t.c[cell].exp();
            for (j, v_star) in t.dv(cell).iter().enumerate() {
                let sum: f64 = (cell * m..(cell + 1) * m)
                    .map(|k| atoms.c[k].exp() * atoms.dv(k)[j])
                    .sum();
                r.push(sum - w_star * v_star);
            }
        }
        r
    }

    /// From `∂atoms/∂θ` (rows `dq`, `dv`, `c`, atom-major) by the chain rule.
    fn jacobian(&self, theta: &[f64]) -> Array2<f64> {
        let atoms = self.inner.atoms_at(theta);
        let ja = atoms_jacobian(self.inner.param(), theta);
        let t = self.inner.truth_atoms();
        let m = self.inner.atoms_per_slot();
        let (d, q, p) = (t.d, t.q, theta.len());
        let (nq, nv) = (atoms.dq.len(), atoms.dv.len());
        let (ng, nm, nvs) = self.shape();
        let mut jac = Array2::zeros((ng + nm + nvs, p));
        let symmetric = self.inner.is_symmetric();
        for k in 0..atoms.count() {
            for a in 0..d {
                for b in 0..d {
                    let row = k * d * d + a * d + b;
                    for j in 0..p {
                        jac[[row, j]] = if symmetric {
                            0.5 * (ja[[k * d * d + a * d + b, j]] + ja[[k * d * d + b * d + a, j]])
                        } else {
                            ja[[row, j]]
                        };
                    }
                }
            }
        }
        let c_row = |k: usize| nq + nv + k;
        for cell in 0..t.count() {
            for k in cell * m..(cell + 1) * m {
                let w = atoms.c[k].exp();
                for j in 0..p {
                    jac[[ng + cell, j]] += w * ja[[c_row(k), j]];
                }
                for e in 0..q * d {
                    let row = ng + nm + cell * q * d + e;
                    let v = atoms.dv(k)[e];
                    let v_row = nq + k * q * d + e;
                    for j in 0..p {
                        jac[[row, j]] += w * (ja[[v_row, j]] + v * ja[[c_row(k), j]]);
                    }
                }
            }
        }
        jac
    }

    fn loss(&self, theta: &[f64], smooth: f64) -> (f64, Vec<f64>) {
        self.inner.loss(theta, smooth)
    }
    fn roles(&self) -> &[Role] {
        self.inner.roles()
    }
    fn cells(&self) -> Vec<Vec<usize>> {
        self.inner.cells()
    }
    fn atom_states(&self, theta: &[f64]) -> Vec<AtomState> {
        self.inner.atom_states(theta)
    }
}
