//! THEORY.md §5a, the exact flat set of over-specified `lora`: two atoms of a slot with the
//! truth's gate (ΔQ*, c* − ln m) and a symmetric split of the value (a shared A_V,
//! B_V = B_V* ± δ) give f_θ = f* on every input while the Voronoi loss D is positive and grows
//! with δ. The least-squares estimator of this family is therefore a set, not a point.
use hmoe::data::sample_inputs;
use hmoe::param::parametrisation;
use hmoe::truth::{embed, Truth};
use hmoe::{voronoi_loss, ModelConfig, TruthPrior};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// (max relative |f_θ − f*| over inputs, D) for a split of size `delta` in every slot.
fn split(cfg: &ModelConfig, m: usize, delta: f64, seed: u64) -> (f64, f64) {
    let lora = "lora".parse().unwrap();
    let truth = Truth::draw(cfg, &TruthPrior::default(), lora, seed);
    let fitted = parametrisation(lora, cfg, m);
    let mut theta = embed(truth.param.as_ref(), &truth.theta, fitted.as_ref())
        .expect("lora contains a lora truth");
    let (q, r) = (cfg.q, cfg.r);
    for h in 0..cfg.heads {
        for ps in 0..cfg.param_slots() {
            // The embedding gives every copy the truth's factors; split B_V of copies 0 and 1
            // along a fixed direction, so their values sum to 2 ΔV* with the gate untouched.
            for (i, sign) in [(0, 1.0), (1, -1.0)] {
                let bv = fitted.c_offset(h, ps, i) - q * r;
                for (j, t) in theta[bv..bv + q * r].iter_mut().enumerate() {
                    *t += sign * delta * (1.0 + j as f64) / (q * r) as f64;
                }
            }
        }
    }
    let mut est = fitted.new_atoms();
    fitted.atoms(&theta, &mut est);
    let x = sample_inputs(&truth.model, 500, &mut ChaCha8Rng::seed_from_u64(seed + 1));
    let (f, fstar) = (
        truth.model.predict(&est, x.view()),
        truth.model.predict(&truth.atoms, x.view()),
    );
    let scale = fstar.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let err = f
        .iter()
        .zip(fstar.iter())
        .fold(0.0f64, |a, (u, v)| a.max((u - v).abs()))
        / scale;
    (err, voronoi_loss(&est, &truth.atoms, 2.0))
}

#[test]
fn lora_has_an_exact_flat_set_through_the_truth() {
    let mut checked = 0;
    for heads in [1, 2, 3] {
        for slots in [1, 2] {
            for m in [2, 3] {
                for r in [1, 2] {
                    let cfg = ModelConfig {
                        d: 3,
                        q: 2,
                        r,
                        heads,
                        slots,
                        atoms: m,
                        ..ModelConfig::default()
                    };
                    let seed = (100 * heads + 10 * slots + m + 7 * r) as u64;
                    let (e0, d0) = split(&cfg, m, 0.0, seed);
                    let (e1, d1) = split(&cfg, m, 0.3, seed);
                    let (e2, d2) = split(&cfg, m, 0.6, seed);
                    let at = format!("H={heads} S={slots} m={m} r={r}");
                    // No split: the embedded truth itself, D = 0 up to rounding (exp(c − ln m)·m vs exp(c)).
                    assert!(e0 < 1e-12 && d0 < 1e-12, "{at}: {e0} {d0}");
                    // A split: the same function, a positive and growing loss.
                    assert!(e1 < 1e-12 && e2 < 1e-12, "{at}: f moved by {e1}, {e2}");
                    assert!(d1 > 1e-3 && d2 > 2.0 * d1, "{at}: D = {d1}, {d2}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 24);
}

/// The same split with the copies' gates made unequal is no longer flat: the construction, not
/// the test's tolerance, is what keeps f fixed.
#[test]
fn an_unequal_gate_breaks_the_flat_set() {
    let cfg = ModelConfig {
        d: 3,
        atoms: 2,
        ..ModelConfig::default()
    };
    let lora = "lora".parse().unwrap();
    let truth = Truth::draw(&cfg, &TruthPrior::default(), lora, 5);
    let fitted = parametrisation(lora, &cfg, 2);
    let mut theta = embed(truth.param.as_ref(), &truth.theta, fitted.as_ref()).unwrap();
    let bv = fitted.c_offset(0, 0, 0) - cfg.q * cfg.r;
    theta[bv] += 0.3;
    let bv1 = fitted.c_offset(0, 0, 1) - cfg.q * cfg.r;
    theta[bv1] -= 0.3;
    theta[fitted.c_offset(0, 0, 0)] += 0.5;
    let mut est = fitted.new_atoms();
    fitted.atoms(&theta, &mut est);
    let x = sample_inputs(&truth.model, 500, &mut ChaCha8Rng::seed_from_u64(6));
    let diff = (truth.model.predict(&est, x.view()) - truth.model.predict(&truth.atoms, x.view()))
        .iter()
        .fold(0.0f64, |a, v| a.max(v.abs()));
    assert!(diff > 1e-4, "{diff}");
}
