//! Atoms: the identifiable objects `(ΔQ, ΔV, c)` of every (head, slot, atom), the common output
//! of all parametrisations and the input of the model and of the Voronoi loss.
use serde::{Deserialize, Serialize};

/// # Shapes
/// `dq`: `heads × slots × atoms` blocks of `d × d` (row-major), `dv`: blocks of `q × d`,
/// `c`: one log mixing weight per atom. Atom `(h, s, i)` is at index `(h·S + s)·m + i`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Atoms {
    pub heads: usize,
    pub slots: usize,
    pub atoms: usize,
    pub d: usize,
    pub q: usize,
    pub dq: Vec<f64>,
    pub dv: Vec<f64>,
    pub c: Vec<f64>,
}

impl Atoms {
    pub fn zeros(heads: usize, slots: usize, atoms: usize, d: usize, q: usize) -> Self {
        let k = heads * slots * atoms;
        Self {
            heads,
            slots,
            atoms,
            d,
            q,
            dq: vec![0.0; k * d * d],
            dv: vec![0.0; k * q * d],
            c: vec![0.0; k],
        }
    }
    pub fn count(&self) -> usize {
        self.heads * self.slots * self.atoms
    }
    #[inline]
    pub fn index(&self, h: usize, s: usize, i: usize) -> usize {
        (h * self.slots + s) * self.atoms + i
    }
    #[inline]
    pub fn dq(&self, k: usize) -> &[f64] {
        let b = self.d * self.d;
        &self.dq[k * b..(k + 1) * b]
    }
    #[inline]
    pub fn dv(&self, k: usize) -> &[f64] {
        let b = self.q * self.d;
        &self.dv[k * b..(k + 1) * b]
    }
    #[inline]
    pub fn dq_mut(&mut self, k: usize) -> &mut [f64] {
        let b = self.d * self.d;
        &mut self.dq[k * b..(k + 1) * b]
    }
    #[inline]
    pub fn dv_mut(&mut self, k: usize) -> &mut [f64] {
        let b = self.q * self.d;
        &mut self.dv[k * b..(k + 1) * b]
    }
    pub fn fill_zero(&mut self) {
        self.dq.iter_mut().for_each(|x| *x = 0.0);
        self.dv.iter_mut().for_each(|x| *x = 0.0);
        self.c.iter_mut().for_each(|x| *x = 0.0);
    }
    /// Replace every gate `ΔQ` by its symmetric part `(ΔQ + ΔQᵀ)/2`: under the self-attention
    /// variant (THEORY.md §1) the score `v_sᵀ(P + ΔQ)v_s` sees nothing else, so this is the
    /// identified part of the gate. It is a self-adjoint projection, so it also maps a gradient
    /// in the gates to the gradient of a function of the symmetric parts.
    pub fn symmetrise_gates(&mut self) {
        let d = self.d;
        for k in 0..self.count() {
            let g = self.dq_mut(k);
            for a in 0..d {
                for b in 0..a {
                    let m = 0.5 * (g[a * d + b] + g[b * d + a]);
                    g[a * d + b] = m;
                    g[b * d + a] = m;
                }
            }
        }
    }
    /// Whether the arrays have the lengths the sizes say.
    pub fn is_consistent(&self) -> bool {
        let k = self.count();
        self.dq.len() == k * self.d * self.d
            && self.dv.len() == k * self.q * self.d
            && self.c.len() == k
    }
}
