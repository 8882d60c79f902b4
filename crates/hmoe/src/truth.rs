//! The truth `G*` (THEORY.md §2–3): drawn from a family with one atom per slot, and embedded into
//! a fitted family (with `m` atoms per slot) when the family contains it.
use crate::atoms::Atoms;
use crate::config::{ModelConfig, TruthPrior};
use crate::method::{Family, Method};
use crate::model::Model;
use crate::param::{parametrisation, Canonical, Parametrisation};
use crate::record::derive_seed;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// `N(0, std²)` truncated at `±2·std` (so the truth lies well inside the parameter box).
pub(crate) fn truncated(rng: &mut impl Rng, std: f64) -> f64 {
    loop {
        let z: f64 = StandardNormal.sample(rng);
        if z.abs() <= 2.0 {
            return std * z;
        }
    }
}

/// Draw θ for a family from the prior: generator weights `N(0, std²/d)` (fan-in scaling keeps the
/// generator's pre-activations of order one), seeds and `lora` factors `N(0, std²)`, all truncated
/// at two standard deviations, and log mixing weights `Uniform[-1/2, 1/2] − ln m`.
pub fn draw_params(
    p: &dyn Parametrisation,
    cfg: &ModelConfig,
    prior: &TruthPrior,
    rng: &mut impl Rng,
) -> Vec<f64> {
    let std = prior.std;
    let m = p.atoms_per_slot();
    let shift = (m as f64).ln();
    let mut theta: Vec<f64> = (0..p.dim()).map(|_| truncated(rng, std)).collect();
    if let Some(g) = p.as_generated() {
        let mut can: Canonical = g.to_canonical(&theta);
        let gscale = 1.0 / (cfg.d as f64).sqrt();
        let first: Vec<f64> = can.generators[0].iter().map(|x| x * gscale).collect();
        for (h, gen) in can.generators.iter_mut().enumerate() {
            if p.method().family == Family::Hora || h == 0 {
                *gen = first.clone();
            } else {
                gen.iter_mut().for_each(|x| *x *= gscale);
            }
        }
        theta = g
            .from_canonical(&can)
            .expect("a canonical form read from this family is in it");
    }
    for h in 0..cfg.heads {
        for ps in 0..cfg.param_slots() {
            for i in 0..m {
                theta[p.c_offset(h, ps, i)] = rng.random_range(-0.5..=0.5) - shift;
            }
        }
    }
    theta
}

/// The truth's parameters in a fitted family's layout, or `None` when the family does not contain
/// the truth (a `lora` truth in a generator family; a different activation; per-head generators
/// in `hora`).
pub fn embed(
    truth: &dyn Parametrisation,
    truth_theta: &[f64],
    target: &dyn Parametrisation,
) -> Option<Vec<f64>> {
    if let Some(l) = target.as_lora() {
        return Some(l.from_factors(truth, truth_theta));
    }
    let (tg, gg) = (truth.as_generated()?, target.as_generated()?);
    gg.from_canonical(&tg.to_canonical(truth_theta))
}

/// The true mixing measure of a (experiment, setting): frozen model, parameters and atoms.
pub struct Truth {
    pub method: Method,
    pub model: Model,
    pub param: Box<dyn Parametrisation>,
    pub theta: Vec<f64>,
    pub atoms: Atoms,
}

impl Truth {
    pub fn draw(cfg: &ModelConfig, prior: &TruthPrior, method: Method, truth_seed: u64) -> Truth {
        let model = Model::frozen(cfg, truth_seed);
        let param = parametrisation(method, cfg, 1);
        let mut rng =
            ChaCha8Rng::seed_from_u64(derive_seed("truth-params", &[&truth_seed.to_string()]));
        let theta = draw_params(param.as_ref(), cfg, prior, &mut rng);
        let mut atoms = param.new_atoms();
        param.atoms(&theta, &mut atoms);
        Truth {
            method,
            model,
            param,
            theta,
            atoms,
        }
    }
}
