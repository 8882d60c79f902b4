//! The parametrisations of THEORY.md §2 behind one trait: a flat parameter vector θ → atoms
//! `(ΔQ, ΔV, c)`, and atom gradients → the gradient in θ (chain rule through the low-rank
//! products and, for `replora` and `hora`, through the generator).
//!
//! Layouts (all row-major; `Sp` = parameter slots, 1 when atoms are tied across slots):
//! - `lora`: per (h, s, i): `AQ (r×d)`, `BQ (d×r)`, `AV (r×d)`, `BV (q×r)`, `c`.
//! - `replora` / `hora`: first the generators, `G = (GAQ d×d, GAV d×d, GBQ d×d, GBV q×d)`, one per
//!   head (`replora`) or one for all (`hora`); then the A-seeds `Ā (r×d)`, one per (s, i) when
//!   `hora` shares them across heads, else per (h, s, i); then the B-seeds `B̄ (d×r)` per
//!   (h, s, i); then `c` per (h, s, i).
use crate::atoms::Atoms;
use crate::config::ModelConfig;
use crate::method::{Activation, Family, Method};

/// `out (m×n) (+)= op(a) · op(b)`, `op` a transpose when the flag is set; `k` the inner size.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    a: &[f64],
    ta: bool,
    b: &[f64],
    tb: bool,
    out: &mut [f64],
    m: usize,
    k: usize,
    n: usize,
    acc: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for l in 0..k {
                let av = if ta { a[l * m + i] } else { a[i * k + l] };
                let bv = if tb { b[j * k + l] } else { b[l * n + j] };
                s += av * bv;
            }
            if acc {
                out[i * n + j] += s;
            } else {
                out[i * n + j] = s;
            }
        }
    }
}

/// The low-rank factors of one atom.
#[derive(Clone, Debug, Default)]
pub struct Factors {
    pub aq: Vec<f64>,
    pub bq: Vec<f64>,
    pub av: Vec<f64>,
    pub bv: Vec<f64>,
}

/// A family of atoms indexed by a flat parameter vector.
pub trait Parametrisation: Send + Sync {
    fn method(&self) -> Method;
    /// Number of free parameters.
    fn dim(&self) -> usize;
    /// Fitted atoms per slot.
    fn atoms_per_slot(&self) -> usize;
    /// The low-rank factors of parameter atom `(h, ps, i)`.
    fn factors(&self, theta: &[f64], h: usize, ps: usize, i: usize) -> Factors;
    /// Offset of `c` for parameter atom `(h, ps, i)`.
    fn c_offset(&self, h: usize, ps: usize, i: usize) -> usize;
    /// Write the atoms of θ into `out`.
    fn atoms(&self, theta: &[f64], out: &mut Atoms);
    /// Add the gradient in θ of a loss whose gradient in the atoms is `grad` to `grad_theta`.
    fn pullback(&self, theta: &[f64], grad: &Atoms, grad_theta: &mut [f64]);
    /// Fresh atoms buffer of the right shape.
    fn new_atoms(&self) -> Atoms;
    /// The generator-family view, for `replora` and `hora`.
    fn as_generated(&self) -> Option<&Generated> {
        None
    }
    /// The independent-factor view, for `lora`.
    fn as_lora(&self) -> Option<&Lora> {
        None
    }
}

/// Sizes shared by all layouts.
#[derive(Clone, Debug)]
struct Shape {
    d: usize,
    q: usize,
    r: usize,
    heads: usize,
    slots: usize,
    pslots: usize,
    m: usize,
}

impl Shape {
    fn new(cfg: &ModelConfig, m: usize) -> Self {
        Shape {
            d: cfg.d,
            q: cfg.q,
            r: cfg.r,
            heads: cfg.heads,
            slots: cfg.slots,
            pslots: cfg.param_slots(),
            m,
        }
    }
    fn patom(&self, h: usize, ps: usize, i: usize) -> usize {
        (h * self.pslots + ps) * self.m + i
    }
    fn patoms(&self) -> usize {
        self.heads * self.pslots * self.m
    }
    fn ps(&self, s: usize) -> usize {
        if self.pslots == 1 {
            0
        } else {
            s
        }
    }
    fn new_atoms(&self) -> Atoms {
        Atoms::zeros(self.heads, self.slots, self.m, self.d, self.q)
    }
}

/// Write `ΔQ = BQ·AQ`, `ΔV = BV·AV` of atom `k`.
#[rustfmt::skip]
fn write_products(sh: &Shape, f: &Factors, out: &mut Atoms, k: usize) {
    matmul(&f.bq, false, &f.aq, false, out.dq_mut(k), sh.d, sh.r, sh.d, false);
    matmul(&f.bv, false, &f.av, false, out.dv_mut(k), sh.q, sh.r, sh.d, false);
}

/// Gradients of the factors from the gradients of the products.
#[rustfmt::skip]
fn factor_grads(sh: &Shape, f: &Factors, gq: &[f64], gv: &[f64]) -> Factors {
    let (d, q, r) = (sh.d, sh.q, sh.r);
    let mut g = Factors {
        aq: vec![0.0; r * d],
        bq: vec![0.0; d * r],
        av: vec![0.0; r * d],
        bv: vec![0.0; q * r],
    };
    matmul(gq, false, &f.aq, true, &mut g.bq, d, d, r, false); // dBQ = dΔQ AQᵀ
    matmul(&f.bq, true, gq, false, &mut g.aq, r, d, d, false); // dAQ = BQᵀ dΔQ
    matmul(gv, false, &f.av, true, &mut g.bv, q, d, r, false);
    matmul(&f.bv, true, gv, false, &mut g.av, r, q, d, false);
    g
}

/// Sum the atom gradients of every slot that shares parameter slot `ps` (tied atoms).
fn for_each_atom(sh: &Shape, mut f: impl FnMut(usize, usize, usize, usize)) {
    for h in 0..sh.heads {
        for s in 0..sh.slots {
            for i in 0..sh.m {
                let k = (h * sh.slots + s) * sh.m + i;
                f(h, sh.ps(s), i, k);
            }
        }
    }
}

/// Independent factors for every atom (`lora`).
pub struct Lora {
    sh: Shape,
}

impl Lora {
    fn block(&self) -> usize {
        let Shape { d, q, r, .. } = self.sh;
        2 * r * d + d * r + q * r + 1
    }
    fn offset(&self, h: usize, ps: usize, i: usize) -> usize {
        self.sh.patom(h, ps, i) * self.block()
    }
}

impl Parametrisation for Lora {
    fn method(&self) -> Method {
        Method::LORA
    }
    fn dim(&self) -> usize {
        self.sh.patoms() * self.block()
    }
    fn atoms_per_slot(&self) -> usize {
        self.sh.m
    }
    fn factors(&self, theta: &[f64], h: usize, ps: usize, i: usize) -> Factors {
        let Shape { d, q, r, .. } = self.sh;
        let o = self.offset(h, ps, i);
        let take = |a: usize, len: usize| theta[o + a..o + a + len].to_vec();
        Factors {
            aq: take(0, r * d),
            bq: take(r * d, d * r),
            av: take(r * d + d * r, r * d),
            bv: take(2 * r * d + d * r, q * r),
        }
    }
    fn c_offset(&self, h: usize, ps: usize, i: usize) -> usize {
        self.offset(h, ps, i) + self.block() - 1
    }
    fn atoms(&self, theta: &[f64], out: &mut Atoms) {
        for_each_atom(&self.sh, |h, ps, i, k| {
            let f = self.factors(theta, h, ps, i);
            write_products(&self.sh, &f, out, k);
            out.c[k] = theta[self.c_offset(h, ps, i)];
        });
    }
    fn pullback(&self, theta: &[f64], grad: &Atoms, gt: &mut [f64]) {
        let Shape { d, r, .. } = self.sh;
        for_each_atom(&self.sh, |h, ps, i, k| {
            let f = self.factors(theta, h, ps, i);
            let g = factor_grads(&self.sh, &f, grad.dq(k), grad.dv(k));
            let o = self.offset(h, ps, i);
            let parts = [
                (0, &g.aq),
                (r * d, &g.bq),
                (r * d + d * r, &g.av),
                (2 * r * d + d * r, &g.bv),
            ];
            for (a, v) in parts {
                for (j, x) in v.iter().enumerate() {
                    gt[o + a + j] += x;
                }
            }
            gt[self.c_offset(h, ps, i)] += grad.c[k];
        });
    }
    fn new_atoms(&self) -> Atoms {
        self.sh.new_atoms()
    }
    fn as_lora(&self) -> Option<&Lora> {
        Some(self)
    }
}

/// Factors produced by a generator from seeds (`replora`: one generator per head; `hora`: one
/// for all heads, with A-seeds shared across heads unless configured otherwise).
pub struct Generated {
    sh: Shape,
    family: Family,
    act: Activation,
    a_per_head: bool,
}

impl Generated {
    fn gen_size(&self) -> usize {
        let Shape { d, q, .. } = self.sh;
        3 * d * d + q * d
    }
    fn gens(&self) -> usize {
        if self.family == Family::Replora {
            self.sh.heads
        } else {
            1
        }
    }
    fn gen_offset(&self, h: usize) -> usize {
        if self.family == Family::Replora {
            h * self.gen_size()
        } else {
            0
        }
    }
    fn a_count(&self) -> usize {
        let per = self.sh.pslots * self.sh.m;
        if self.a_per_head {
            self.sh.heads * per
        } else {
            per
        }
    }
    fn a_offset(&self, h: usize, ps: usize, i: usize) -> usize {
        let Shape { d, r, .. } = self.sh;
        let idx = if self.a_per_head {
            self.sh.patom(h, ps, i)
        } else {
            ps * self.sh.m + i
        };
        self.gens() * self.gen_size() + idx * r * d
    }
    fn b_offset(&self, h: usize, ps: usize, i: usize) -> usize {
        let Shape { d, r, .. } = self.sh;
        self.gens() * self.gen_size() + self.a_count() * r * d + self.sh.patom(h, ps, i) * d * r
    }
    /// Generator blocks `(GAQ, GAV, GBQ, GBV)` offsets of head `h`'s generator.
    fn g_parts(&self, h: usize) -> [usize; 4] {
        let d = self.sh.d;
        let o = self.gen_offset(h);
        [o, o + d * d, o + 2 * d * d, o + 3 * d * d]
    }
}

impl Parametrisation for Generated {
    fn method(&self) -> Method {
        Method::new(self.family, self.act)
    }
    fn dim(&self) -> usize {
        let Shape { d, r, .. } = self.sh;
        self.gens() * self.gen_size() + self.a_count() * r * d + self.sh.patoms() * (d * r + 1)
    }
    fn atoms_per_slot(&self) -> usize {
        self.sh.m
    }
    #[rustfmt::skip]
    fn factors(&self, theta: &[f64], h: usize, ps: usize, i: usize) -> Factors {
        let Shape { d, q, r, .. } = self.sh;
        let [gaq, gav, gbq, gbv] = self.g_parts(h);
        let a = &theta[self.a_offset(h, ps, i)..][..r * d];
        let b = &theta[self.b_offset(h, ps, i)..][..d * r];
        let mut f = Factors {
            aq: vec![0.0; r * d],
            bq: vec![0.0; d * r],
            av: vec![0.0; r * d],
            bv: vec![0.0; q * r],
        };
        matmul(a, false, &theta[gaq..gaq + d * d], false, &mut f.aq, r, d, d, false);
        matmul(a, false, &theta[gav..gav + d * d], false, &mut f.av, r, d, d, false);
        matmul(&theta[gbq..gbq + d * d], false, b, false, &mut f.bq, d, d, r, false);
        matmul(&theta[gbv..gbv + q * d], false, b, false, &mut f.bv, q, d, r, false);
        for v in [&mut f.aq, &mut f.av, &mut f.bq, &mut f.bv] {
            v.iter_mut().for_each(|x| *x = self.act.apply(*x));
        }
        f
    }
    fn c_offset(&self, h: usize, ps: usize, i: usize) -> usize {
        let Shape { d, r, .. } = self.sh;
        self.gens() * self.gen_size()
            + self.a_count() * r * d
            + self.sh.patoms() * d * r
            + self.sh.patom(h, ps, i)
    }
    fn atoms(&self, theta: &[f64], out: &mut Atoms) {
        for_each_atom(&self.sh, |h, ps, i, k| {
            let f = self.factors(theta, h, ps, i);
            write_products(&self.sh, &f, out, k);
            out.c[k] = theta[self.c_offset(h, ps, i)];
        });
    }
    #[rustfmt::skip]
    fn pullback(&self, theta: &[f64], grad: &Atoms, gt: &mut [f64]) {
        let Shape { d, q, r, .. } = self.sh;
        for_each_atom(&self.sh, |h, ps, i, k| {
            let f = self.factors(theta, h, ps, i);
            let mut g = factor_grads(&self.sh, &f, grad.dq(k), grad.dv(k));
            // Through φ: d(pre) = d(out) ⊙ φ'(pre), with φ' written through the output.
            for (gv, fv) in [
                (&mut g.aq, &f.aq),
                (&mut g.av, &f.av),
                (&mut g.bq, &f.bq),
                (&mut g.bv, &f.bv),
            ] {
                for (x, y) in gv.iter_mut().zip(fv.iter()) {
                    *x *= self.act.derivative_from_output(*y);
                }
            }
            let [gaq, gav, gbq, gbv] = self.g_parts(h);
            let ao = self.a_offset(h, ps, i);
            let bo = self.b_offset(h, ps, i);
            let a = theta[ao..ao + r * d].to_vec();
            let b = theta[bo..bo + d * r].to_vec();
            // AQ = φ(Ā·GAQ): dĀ += dpre·GAQᵀ, dGAQ += Āᵀ·dpre (same for V).
            matmul(&g.aq, false, &theta[gaq..gaq + d * d], true, &mut gt[ao..ao + r * d], r, d, d, true);
            matmul(&g.av, false, &theta[gav..gav + d * d], true, &mut gt[ao..ao + r * d], r, d, d, true);
            matmul(&a, true, &g.aq, false, &mut gt[gaq..gaq + d * d], d, r, d, true);
            matmul(&a, true, &g.av, false, &mut gt[gav..gav + d * d], d, r, d, true);
            // BQ = φ(GBQ·B̄): dGBQ += dpre·B̄ᵀ, dB̄ += GBQᵀ·dpre (same for V).
            matmul(&g.bq, false, &b, true, &mut gt[gbq..gbq + d * d], d, r, d, true);
            matmul(&g.bv, false, &b, true, &mut gt[gbv..gbv + q * d], q, r, d, true);
            matmul(&theta[gbq..gbq + d * d], true, &g.bq, false, &mut gt[bo..bo + d * r], d, d, r, true);
            matmul(&theta[gbv..gbv + q * d], true, &g.bv, false, &mut gt[bo..bo + d * r], d, q, r, true);
            gt[self.c_offset(h, ps, i)] += grad.c[k];
        });
    }
    fn new_atoms(&self) -> Atoms {
        self.sh.new_atoms()
    }
    fn as_generated(&self) -> Option<&Generated> {
        Some(self)
    }
}

/// The parametrisation of `method` with `m` atoms per slot.
pub fn parametrisation(method: Method, cfg: &ModelConfig, m: usize) -> Box<dyn Parametrisation> {
    let sh = Shape::new(cfg, m);
    match method.family {
        Family::Lora => Box::new(Lora { sh }),
        family => Box::new(Generated {
            sh,
            family,
            act: method.activation,
            a_per_head: family == Family::Replora || !cfg.share_a_across_heads,
        }),
    }
}

/// The generator-family view of a parameter vector: every head's generator and every
/// (head, parameter slot, atom)'s seeds, whether or not the family shares them.
#[derive(Clone, Debug)]
pub struct Canonical {
    pub activation: Activation,
    pub m: usize,
    /// Per head: `(GAQ, GAV, GBQ, GBV)` flattened.
    pub generators: Vec<Vec<f64>>,
    /// Per (h, ps, i): `Ā (r×d)`, `B̄ (d×r)`, `c`.
    pub a: Vec<Vec<f64>>,
    pub b: Vec<Vec<f64>>,
    pub c: Vec<f64>,
}

impl Generated {
    pub fn to_canonical(&self, theta: &[f64]) -> Canonical {
        let Shape {
            d,
            r,
            heads,
            pslots,
            m,
            ..
        } = self.sh;
        let gs = self.gen_size();
        let generators = (0..heads)
            .map(|h| theta[self.gen_offset(h)..][..gs].to_vec())
            .collect();
        let (mut a, mut b, mut c) = (vec![], vec![], vec![]);
        for h in 0..heads {
            for ps in 0..pslots {
                for i in 0..m {
                    a.push(theta[self.a_offset(h, ps, i)..][..r * d].to_vec());
                    b.push(theta[self.b_offset(h, ps, i)..][..d * r].to_vec());
                    c.push(theta[self.c_offset(h, ps, i)]);
                }
            }
        }
        Canonical {
            activation: self.act,
            m,
            generators,
            a,
            b,
            c,
        }
    }

    /// θ in this layout from a canonical form, its atom 0 of each slot copied into all `m`
    /// atoms with `c` lowered by `ln m` (so the mixing weight of the cell is unchanged).
    /// `None` when the canonical form is outside this family (different activation, generators
    /// that differ across heads for `hora`, A-seeds that differ across heads when shared).
    pub fn from_canonical(&self, can: &Canonical) -> Option<Vec<f64>> {
        let Shape {
            heads, pslots, m, ..
        } = self.sh;
        if can.activation != self.act {
            return None;
        }
        if can.m != 1 && can.m != m {
            return None;
        }
        let src = |h: usize, ps: usize| (h * pslots + ps) * can.m;
        if self.family == Family::Hora && can.generators.iter().any(|g| g != &can.generators[0]) {
            return None;
        }
        if !self.a_per_head {
            for h in 1..heads {
                for ps in 0..pslots {
                    if can.a[src(h, ps)] != can.a[src(0, ps)] {
                        return None;
                    }
                }
            }
        }
        let mut theta = vec![0.0; self.dim()];
        for h in 0..self.gens() {
            theta[self.gen_offset(h)..][..self.gen_size()].copy_from_slice(&can.generators[h]);
        }
        // Spread one source atom over m fitted atoms, or copy atom by atom.
        let shift = if can.m == 1 { (m as f64).ln() } else { 0.0 };
        for h in 0..heads {
            for ps in 0..pslots {
                for i in 0..m {
                    let k = src(h, ps) + if can.m == 1 { 0 } else { i };
                    let ao = self.a_offset(h, ps, i);
                    theta[ao..ao + can.a[k].len()].copy_from_slice(&can.a[k]);
                    let bo = self.b_offset(h, ps, i);
                    theta[bo..bo + can.b[k].len()].copy_from_slice(&can.b[k]);
                    theta[self.c_offset(h, ps, i)] = can.c[k] - shift;
                }
            }
        }
        Some(theta)
    }
}

impl Lora {
    /// θ with the factors of `truth`'s atom 0 of each slot in all `m` atoms, `c` lowered by `ln m`.
    pub fn from_factors(&self, truth: &dyn Parametrisation, truth_theta: &[f64]) -> Vec<f64> {
        let Shape {
            heads, pslots, m, ..
        } = self.sh;
        let mut theta = vec![0.0; self.dim()];
        let shift = (m as f64).ln();
        for h in 0..heads {
            for ps in 0..pslots {
                let f = truth.factors(truth_theta, h, ps, 0);
                let c = truth_theta[truth.c_offset(h, ps, 0)];
                for i in 0..m {
                    let o = self.offset(h, ps, i);
                    let mut at = o;
                    for v in [&f.aq, &f.bq, &f.av, &f.bv] {
                        theta[at..at + v.len()].copy_from_slice(v);
                        at += v.len();
                    }
                    theta[self.c_offset(h, ps, i)] = c - shift;
                }
            }
        }
        theta
    }
}
