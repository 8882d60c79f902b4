//! The HMoE regression function `f(X)` of THEORY.md §1 and its gradient with respect to atoms.
//!
//! Inner level: per head, a softmax over its `S·m` experts plus one frozen sink expert (score 0,
//! output 0). Outer level: a fixed average over heads, or a frozen softmax gate on the query.
//! Scores are shifted by their maximum (the sink's 0 included) before exponentiation, so no
//! `exp` overflows whatever the parameters.
use crate::atoms::Atoms;
use crate::config::ModelConfig;
use crate::kernel::{self, Isa, Prepared};
use crate::record::derive_seed;
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The frozen pre-trained part: gate matrices `P[h,s]` (`d × d`), value matrices `E[h,s]`
/// (`q × d`), and the optional outer gate `γ_h ∈ R^d`.
#[derive(Clone, Debug)]
pub struct Model {
    pub cfg: ModelConfig,
    /// `H·S` blocks of `d × d`, row-major, block `(h, s)` at `h·S + s`.
    pub p: Vec<f64>,
    /// `H·S` blocks of `q × d`.
    pub e: Vec<f64>,
    /// `H × d` when the outer gate is on.
    pub gamma: Option<Vec<f64>>,
}

/// Buffers reused across samples and calls: the hot loop allocates nothing.
#[derive(Default)]
pub struct Workspace {
    pub(crate) gate: Vec<f64>,
    pub(crate) value: Vec<f64>,
    score: Vec<f64>,
    y: Vec<f64>,
    prob: Vec<f64>,
    fh: Vec<f64>,
    pi: Vec<f64>,
    f: Vec<f64>,
    /// `u v_sᵀ` of the current sample (`v_s v_sᵀ` in the self-attention variant), one `d × d`
    /// block per slot: the score of every atom of slot `s` is `c + ⟨P + ΔQ, u v_sᵀ⟩`, and its
    /// gradient in ΔQ is a multiple of the same block.
    uv: Vec<f64>,
}

impl Workspace {
    /// The effective matrices of the last [`Workspace::prepare`], as the batched kernel reads them.
    pub(crate) fn prepared<'a>(&'a self, model: &'a Model, atoms: &'a Atoms) -> Prepared<'a> {
        Prepared {
            heads: atoms.heads,
            slots: atoms.slots,
            m: atoms.atoms,
            d: model.cfg.d,
            q: model.cfg.q,
            gate: &self.gate,
            value: &self.value,
            c: &atoms.c,
            gamma: model.gamma.as_deref(),
            self_attention: model.cfg.self_attention,
        }
    }

    pub(crate) fn prepare(&mut self, model: &Model, atoms: &Atoms) {
        let (d, q, k) = (model.cfg.d, model.cfg.q, atoms.count());
        let h = model.cfg.heads;
        resize(&mut self.gate, k * d * d);
        resize(&mut self.value, k * q * d);
        resize(&mut self.score, k);
        resize(&mut self.y, k * q);
        resize(&mut self.prob, k);
        resize(&mut self.fh, h * q);
        resize(&mut self.pi, h);
        resize(&mut self.f, q);
        resize(&mut self.uv, atoms.slots * d * d);
        // Effective per-atom matrices P + ΔQ and E + ΔV, computed once per call.
        for hh in 0..atoms.heads {
            for s in 0..atoms.slots {
                let blk = hh * atoms.slots + s;
                for i in 0..atoms.atoms {
                    let kk = atoms.index(hh, s, i);
                    let g = &mut self.gate[kk * d * d..(kk + 1) * d * d];
                    for (j, gj) in g.iter_mut().enumerate() {
                        *gj = model.p[blk * d * d + j] + atoms.dq(kk)[j];
                    }
                    let v = &mut self.value[kk * q * d..(kk + 1) * q * d];
                    for (j, vj) in v.iter_mut().enumerate() {
                        *vj = model.e[blk * q * d + j] + atoms.dv(kk)[j];
                    }
                }
            }
        }
    }
}

fn resize(v: &mut Vec<f64>, n: usize) {
    v.clear();
    v.resize(n, 0.0);
}

impl Model {
    /// Draw the frozen part from a seed (entries `N(0, 1/d)`, so scores are of order one).
    pub fn frozen(cfg: &ModelConfig, truth_seed: u64) -> Model {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed("frozen", &[&truth_seed.to_string()]));
        let scale = 1.0 / (cfg.d as f64).sqrt();
        let mut draw = |k: usize| -> Vec<f64> {
            (0..k)
                .map(|_| {
                    scale * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng)
                })
                .collect::<Vec<f64>>()
        };
        let hs = cfg.heads * cfg.slots;
        let p = draw(hs * cfg.d * cfg.d);
        let e = draw(hs * cfg.q * cfg.d);
        let gamma = cfg.outer_gate.then(|| draw(cfg.heads * cfg.d));
        Model {
            cfg: cfg.clone(),
            p,
            e,
            gamma,
        }
    }

    /// Compute `f` for one sample into `ws.f`, leaving the per-atom quantities the gradient needs.
    #[inline]
    fn forward_one(&self, atoms: &Atoms, row: &[f64], ws: &mut Workspace) {
        let (d, q) = (self.cfg.d, self.cfg.q);
        let u = &row[..d];
        let (slots, m) = (atoms.slots, atoms.atoms);
        // Outer weights π_h.
        match &self.gamma {
            None => ws.pi.iter_mut().for_each(|p| *p = 1.0 / atoms.heads as f64),
            Some(g) => {
                let mut mx = f64::NEG_INFINITY;
                for h in 0..atoms.heads {
                    let z: f64 = (0..d).map(|j| g[h * d + j] * u[j]).sum();
                    ws.pi[h] = z;
                    mx = mx.max(z);
                }
                let mut tot = 0.0;
                for p in ws.pi.iter_mut() {
                    *p = (*p - mx).exp();
                    tot += *p;
                }
                ws.pi.iter_mut().for_each(|p| *p /= tot);
            }
        }
        ws.f.iter_mut().for_each(|x| *x = 0.0);
        for s in 0..slots {
            let v = &row[(s + 1) * d..(s + 2) * d];
            // The gate's query: `u`, or the token itself in the self-attention variant.
            let query = if self.cfg.self_attention { v } else { u };
            for (a, blk) in ws.uv[s * d * d..(s + 1) * d * d]
                .chunks_exact_mut(d)
                .enumerate()
            {
                for (o, vb) in blk.iter_mut().zip(v) {
                    *o = query[a] * vb;
                }
            }
        }
        for h in 0..atoms.heads {
            let base = h * slots * m;
            let mut mx = 0.0f64; // the sink's score
            for s in 0..slots {
                let v = &row[(s + 1) * d..(s + 2) * d];
                let uv = &ws.uv[s * d * d..(s + 1) * d * d];
                for i in 0..m {
                    let k = base + s * m + i;
                    let g = &ws.gate[k * d * d..(k + 1) * d * d];
                    let sc = atoms.c[k] + g.iter().zip(uv).map(|(a, b)| a * b).sum::<f64>();
                    ws.score[k] = sc;
                    mx = mx.max(sc);
                    let val = &ws.value[k * q * d..(k + 1) * q * d];
                    for (yk, vrow) in ws.y[k * q..(k + 1) * q].iter_mut().zip(val.chunks_exact(d)) {
                        *yk = vrow.iter().zip(v).map(|(a, b)| a * b).sum();
                    }
                }
            }
            let mut z = (-mx).exp();
            for k in base..base + slots * m {
                let w = (ws.score[k] - mx).exp();
                ws.prob[k] = w;
                z += w;
            }
            let fh = &mut ws.fh[h * q..(h + 1) * q];
            fh.iter_mut().for_each(|x| *x = 0.0);
            for k in base..base + slots * m {
                ws.prob[k] /= z;
                for (f, y) in fh.iter_mut().zip(&ws.y[k * q..(k + 1) * q]) {
                    *f += ws.prob[k] * y;
                }
            }
            for (f, fa) in ws.f.iter_mut().zip(fh.iter()) {
                *f += ws.pi[h] * fa;
            }
        }
    }

    pub(crate) fn check_shapes(&self, atoms: &Atoms, x: &ArrayView2<f64>) {
        assert_eq!(
            atoms.heads, self.cfg.heads,
            "atoms have the wrong number of heads"
        );
        assert_eq!(
            atoms.slots, self.cfg.slots,
            "atoms have the wrong number of slots"
        );
        assert_eq!(
            (atoms.d, atoms.q),
            (self.cfg.d, self.cfg.q),
            "atoms have the wrong d or q"
        );
        assert_eq!(
            x.ncols(),
            (self.cfg.slots + 1) * self.cfg.d,
            "inputs have the wrong width"
        );
    }

    /// `f(X)` for a batch, with the batched kernel on the widest instruction set available
    /// (the same bits on every one: see [`crate::kernel`]).
    ///
    /// # Shapes
    /// `x`: `n × (S+1)d`, rows `(u, v_1, …, v_S)`; returns `n × q`.
    pub fn predict(&self, atoms: &Atoms, x: ArrayView2<f64>) -> Array2<f64> {
        self.predict_with(Isa::best(), atoms, x)
    }

    /// [`Model::predict`] with a chosen instruction-set variant (for tests and benchmarks).
    /// Panics if the CPU lacks it.
    pub fn predict_with(&self, isa: Isa, atoms: &Atoms, x: ArrayView2<f64>) -> Array2<f64> {
        self.check_shapes(atoms, &x);
        let mut ws = Workspace::default();
        ws.prepare(self, atoms);
        let xs = x.as_standard_layout();
        let flat = xs.as_slice().expect("standard layout");
        let out = kernel::predict(isa, &ws.prepared(self, atoms), flat, x.nrows());
        Array2::from_shape_vec((x.nrows(), self.cfg.q), out).expect("n × q outputs")
    }

    /// `f(X)` by the per-sample reference loop: the oracle of the batched kernel. The data
    /// (`Y = f*(X) + ε`) and the regression-error metric use it, so they are unchanged since the
    /// first committed records.
    pub fn predict_reference(&self, atoms: &Atoms, x: ArrayView2<f64>) -> Array2<f64> {
        self.check_shapes(atoms, &x);
        let mut ws = Workspace::default();
        ws.prepare(self, atoms);
        let mut out = Array2::zeros((x.nrows(), self.cfg.q));
        let xs = x.as_standard_layout();
        for (k, row) in xs.rows().into_iter().enumerate() {
            self.forward_one(atoms, row.as_slice().expect("standard layout"), &mut ws);
            for a in 0..self.cfg.q {
                out[[k, a]] = ws.f[a];
            }
        }
        out
    }

    /// The objective `(1/n) Σ_k ‖Y_k − f(X_k)‖²` and its gradient with respect to the atoms
    /// (written into `grad`, which must have the shape of `atoms`), by the batched kernel on the
    /// widest instruction set available ([`crate::kernel`]); chunks of samples run on the current
    /// rayon pool, with the same bits at any thread count.
    pub fn objective_and_grad(
        &self,
        atoms: &Atoms,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        grad: &mut Atoms,
        ws: &mut Workspace,
    ) -> f64 {
        self.objective_and_grad_with(Isa::best(), atoms, x, y, grad, ws)
    }

    /// [`Model::objective_and_grad`] with a chosen instruction-set variant (for tests and
    /// benchmarks). Panics if the CPU lacks it.
    pub fn objective_and_grad_with(
        &self,
        isa: Isa,
        atoms: &Atoms,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        grad: &mut Atoms,
        ws: &mut Workspace,
    ) -> f64 {
        self.check_shapes(atoms, &x);
        assert_eq!(grad.count(), atoms.count());
        assert_eq!(
            y.dim(),
            (x.nrows(), self.cfg.q),
            "responses have the wrong shape"
        );
        ws.prepare(self, atoms);
        let (xs, ys) = (x.as_standard_layout(), y.as_standard_layout());
        let (xf, yf) = (
            xs.as_slice().expect("standard layout"),
            ys.as_slice().expect("standard layout"),
        );
        kernel::objective_and_grad(isa, &ws.prepared(self, atoms), xf, yf, x.nrows(), grad)
    }

    /// The reference implementation of [`Model::objective_and_grad`]: one sample at a time, sums
    /// in sample order. The oracle of the batched kernel in tests and its baseline in benchmarks.
    ///
    /// With `p_j` the softmax weight of expert `j` in head `h`, `y_j = (E + ΔV_j) v_s` and
    /// `g = ∂ℓ/∂f`: `∂ℓ/∂score_j = p_j π_h gᵀ(y_j − f_h)`, from which
    /// `∂ℓ/∂c_j = ∂ℓ/∂score_j`, `∂ℓ/∂ΔQ_j = ∂ℓ/∂score_j · u v_sᵀ`, `∂ℓ/∂ΔV_j = p_j π_h g v_sᵀ`.
    pub fn objective_and_grad_reference(
        &self,
        atoms: &Atoms,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        grad: &mut Atoms,
        ws: &mut Workspace,
    ) -> f64 {
        self.check_shapes(atoms, &x);
        assert_eq!(grad.count(), atoms.count());
        let (d, q) = (self.cfg.d, self.cfg.q);
        let n = x.nrows();
        ws.prepare(self, atoms);
        grad.fill_zero();
        let (slots, m) = (atoms.slots, atoms.atoms);
        let scale = 1.0 / n as f64;
        let mut total = 0.0;
        let mut gvec = [0.0f64; 64];
        for k in 0..n {
            let row = x.row(k);
            let row = row.as_slice().expect("inputs must be in standard layout");
            self.forward_one(atoms, row, ws);
            for a in 0..q {
                let r = ws.f[a] - y[[k, a]];
                total += r * r;
                gvec[a] = 2.0 * r * scale;
            }
            for h in 0..atoms.heads {
                let pi = ws.pi[h];
                let fh = &ws.fh[h * q..(h + 1) * q];
                for s in 0..slots {
                    let v = &row[(s + 1) * d..(s + 2) * d];
                    for i in 0..m {
                        let j = (h * slots + s) * m + i;
                        let pj = ws.prob[j] * pi;
                        let mut delta = 0.0;
                        for a in 0..q {
                            delta += gvec[a] * (ws.y[j * q + a] - fh[a]);
                        }
                        delta *= pj;
                        grad.c[j] += delta;
                        let uv = &ws.uv[s * d * d..(s + 1) * d * d];
                        for (gq, x) in grad.dq_mut(j).iter_mut().zip(uv) {
                            *gq += delta * x;
                        }
                        for (grow, ga) in grad.dv_mut(j).chunks_exact_mut(d).zip(&gvec[..q]) {
                            let w = pj * ga;
                            for (g, vb) in grow.iter_mut().zip(v) {
                                *g += w * vb;
                            }
                        }
                    }
                }
            }
        }
        total * scale
    }

    /// `∂f(X_k)/∂atoms` for every sample, by the reference forward pass: rows `k·q + a` (sample
    /// `k`, output `a`), columns the atoms flattened as `dq`, `dv`, `c`. With `p_j` the softmax
    /// weight of atom `j` in head `h`: `∂f_a/∂c_j = π_h p_j (y_ja − f_ha)`,
    /// `∂f_a/∂ΔQ_j = ∂f_a/∂c_j · u v_sᵀ`, `∂f_a/∂ΔV_j[o, ·] = π_h p_j [a = o] v_sᵀ`.
    pub fn jacobian_reference(&self, atoms: &Atoms, x: ArrayView2<f64>) -> Array2<f64> {
        self.check_shapes(atoms, &x);
        let (d, q) = (self.cfg.d, self.cfg.q);
        let (slots, m) = (atoms.slots, atoms.atoms);
        let (nq, nv) = (atoms.dq.len(), atoms.dv.len());
        let mut ws = Workspace::default();
        ws.prepare(self, atoms);
        let xs = x.as_standard_layout();
        let mut jac = Array2::zeros((x.nrows() * q, nq + nv + atoms.c.len()));
        for (k, row) in xs.rows().into_iter().enumerate() {
            let row = row.as_slice().expect("standard layout");
            self.forward_one(atoms, row, &mut ws);
            for h in 0..atoms.heads {
                for s in 0..slots {
                    let v = &row[(s + 1) * d..(s + 2) * d];
                    let uv = &ws.uv[s * d * d..(s + 1) * d * d];
                    for i in 0..m {
                        let j = (h * slots + s) * m + i;
                        let pj = ws.prob[j] * ws.pi[h];
                        for a in 0..q {
                            let mut out = jac.row_mut(k * q + a);
                            let dc = pj * (ws.y[j * q + a] - ws.fh[h * q + a]);
                            out[nq + nv + j] = dc;
                            for (t, x) in uv.iter().enumerate() {
                                out[j * d * d + t] = dc * x;
                            }
                            for (b, vb) in v.iter().enumerate() {
                                out[nq + j * q * d + a * d + b] = pj * vb;
                            }
                        }
                    }
                }
            }
        }
        jac
    }

    /// The objective alone.
    pub fn objective(&self, atoms: &Atoms, x: ArrayView2<f64>, y: ArrayView2<f64>) -> f64 {
        let f = self.predict(atoms, x);
        (&f - &y).mapv(|r| r * r).sum() / x.nrows() as f64
    }
}
