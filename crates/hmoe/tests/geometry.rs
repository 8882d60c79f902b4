//! Local geometry: the Jacobian of f against finite differences, the Jacobi eigenvalues against
//! a matrix built from known ones, and the Gauss–Newton matrix against finite differences in θ;
//! at the truth embedded in over-specified lora, the symmetric value split is a null direction.
use hmoe::data::sample_inputs;
use hmoe::geometry::{gauss_newton, spectrum, symmetric_eigenvalues};
use hmoe::param::parametrisation;
use hmoe::truth::{draw_params, embed, Truth};
use hmoe::{Method, ModelConfig, TruthPrior};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn flat(a: &hmoe::Atoms) -> Vec<f64> {
    a.dq.iter().chain(&a.dv).chain(&a.c).copied().collect()
}

#[test]
fn the_jacobian_of_f_matches_finite_differences() {
    for (method, gate) in [("lora", false), ("hora-tanh", true)] {
        let cfg = ModelConfig {
            atoms: 2,
            outer_gate: gate,
            ..ModelConfig::default()
        };
        let prior = TruthPrior::default();
        let t = Truth::draw(&cfg, &prior, "hora-tanh".parse().unwrap(), 4);
        let p = parametrisation(method.parse().unwrap(), &cfg, 2);
        let theta = draw_params(p.as_ref(), &cfg, &prior, &mut ChaCha8Rng::seed_from_u64(5));
        let mut atoms = p.new_atoms();
        p.atoms(&theta, &mut atoms);
        let x = sample_inputs(&t.model, 7, &mut ChaCha8Rng::seed_from_u64(6));
        let jac = t.model.jacobian_reference(&atoms, x.view());
        let base = flat(&atoms);
        let h = 1e-6;
        let mut worst: f64 = 0.0;
        for i in 0..base.len() {
            let shifted = |delta: f64| {
                let mut a = atoms.clone();
                let (nq, nv) = (a.dq.len(), a.dv.len());
                match i {
                    i if i < nq => a.dq[i] += delta,
                    i if i < nq + nv => a.dv[i - nq] += delta,
                    i => a.c[i - nq - nv] += delta,
                }
                t.model.predict_reference(&a, x.view())
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
            for (r, v) in fd.iter().enumerate() {
                let err = (v - jac[[r, i]]).abs();
                worst = worst.max(err);
                assert!(
                    err < 1e-7,
                    "{method}: column {i}, row {r}: {} vs {v}",
                    jac[[r, i]]
                );
            }
        }
        assert!(jac.iter().any(|v| v.abs() > 1e-3));
        eprintln!("{method}: worst |analytic − finite difference| {worst:.1e}");
    }
}

#[test]
fn jacobi_recovers_known_eigenvalues_including_zero() {
    let n = 9;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // A random orthogonal matrix by Gram–Schmidt.
    let mut q = Array2::<f64>::from_shape_fn((n, n), |_| rng.random_range(-1.0..1.0));
    for j in 0..n {
        for k in 0..j {
            let dot: f64 = (0..n).map(|i| q[[i, j]] * q[[i, k]]).sum();
            for i in 0..n {
                q[[i, j]] -= dot * q[[i, k]];
            }
        }
        let norm: f64 = (0..n).map(|i| q[[i, j]] * q[[i, j]]).sum::<f64>().sqrt();
        for i in 0..n {
            q[[i, j]] /= norm;
        }
    }
    let lambda = [0.0, 1e-9, 1e-4, 0.3, 1.0, 2.0, 2.0, 5.5, 40.0];
    let d = Array2::from_diag(&ndarray::Array1::from(lambda.to_vec()));
    let a = q.dot(&d).dot(&q.t());
    let e = symmetric_eigenvalues(&a);
    for (got, want) in e.iter().zip(lambda) {
        assert!((got - want).abs() < 1e-13 * 40.0, "{got} vs {want}");
    }
    let s = spectrum(&e, 1e-8);
    assert_eq!((s.dim, s.null), (9, 2));
    assert!((s.smallest_nonzero.unwrap() - 1e-4).abs() < 1e-12);
}

#[test]
fn gauss_newton_matches_finite_differences_in_theta() {
    let cfg = ModelConfig {
        atoms: 2,
        ..ModelConfig::default()
    };
    let prior = TruthPrior::default();
    let t = Truth::draw(&cfg, &prior, "hora-tanh".parse().unwrap(), 8);
    for method in ["lora", "replora-tanh", "hora-identity"] {
        let p = parametrisation(method.parse().unwrap(), &cfg, 2);
        let theta = draw_params(p.as_ref(), &cfg, &prior, &mut ChaCha8Rng::seed_from_u64(9));
        let x = sample_inputs(&t.model, 50, &mut ChaCha8Rng::seed_from_u64(10));
        let g = gauss_newton(&t.model, p.as_ref(), &theta, x.view());
        // J_θ by central differences of f, then JᵀJ/n.
        let h = 1e-6;
        let mut atoms = p.new_atoms();
        let mut f = |th: &[f64]| {
            p.atoms(th, &mut atoms);
            t.model.predict_reference(&atoms, x.view())
        };
        let rows = x.nrows() * cfg.q;
        let mut j = Array2::<f64>::zeros((rows, theta.len()));
        for c in 0..theta.len() {
            let (mut tp, mut tm) = (theta.clone(), theta.clone());
            tp[c] += h;
            tm[c] -= h;
            let col = (f(&tp) - f(&tm)) / (2.0 * h);
            for (r, v) in col.iter().enumerate() {
                j[[r, c]] = *v;
            }
        }
        let fd = j.t().dot(&j) / x.nrows() as f64;
        let scale = fd.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = (&g - &fd).iter().fold(0.0f64, |m, v| m.max(v.abs())) / scale;
        assert!(err < 1e-6, "{method}: relative error {err:.1e}");
    }
}

#[test]
fn the_symmetric_value_split_is_a_null_direction_of_overspecified_lora_at_the_truth() {
    let cfg = ModelConfig {
        atoms: 2,
        ..ModelConfig::default()
    };
    let prior = TruthPrior::default();
    let t = Truth::draw(&cfg, &prior, "hora-tanh".parse().unwrap(), 2);
    let lora: Method = "lora".parse().unwrap();
    let p = parametrisation(lora, &cfg, 2);
    let theta = embed(t.param.as_ref(), &t.theta, p.as_ref()).expect("lora contains the truth");
    let x = sample_inputs(&t.model, 2000, &mut ChaCha8Rng::seed_from_u64(3));
    let g = gauss_newton(&t.model, p.as_ref(), &theta, x.view());
    let e = symmetric_eigenvalues(&g);
    let s = spectrum(&e, 1e-10);
    // Along the split the atoms move, f does not: vᵀGv = 0 for v = θ(split) − θ(truth), with the
    // split built in atom space and pulled into θ through the directional derivative.
    let mut a0 = p.new_atoms();
    p.atoms(&theta, &mut a0);
    let m = hmoe::geometry::atoms_jacobian(p.as_ref(), &theta);
    // Look for a θ direction whose image in the atoms is the antisymmetric pair move: among the
    // unit vectors of θ, the difference of the two atoms' same coordinate.
    let mut found = false;
    for c in 0..theta.len() {
        for c2 in c + 1..theta.len() {
            let mut v = vec![0.0; theta.len()];
            v[c] = 1.0;
            v[c2] = -1.0;
            let da = m.dot(&ndarray::Array1::from(v.clone()));
            if da.iter().all(|x| x.abs() < 1e-14) {
                continue;
            }
            let vv = ndarray::Array1::from(v);
            let q = vv.dot(&g.dot(&vv)) / 2.0;
            if q < 1e-12 * s.largest {
                found = true;
            }
        }
    }
    assert!(found, "no null pair direction; spectrum {e:?}");
    assert!(s.null >= cfg.heads * cfg.slots, "{s:?}");
    eprintln!("lora m=2 at the truth: {s:?}");
}
