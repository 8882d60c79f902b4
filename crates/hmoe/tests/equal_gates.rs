//! THEORY.md §5a for the generator families, through the real parametrisation: two atoms of a
//! slot with equal gates. With `identity` generators their values are equal (no symmetric value
//! split, so no flat set of lora's kind); with `tanh` the equal-gate atoms form a curve whose
//! values move at first order, but a symmetric pair on it misses twice the true value at second
//! order, so `f ≠ f*` along it.
//!
//! Layout used (param.rs): for `hora` with H = S = 1, m = 2, r = 1, d = q = 2, θ is the generator
//! `(GAQ, GAV, GBQ, GBV)` (4 blocks of 2 × 2), the A-seeds of atoms 0 and 1 (1 × 2 each), their
//! B-seeds (2 × 1 each), then `c` of atoms 0 and 1.
use hmoe::param::parametrisation;
use hmoe::{ModelConfig, ParamGuard};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const D: usize = 2;
const G: usize = 4 * D * D;

fn cfg() -> ModelConfig {
    ModelConfig {
        heads: 1,
        slots: 1,
        atoms: 2,
        ..ModelConfig::default()
    }
    .check()
    .unwrap()
    .into_inner()
}

/// 2 × 2 row-major inverse.
fn inv(m: &[f64]) -> [f64; 4] {
    let det = m[0] * m[3] - m[1] * m[2];
    assert!(det.abs() > 1e-3, "a well-conditioned generator block");
    [m[3] / det, -m[1] / det, -m[2] / det, m[0] / det]
}

fn mat_vec(m: &[f64], v: &[f64]) -> [f64; 2] {
    [m[0] * v[0] + m[1] * v[1], m[2] * v[0] + m[3] * v[1]]
}

/// Row vector times matrix.
fn vec_mat(v: &[f64], m: &[f64]) -> [f64; 2] {
    [v[0] * m[0] + v[1] * m[2], v[0] * m[1] + v[1] * m[3]]
}

/// θ with a random generator, atom 0's seeds `(a, b)` random, and atom 1 on the equal-gate
/// curve of atom 0 at scale `mu` (`BQ₁ = μ BQ₀`, `AQ₁ = AQ₀ / μ`), through the activation's
/// inverse `g⁻¹` and the generator blocks' inverses.
fn theta_on_curve(rng: &mut ChaCha8Rng, mu: f64, tanh: bool) -> Vec<f64> {
    let mut th: Vec<f64> = (0..G).map(|_| rng.random_range(-0.8..0.8)).collect();
    // Keep GAQ and GBQ well conditioned: add a diagonal.
    for blk in [0, 2] {
        th[blk * D * D] += 1.0;
        th[blk * D * D + 3] += 1.0;
    }
    let (gaq, gbq) = (th[0..4].to_vec(), th[8..12].to_vec());
    let a0: Vec<f64> = (0..D).map(|_| rng.random_range(-0.5..0.5)).collect();
    let b0: Vec<f64> = (0..D).map(|_| rng.random_range(-0.5..0.5)).collect();
    type Scalar = fn(f64) -> f64;
    let (g, ginv): (Scalar, Scalar) = if tanh {
        (f64::tanh, f64::atanh)
    } else {
        (|x| x, |x| x)
    };
    // AQ₀ = g(a₀ GAQ) (row), BQ₀ = g(GBQ b₀) (column).
    let aq0 = vec_mat(&a0, &gaq).map(g);
    let bq0 = mat_vec(&gbq, &b0).map(g);
    let aq1 = aq0.map(|v| ginv(v / mu));
    let bq1 = bq0.map(|v| ginv(mu * v));
    let a1 = vec_mat(&aq1, &inv(&gaq));
    let b1 = mat_vec(&inv(&gbq), &bq1);
    th.extend_from_slice(&a0);
    th.extend_from_slice(&a1);
    th.extend_from_slice(&b0);
    th.extend_from_slice(&b1);
    th.extend_from_slice(&[0.3, 0.3]);
    th
}

/// (ΔQ₀, ΔQ₁, ΔV₀, ΔV₁) of θ through the real parametrisation.
fn atoms(method: &str, th: &[f64]) -> [Vec<f64>; 4] {
    let c = cfg();
    let p = parametrisation(method.parse().unwrap(), &c, 2);
    assert_eq!(p.dim(), th.len(), "the layout of the module doc");
    let mut a = p.new_atoms();
    p.atoms(th, &mut a);
    [
        a.dq(0).to_vec(),
        a.dq(1).to_vec(),
        a.dv(0).to_vec(),
        a.dv(1).to_vec(),
    ]
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn identity_generators_equal_gates_force_equal_values() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for method in ["hora-identity", "replora-identity"] {
        for mu in [0.3, 0.9, 1.7, -2.5] {
            let th = theta_on_curve(&mut rng, mu, false);
            let [q0, q1, v0, v1] = atoms(method, &th);
            assert!(dist(&q0, &q1) < 1e-12, "{method} μ={mu}: gates differ");
            assert!(
                dist(&v0, &v1) < 1e-12,
                "{method} μ={mu}: values differ by {}",
                dist(&v0, &v1)
            );
            // A different atom 1 (not on the curve) changes both: the test can fail.
            let mut off = th.clone();
            off[G + D] += 0.1;
            let [q0, q1, v0, v1] = atoms(method, &off);
            assert!(dist(&q0, &q1) > 1e-3 && dist(&v0, &v1) > 1e-3);
        }
    }
}

#[test]
fn tanh_generators_equal_gate_pairs_miss_the_value_at_second_order() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for method in ["hora-tanh", "replora-tanh"] {
        for _ in 0..5 {
            let state = rng.clone();
            // The curve through atom 0 (μ = 1 is atom 0 itself): V(μ).
            let value = |mu: f64| {
                let mut r = state.clone();
                let th = theta_on_curve(&mut r, mu, true);
                let [q0, q1, v0, v1] = atoms(method, &th);
                assert!(dist(&q0, &q1) < 1e-12, "{method}: the curve keeps the gate");
                (v0, v1)
            };
            let (v_star, same) = value(1.0);
            assert!(dist(&v_star, &same) < 1e-12);
            let (mut ratio_first, mut ratio_second) = (Vec::new(), Vec::new());
            // Small splits, where the orders separate cleanly (at t = 0.1 the second-order miss can
            // already exceed the first-order move: the curve's values move slowly).
            for t in [0.002, 0.001] {
                let (_, up) = value(1.0 + t);
                let (_, down) = value(1.0 / (1.0 + t));
                let first = dist(&up, &v_star);
                let sum: Vec<f64> = up.iter().zip(&down).map(|(a, b)| a + b).collect();
                let twice: Vec<f64> = v_star.iter().map(|v| 2.0 * v).collect();
                let second = dist(&sum, &twice);
                // The values move along the curve (a split of the value exists), and the
                // symmetric pair misses 2ΔV*: f ≠ f* along it.
                assert!(first > 1e-6, "{method} t={t}: values do not move ({first})");
                assert!(
                    second > 1e-9,
                    "{method} t={t}: the pair hits 2ΔV* ({second})"
                );
                eprintln!("{method} t={t}: |V(1+t) − V*| = {first:.3e}, |V(1+t) + V(1/(1+t)) − 2V*| = {second:.3e}");
                ratio_first.push(first);
                ratio_second.push(second);
            }
            let r1 = ratio_first[0] / ratio_first[1];
            let r2 = ratio_second[0] / ratio_second[1];
            // Halving t halves the move (first order) and quarters the miss (second order).
            assert!((r1 - 2.0).abs() < 0.1, "{method}: first-order ratio {r1}");
            assert!((r2 - 4.0).abs() < 0.2, "{method}: second-order ratio {r2}");
            rng = state;
            let _: f64 = rng.random();
        }
    }
}
