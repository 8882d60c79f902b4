//! Losses computed from stored estimates only (THEORY.md §4): the Voronoi loss between mixing
//! measures, and the regression-function error on fresh inputs.
use crate::atoms::Atoms;
use crate::config::ValidLoss;
use crate::data::sample_inputs;
use crate::error::{HmoeError, Result};
use crate::model::Model;
use crate::record::{derive_seed, FitRecord};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub(crate) fn frobenius_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// `D(Ĝ, G*)`: the truth has one atom per slot, whose Voronoi cell is the set of fitted atoms of
/// that slot. Mass term `|Σ_cell exp(ĉ) − exp(c*)|`; then, for a cell of one atom,
/// `exp(ĉ)(‖ΔQ̂ − ΔQ*‖ + ‖ΔV̂ − ΔV*‖)`, and for a larger cell `Σ exp(ĉ_i)(‖·‖^ρ + ‖·‖^ρ)`.
pub fn voronoi_loss(est: &Atoms, truth: &Atoms, rho: f64) -> f64 {
    assert_eq!(
        (est.heads, est.slots),
        (truth.heads, truth.slots),
        "atoms of different models"
    );
    assert_eq!(truth.atoms, 1, "the truth has one atom per slot");
    let mut total = 0.0;
    for h in 0..truth.heads {
        for s in 0..truth.slots {
            let t = truth.index(h, s, 0);
            let mut mass = 0.0;
            let mut spread = 0.0;
            for i in 0..est.atoms {
                let k = est.index(h, s, i);
                let w = est.c[k].exp();
                mass += w;
                let (eq, ev) = (
                    frobenius_dist(est.dq(k), truth.dq(t)),
                    frobenius_dist(est.dv(k), truth.dv(t)),
                );
                spread += if est.atoms == 1 {
                    w * (eq + ev)
                } else {
                    w * (eq.powf(rho) + ev.powf(rho))
                };
            }
            total += (mass - truth.c[t].exp()).abs() + spread;
        }
    }
    total
}

/// The Voronoi loss split by what drives it: the mass terms `Σ_cells |Σ exp(ĉ) − exp(c*)|`, and
/// the spread terms of live atoms and of dead ones (weight `exp(ĉ) < dead_weight · exp(c*)` of
/// their cell's true atom: an atom the fit has all but switched off, whose far-away parameters
/// cost little). `mass + spread_live + spread_dead` is [`voronoi_loss`] up to rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VoronoiParts {
    pub mass: f64,
    pub spread_live: f64,
    pub spread_dead: f64,
    /// Fitted atoms counted as dead.
    pub dead_atoms: usize,
}

impl VoronoiParts {
    /// Count one fitted atom of weight `w` in a cell whose true weight is `w_true`, at distances
    /// `gaps` (gate, value) from the true atom: a lone atom in its cell adds `w·(sum of gaps)`,
    /// one of several `w·(gate gap^ρ + value gap^ρ)`, to the live or the dead spread.
    pub fn add_atom(
        &mut self,
        (w, w_true): (f64, f64),
        (g, v): (f64, f64),
        alone: bool,
        rho: f64,
        dead_weight: f64,
    ) {
        let spread = if alone {
            w * (g + v)
        } else {
            w * (g.powf(rho) + v.powf(rho))
        };
        if w < dead_weight * w_true {
            self.spread_dead += spread;
            self.dead_atoms += 1;
        } else {
            self.spread_live += spread;
        }
    }
}

/// [`voronoi_loss`]'s terms, and the dead atoms (see [`VoronoiParts`]). The loop repeats
/// [`voronoi_loss`]'s on purpose: that one's summation order is what every committed table
/// holds, and splitting the spread into two sums here would change its last bits if shared.
pub fn voronoi_parts(est: &Atoms, truth: &Atoms, rho: f64, dead_weight: f64) -> VoronoiParts {
    assert_eq!(
        (est.heads, est.slots, truth.atoms),
        (truth.heads, truth.slots, 1),
        "atoms of different models, or a truth with more than one atom per slot"
    );
    let mut p = VoronoiParts::default();
    for h in 0..truth.heads {
        for s in 0..truth.slots {
            let t = truth.index(h, s, 0);
            let w_true = truth.c[t].exp();
            let mut mass = 0.0;
            for i in 0..est.atoms {
                let k = est.index(h, s, i);
                let w = est.c[k].exp();
                mass += w;
                let gaps = (
                    frobenius_dist(est.dq(k), truth.dq(t)),
                    frobenius_dist(est.dv(k), truth.dv(t)),
                );
                p.add_atom((w, w_true), gaps, est.atoms == 1, rho, dead_weight);
            }
            p.mass += (mass - w_true).abs();
        }
    }
    p
}

/// The Voronoi loss at the end of every logged start of a record (empty for a record written
/// before starts were logged), in the order the starts ran.
pub fn start_losses(rec: &FitRecord, cfg: &ValidLoss) -> Vec<f64> {
    let param = crate::param::parametrisation(rec.job.method, &rec.job.model, rec.job.model.atoms);
    let mut atoms = param.new_atoms();
    rec.outcome
        .starts_log
        .iter()
        .map(|s| {
            param.atoms(&s.theta, &mut atoms);
            voronoi_loss(&atoms, &rec.true_atoms, cfg.rho)
        })
        .collect()
}

/// `‖f̂ − f*‖_{L²}` estimated on `n` fresh inputs drawn from `seed`.
pub fn regression_error(model: &Model, est: &Atoms, truth: &Atoms, n: usize, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = sample_inputs(model, n, &mut rng);
    let diff = model.predict_reference(est, x.view()) - model.predict_reference(truth, x.view());
    (diff.mapv(|v| v * v).sum() / n as f64).sqrt()
}

/// The losses of one record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Losses {
    pub voronoi: f64,
    pub regression: f64,
}

/// Recompute every loss from a stored record alone (the frozen model is redrawn from its seed).
///
/// The record's job was checked when it was read (a [`crate::FitJob`] reads through its check),
/// and `cfg` is a checked [`ValidLoss`]: nothing is re-checked here but the arrays' shapes.
pub fn record_losses(rec: &FitRecord, cfg: &ValidLoss) -> Result<Losses> {
    let (m, t) = (&rec.job.model, &rec.true_atoms);
    for (name, a, atoms) in [("est_atoms", &rec.est_atoms, m.atoms), ("true_atoms", t, 1)] {
        if !a.is_consistent()
            || (a.heads, a.slots, a.atoms, a.d, a.q) != (m.heads, m.slots, atoms, m.d, m.q)
        {
            return Err(HmoeError::Inconsistent(format!(
                "{name} do not match the record's model configuration"
            )));
        }
    }
    let model = Model::frozen(m, rec.seeds.truth);
    let fresh = derive_seed("fresh", &[&rec.seeds.data.to_string()]);
    Ok(Losses {
        voronoi: voronoi_loss(&rec.est_atoms, t, cfg.rho),
        regression: regression_error(&model, &rec.est_atoms, t, cfg.fresh_samples, fresh),
    })
}

/// [`voronoi_loss`] and its gradient in the fitted atoms, written into `grad` (the shape of
/// `est`), with its kinks rounded off at scale `smooth`: every `|x|` that is not squared (the
/// mass terms, and the norms of a cell of one atom) becomes `√(x² + smooth²) − smooth`, which
/// differs from `|x|` by less than `smooth`. `smooth = 0` is [`voronoi_loss`] (same terms in
/// the same order, so equal to rounding; tested) with the subgradient 0 at a kink. The
/// identifiability probe needs the smooth version: its minimisers sit exactly on a kink (the
/// mass of a split cell equals the truth's), where a quasi-Newton method stalls.
pub fn voronoi_loss_and_grad(
    est: &Atoms,
    truth: &Atoms,
    rho: f64,
    smooth: f64,
    grad: &mut Atoms,
) -> f64 {
    assert_eq!(
        (est.heads, est.slots, truth.atoms),
        (truth.heads, truth.slots, 1),
        "atoms of different models, or a truth with more than one atom per slot"
    );
    assert_eq!(grad.count(), est.count(), "gradient of the wrong shape");
    grad.fill_zero();
    // |x| rounded off at `smooth`, and its derivative divided by x.
    let soft = |x: f64| -> (f64, f64) {
        let r = (x * x + smooth * smooth).sqrt();
        (r - smooth, if r > 0.0 { 1.0 / r } else { 0.0 })
    };
    // ‖x‖^p of a distance and (d/d‖x‖)/‖x‖: p = 1 (rounded off) in a cell of one atom.
    let single = est.atoms == 1;
    let power = |x: f64| -> (f64, f64) {
        if single {
            soft(x)
        } else if x > 0.0 {
            (x.powf(rho), rho * x.powf(rho - 2.0))
        } else {
            (0.0, 0.0)
        }
    };
    let mut total = 0.0;
    for h in 0..truth.heads {
        for s in 0..truth.slots {
            let t = truth.index(h, s, 0);
            let mut mass = 0.0;
            let mut spread = 0.0;
            for i in 0..est.atoms {
                let k = est.index(h, s, i);
                let w = est.c[k].exp();
                mass += w;
                let (eq, ev) = (
                    frobenius_dist(est.dq(k), truth.dq(t)),
                    frobenius_dist(est.dv(k), truth.dv(t)),
                );
                let ((pq, sq), (pv, sv)) = (power(eq), power(ev));
                spread += w * (pq + pv);
                grad.c[k] += w * (pq + pv);
                for (scale, e, tr, g) in [
                    (w * sq, est.dq(k), truth.dq(t), &mut grad.dq),
                    (w * sv, est.dv(k), truth.dv(t), &mut grad.dv),
                ] {
                    let b = e.len();
                    for (j, (x, y)) in e.iter().zip(tr).enumerate() {
                        g[k * b + j] += scale * (x - y);
                    }
                }
            }
            let gap = mass - truth.c[t].exp();
            let (abs, slope) = soft(gap);
            for i in 0..est.atoms {
                let k = est.index(h, s, i);
                grad.c[k] += slope * gap * est.c[k].exp();
            }
            total += abs + spread;
        }
    }
    total
}
