//! THEORY.md §5a, what shared seeds do to `lora`'s flat set. In `replora` and `hora` the seed
//! `B̄` drives both `BQ = φ(GBQ·B̄)` and `BV = φ(GBV·B̄)`, and `Ā` drives `AQ` and `AV`. With
//! rank 1 and invertible `GBQ`, `GAQ`, an atom has the truth's gate `ΔQ*` exactly when
//! `φ(GBQ·B̄) = μ·φ(GBQ·B̄*)` and `φ(Ā·GAQ) = φ(Ā*·GAQ)/μ` for some scale μ (a rank-one matrix
//! factors uniquely up to that scale), so scanning μ walks the whole equal-gate set. These tests
//! build that set from the parametrisation and measure what it does to the values:
//! - `identity` generators: every μ gives `ΔV = ΔV*`, so equal gates force equal values and the
//!   two-atom pair is the embedded truth itself (D = 0), no split;
//! - `tanh` generators: a pair at μ = 1 ± t has values that differ from `ΔV*` at first order in t,
//!   but their sum misses `2ΔV*` at second order, so `f ≠ f*`: no exact flat set.
use hmoe::data::sample_inputs;
use hmoe::param::{parametrisation, Parametrisation};
use hmoe::truth::{embed, Truth};
use hmoe::{voronoi_loss, Activation, Atoms, ModelConfig, TruthPrior};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Solve `a x = b` (n×n, row-major) by Gaussian elimination with partial pivoting.
fn solve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut m: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut row = a[i * n..(i + 1) * n].to_vec();
            row.push(b[i]);
            row
        })
        .collect();
    for col in 0..n {
        let p = (col..n)
            .max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))
            .unwrap();
        m.swap(col, p);
        assert!(m[col][col].abs() > 1e-8, "singular generator block");
        let pivot = m[col].clone();
        for row in m.iter_mut().skip(col + 1) {
            let f = row[col] / pivot[col];
            for (x, p) in row.iter_mut().zip(&pivot).skip(col) {
                *x -= f * p;
            }
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| m[i][k] * x[k]).sum();
        x[i] = (m[i][n] - s) / m[i][i];
    }
    x
}

fn inverse(act: Activation, y: f64) -> f64 {
    match act {
        Activation::Identity => y,
        Activation::Tanh => {
            assert!(y.abs() < 1.0, "μ·tanh out of range: {y}");
            y.atanh()
        }
    }
}

struct Setup {
    truth: Truth,
    fitted: Box<dyn Parametrisation>,
    cfg: ModelConfig,
}

fn setup(method: &str, heads: usize, seed: u64) -> Setup {
    let cfg = ModelConfig {
        d: 3,
        q: 2,
        r: 1,
        heads,
        slots: 2,
        atoms: 2,
        ..ModelConfig::default()
    };
    let method = method.parse().unwrap();
    let truth = Truth::draw(&cfg, &TruthPrior::default(), method, seed);
    let fitted = parametrisation(method, &cfg, 2);
    Setup { truth, fitted, cfg }
}

/// Atoms of the two-copy embedding of the truth with atom `i` of every slot moved along the
/// equal-gate curve to scale `mus[i]`.
fn on_gate_curve(s: &Setup, mus: [f64; 2]) -> Atoms {
    let d = s.cfg.d;
    let g = s.fitted.as_generated().expect("a generator family");
    let theta = embed(s.truth.param.as_ref(), &s.truth.theta, s.fitted.as_ref()).unwrap();
    let mut can = g.to_canonical(&theta);
    let act = can.activation;
    let pslots = s.cfg.param_slots();
    for h in 0..s.cfg.heads {
        let gen = &can.generators[h];
        let gaq = &gen[0..d * d];
        let gbq = &gen[2 * d * d..3 * d * d];
        let gaq_t: Vec<f64> = (0..d * d).map(|k| gaq[(k % d) * d + k / d]).collect();
        for ps in 0..pslots {
            for (i, &mu) in mus.iter().enumerate() {
                let k = (h * pslots + ps) * 2 + i;
                let (a, b) = (can.a[k].clone(), can.b[k].clone());
                // u = GBQ·B̄ → φ⁻¹(μ φ(u)); w = Ā·GAQ → φ⁻¹(φ(w)/μ).
                let u: Vec<f64> = (0..d)
                    .map(|row| (0..d).map(|l| gbq[row * d + l] * b[l]).sum::<f64>())
                    .collect();
                let w: Vec<f64> = (0..d)
                    .map(|col| (0..d).map(|l| a[l] * gaq[l * d + col]).sum::<f64>())
                    .collect();
                let u2: Vec<f64> = u.iter().map(|&x| inverse(act, mu * act.apply(x))).collect();
                let w2: Vec<f64> = w.iter().map(|&x| inverse(act, act.apply(x) / mu)).collect();
                can.b[k] = solve(gbq, &u2);
                can.a[k] = solve(&gaq_t, &w2);
            }
        }
    }
    let theta = g
        .from_canonical(&can)
        .expect("the construction stays in the family (shared Ā moves alike in every head)");
    let mut est = s.fitted.new_atoms();
    s.fitted.atoms(&theta, &mut est);
    est
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Over every (head, slot): (max |ΔQ_i − ΔQ*| over both atoms, max |ΔV_0 − ΔV*|,
/// max |ΔV_0 + ΔV_1 − 2ΔV*|), each relative to max |ΔV*| resp. |ΔQ*|.
fn deviations(s: &Setup, est: &Atoms) -> (f64, f64, f64) {
    let t = &s.truth.atoms;
    let (mut gate, mut first, mut pair) = (0.0f64, 0.0f64, 0.0f64);
    for h in 0..s.cfg.heads {
        for sl in 0..s.cfg.slots {
            let k = t.index(h, sl, 0);
            let (k0, k1) = (est.index(h, sl, 0), est.index(h, sl, 1));
            let (qs, vs) = (max_abs(t.dq(k)), max_abs(t.dv(k)));
            for kk in [k0, k1] {
                let dq: Vec<f64> = est.dq(kk).iter().zip(t.dq(k)).map(|(a, b)| a - b).collect();
                gate = gate.max(max_abs(&dq) / qs);
            }
            let v0: Vec<f64> = est.dv(k0).iter().zip(t.dv(k)).map(|(a, b)| a - b).collect();
            let sum: Vec<f64> = (0..t.dv(k).len())
                .map(|j| est.dv(k0)[j] + est.dv(k1)[j] - 2.0 * t.dv(k)[j])
                .collect();
            first = first.max(max_abs(&v0) / vs);
            pair = pair.max(max_abs(&sum) / vs);
        }
    }
    (gate, first, pair)
}

/// max |f_θ − f*| / max |f*| on 500 inputs.
fn f_gap(s: &Setup, est: &Atoms, seed: u64) -> f64 {
    let x = sample_inputs(&s.truth.model, 500, &mut ChaCha8Rng::seed_from_u64(seed));
    let f = s.truth.model.predict(est, x.view());
    let fstar = s.truth.model.predict(&s.truth.atoms, x.view());
    let diff: Vec<f64> = f.iter().zip(fstar.iter()).map(|(a, b)| a - b).collect();
    max_abs(&diff) / fstar.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

#[test]
fn identity_generators_equal_gates_force_equal_values() {
    let mut checked = 0;
    for (method, heads) in [
        ("replora-identity", 1),
        ("replora-identity", 2),
        ("hora-identity", 2),
        ("hora-identity", 3),
    ] {
        for seed in [3u64, 11] {
            let s = setup(method, heads, seed);
            for lambda in [0.25, 0.6, 1.7, 4.0] {
                let est = on_gate_curve(&s, [1.0, lambda]);
                let (gate, first, pair) = deviations(&s, &est);
                let at = format!("{method} H={heads} seed={seed} λ={lambda}");
                // The construction keeps the gate; with identity generators the value follows it.
                assert!(gate < 1e-10, "{at}: gate moved by {gate}");
                assert!(first < 1e-10 && pair < 1e-10, "{at}: values {first} {pair}");
                // So the pair is the embedded truth: f = f* and no split, D = 0.
                let gap = f_gap(&s, &est, seed + 1);
                let dl = voronoi_loss(&est, &s.truth.atoms, 2.0);
                assert!(gap < 1e-12 && dl < 1e-10, "{at}: f gap {gap}, D {dl}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 32);
}

#[test]
fn tanh_generators_pair_misses_the_value_at_second_order() {
    let mut checked = 0;
    for (method, heads) in [("replora-tanh", 1), ("replora-tanh", 2), ("hora-tanh", 2)] {
        for seed in [3u64, 11] {
            let s = setup(method, heads, seed);
            let t = 0.002;
            let (g1, f1, p1) = deviations(&s, &on_gate_curve(&s, [1.0 + t, 1.0 - t]));
            let (g2, f2, p2) = deviations(&s, &on_gate_curve(&s, [1.0 + t / 2.0, 1.0 - t / 2.0]));
            let at = format!("{method} H={heads} seed={seed}");
            assert!(g1 < 1e-10 && g2 < 1e-10, "{at}: gate moved by {g1}, {g2}");
            // One atom's value leaves ΔV* at first order in t ...
            let r1 = f1 / f2;
            assert!(
                f1 > 1e-3 && (1.8..2.2).contains(&r1),
                "{at}: first order {f1}/{f2} = {r1}"
            );
            // ... the symmetric pair's sum only at second order, and not at zero.
            let r2 = p1 / p2;
            assert!(
                p1 > 1e-6 && (3.5..4.5).contains(&r2),
                "{at}: second order {p1}/{p2} = {r2}"
            );
            assert!(
                p1 < 0.5 * f1,
                "{at}: the pair's miss {p1} is not below the atom's {f1}"
            );
            // So f ≠ f*: the equal-gate split is not a flat set.
            let gap = f_gap(&s, &on_gate_curve(&s, [1.0 + t, 1.0 - t]), seed + 1);
            assert!(gap > 1e-7, "{at}: f gap {gap}");
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}
