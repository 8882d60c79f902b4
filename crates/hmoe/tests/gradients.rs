//! Analytic gradients against central finite differences, for every parametrisation and
//! activation, at m = 1 and m = 2, with untied and tied atoms, with and without the outer gate.
use hmoe::data::sample_data;
use hmoe::fit::{Objective, Smooth};
use hmoe::param::parametrisation;
use hmoe::truth::{draw_params, Truth};
use hmoe::{Activation, DataConfig, Family, FitConfig, Method, ModelConfig, TruthPrior};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn methods() -> Vec<(Method, bool)> {
    // (method, share_a_across_heads): lora, replora × 2 activations, hora × 2 activations, and
    // hora with per-head A-seeds: six parametrisations in all.
    let mut v: Vec<(Method, bool)> = Method::all().into_iter().map(|m| (m, true)).collect();
    v.push((Method::new(Family::Hora, Activation::Tanh), false));
    v
}

fn check(cfg: &ModelConfig, method: Method, seed: u64) {
    let prior = TruthPrior::default();
    let truth = Truth::draw(cfg, &prior, "hora-tanh".parse().unwrap(), seed);
    let (x, y) = sample_data(
        &truth.model,
        &truth.atoms,
        &DataConfig::default(),
        40,
        seed + 1,
    );
    let param = parametrisation(method, cfg, cfg.atoms);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
    let theta = draw_params(param.as_ref(), cfg, &prior, &mut rng);
    let obj = Objective::new(
        &truth.model,
        param.as_ref(),
        x.view(),
        y.view(),
        FitConfig::default().bound,
        1e3,
    );
    let (_, g) = obj.value_and_grad(&theta);
    assert_eq!(g.len(), param.dim());
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for j in 0..theta.len() {
        let mut tp = theta.clone();
        tp[j] += h;
        let mut tm = theta.clone();
        tm[j] -= h;
        let fd = (obj.value_and_grad(&tp).0 - obj.value_and_grad(&tm).0) / (2.0 * h);
        let err = (fd - g[j]).abs() / (1e-4 + fd.abs().max(g[j].abs()));
        worst = worst.max(err);
        assert!(
            err < 1e-5,
            "{method} m={} coordinate {j}: analytic {} vs finite difference {fd}",
            cfg.atoms,
            g[j]
        );
    }
    assert!(
        g.iter().any(|v| v.abs() > 1e-6),
        "{method}: gradient is identically zero"
    );
    eprintln!(
        "{method} m={} tied={} gate={}: worst relative error {worst:.2e}",
        cfg.atoms, cfg.tie_atoms_across_slots, cfg.outer_gate
    );
}

#[test]
fn gradients_match_finite_differences_for_every_parametrisation() {
    for atoms in [1, 2] {
        for (method, share) in methods() {
            let cfg = ModelConfig {
                atoms,
                share_a_across_heads: share,
                ..ModelConfig::default()
            };
            check(&cfg, method, 10 + atoms as u64);
        }
    }
}

#[test]
fn gradients_match_with_tied_atoms_outer_gate_and_larger_sizes() {
    for (method, share) in methods() {
        let cfg = ModelConfig {
            d: 3,
            q: 2,
            r: 2,
            heads: 3,
            slots: 2,
            atoms: 2,
            tie_atoms_across_slots: true,
            outer_gate: true,
            share_a_across_heads: share,
            self_attention: false,
        };
        check(&cfg, method, 99);
        // The self-attention variant: the query of slot s is v_s.
        check(
            &ModelConfig {
                self_attention: true,
                ..cfg
            },
            method,
            98,
        );
    }
}

#[test]
fn penalty_is_zero_inside_the_box_and_its_gradient_matches() {
    let cfg = ModelConfig {
        atoms: 2,
        ..ModelConfig::default()
    };
    let prior = TruthPrior::default();
    let bound = FitConfig::default().bound;
    let truth = Truth::draw(&cfg, &prior, "hora-tanh".parse().unwrap(), 5);
    let (x, y) = sample_data(&truth.model, &truth.atoms, &DataConfig::default(), 30, 6);
    let param = parametrisation("lora".parse().unwrap(), &cfg, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut theta = draw_params(param.as_ref(), &cfg, &prior, &mut rng);
    let obj = Objective::new(&truth.model, param.as_ref(), x.view(), y.view(), bound, 1e3);
    // Inside: the penalised objective equals the plain one, value and gradient, exactly.
    let (f, g) = obj.value_and_grad(&theta);
    let (fp, gp) = obj.penalised(&theta);
    assert_eq!(f, fp);
    assert_eq!(g, gp);
    // Outside: positive penalty, gradient by finite differences.
    theta[0] = bound + 0.3;
    theta[1] = -bound - 0.2;
    let (f, _) = obj.value_and_grad(&theta);
    let (fp, gp) = obj.penalised(&theta);
    assert!((fp - f - 1e3 * (0.09 + 0.04)).abs() < 1e-9);
    for j in [0, 1, 2] {
        let h = 1e-6;
        let (mut tp, mut tm) = (theta.clone(), theta.clone());
        tp[j] += h;
        tm[j] -= h;
        let fd = (obj.penalised(&tp).0 - obj.penalised(&tm).0) / (2.0 * h);
        assert!(
            (fd - gp[j]).abs() < 1e-4 * (1.0 + fd.abs()),
            "coordinate {j}: {fd} vs {}",
            gp[j]
        );
    }
}
