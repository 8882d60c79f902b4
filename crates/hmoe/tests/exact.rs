//! The exact search of issue 26 (`hmoe::exact`): the algebraic conditions for `f_θ = f*` on every
//! input, their Jacobian against finite differences, and the search on them against the one flat
//! set known in closed form (over-specified `lora`), with every member it finds checked on fresh
//! inputs.
mod common;

use common::{config, max_abs, near, FAMILIES};
use hmoe::exact::AlgebraicProbe;
use hmoe::probe::{ratio_at, search, HmoeProbe, Probe, StartKind};
use hmoe::{Method, ModelConfig, TruthPrior};

/// The family `method` with a truth of `truth` (seed 11), `m = 2`, at `cfg`'s sizes, on `inputs`
/// inputs of `seed`.
fn probe_at(cfg: ModelConfig, method: &str, truth: &str, inputs: usize, seed: u64) -> HmoeProbe {
    let cfg = ModelConfig { atoms: 2, ..cfg };
    let (m, t): (Method, Method) = (method.parse().unwrap(), truth.parse().unwrap());
    HmoeProbe::new(
        &cfg,
        &TruthPrior::default(),
        t,
        m,
        11,
        inputs,
        seed,
        4.0,
        2.0,
    )
    .unwrap()
}

/// At the default sizes (the self-attention variant or not).
fn sampled(method: &str, truth: &str, inputs: usize, seed: u64, self_attention: bool) -> HmoeProbe {
    let cfg = ModelConfig {
        self_attention,
        ..ModelConfig::default()
    };
    probe_at(cfg, method, truth, inputs, seed)
}

fn exact(method: &str, truth: &str, self_attention: bool) -> AlgebraicProbe {
    AlgebraicProbe::new(sampled(method, truth, 64, 12, self_attention))
}

#[test]
fn the_conditions_hold_at_the_truth_and_not_away_from_it() {
    for (m, t) in FAMILIES {
        for sa in [false, true] {
            let p = exact(m, t, sa);
            let at = max_abs(p.residuals(p.truth()));
            assert!(
                at < 1e-14,
                "{m} self-attention {sa}: residual {at} at the truth"
            );
            let away = max_abs(p.residuals(&near(&p, 0.05)));
            assert!(away > 1e-3, "{m}: residual {away} away from the truth");
        }
    }
}

#[test]
fn the_jacobian_matches_central_differences() {
    for (m, t) in FAMILIES {
        for sa in [false, true] {
            let p = exact(m, t, sa);
            let theta = near(&p, 0.1);
            let analytic = p.jacobian(&theta);
            let r0 = p.residuals(&theta);
            assert_eq!(analytic.dim(), (r0.len(), theta.len()));
            let mut worst: f64 = 0.0;
            let mut th = theta.clone();
            for j in 0..theta.len() {
                let h = 1e-6;
                th[j] = theta[j] + h;
                let up = p.residuals(&th);
                th[j] = theta[j] - h;
                let down = p.residuals(&th);
                th[j] = theta[j];
                for i in 0..r0.len() {
                    let fd = (up[i] - down[i]) / (2.0 * h);
                    worst = worst.max((fd - analytic[[i, j]]).abs() / (1.0 + fd.abs()));
                }
            }
            assert!(
                worst < 1e-7,
                "{m} self-attention {sa}: worst relative error {worst}"
            );
        }
    }
}

/// Over-specified lora has an exact flat set (THEORY §5a): the search on the conditions reaches
/// them to rounding with D held at ε, and the point it returns gives f_θ = f* on 20,000 fresh
/// inputs to rounding: a constructed member, not a fitted sample.
#[test]
fn the_exact_search_constructs_a_member_of_loras_flat_set() {
    let p = exact("lora", "hora-tanh", false);
    let eps = 0.05;
    let s = search(
        &p,
        &config(eps, vec![(StartKind::Value, 2), (StartKind::Split, 2)]),
    );
    let best = s.best().unwrap();
    assert!(best.misfit < 1e-13, "algebraic residual {}", best.misfit);
    assert!(
        (best.loss / eps - 1.0).abs() < 0.02,
        "D/ε = {}",
        best.loss / eps
    );
    let fresh = sampled("lora", "hora-tanh", 20_000, 99, false);
    let (_, d, misfit) = ratio_at(&fresh, &best.theta);
    assert!(misfit < 1e-13, "misfit on fresh inputs {misfit}");
    assert!((d / eps - 1.0).abs() < 0.02, "D on the fresh probe {d}");
}

/// A point that breaks the conditions has a misfit on inputs: the conditions are not vacuous.
/// hora-identity at the default size has no flat set near the truth by the phase profile (its
/// sampled search settles at R ≈ 1e-3): the exact search settles away from 0 as well.
#[test]
fn where_the_sampled_search_is_bounded_the_exact_one_is_too() {
    let p = exact("hora-identity", "hora-identity", false);
    let eps = 0.05;
    let s = search(
        &p,
        &config(eps, vec![(StartKind::Random, 2), (StartKind::Split, 2)]),
    );
    let best = s.best().unwrap();
    assert!(best.misfit > 1e-4, "algebraic residual {}", best.misfit);
    let fresh = sampled("hora-identity", "hora-identity", 20_000, 99, false);
    let (ratio, _, misfit) = ratio_at(&fresh, &best.theta);
    assert!(misfit > 1e-6 && ratio > 1e-5, "misfit {misfit}, R {ratio}");
}

/// At a size (`d = q`, `r`, `H`).
fn sized(
    method: &str,
    truth: &str,
    d: usize,
    r: usize,
    heads: usize,
    inputs: usize,
    seed: u64,
) -> HmoeProbe {
    let cfg = ModelConfig {
        d,
        q: d,
        r,
        heads,
        ..ModelConfig::default()
    };
    probe_at(cfg, method, truth, inputs, seed)
}

/// Issue 26, item 4: the flat sets beyond lora's, constructed. In cells where the exact search
/// of `identifiability-exact` returned members (replora-tanh at the default size for 3 of its 5
/// truths, hora-tanh and replora-tanh at r = 2 for all 5), the search on the conditions from
/// the drawn truth of seed 11 returns, at D = 0.1, 0.01 and 0.001,
/// a point with f_θ = f* on 20,000 fresh inputs to 1e-12 and D at its ε: members of a set that
/// leaves the truth (D growing along it), constructed and checked, not fitted to a sample. At
/// each, every atom has its cell's true gate and the values have moved: the set is the one of
/// issue 26 (gates fixed, two atoms' values either side of the true one, weighted to it).
/// (hora-tanh with one head, members for 3 of 5 truths, has none for this truth at ε = 0.01
/// from these starts: its cell is mixed, and it is not here.)
#[test]
fn flat_sets_of_the_shared_families_are_constructed() {
    let cells = [
        ("replora-tanh", "hora-tanh", 2, 1, 2),
        ("replora-tanh", "hora-tanh", 2, 2, 2),
        ("hora-tanh", "hora-tanh", 2, 2, 2),
    ];
    for (method, truth, d, r, heads) in cells {
        let p = AlgebraicProbe::new(sized(method, truth, d, r, heads, 16, 12));
        let fresh = sized(method, truth, d, r, heads, 20_000, 99);
        for eps in [0.1, 0.01, 0.001] {
            let mut cfg = config(eps, vec![(StartKind::Random, 2), (StartKind::Gate, 1)]);
            cfg.max_rounds = 400;
            let s = search(&p, &cfg);
            let best = s.best().unwrap();
            let (_, d_fresh, misfit) = ratio_at(&fresh, &best.theta);
            let at = format!("{method} d=q={d} r={r} H={heads} ε={eps}");
            assert!(
                misfit < 1e-12 && best.misfit < 1e-12,
                "{at}: residual {}, fresh misfit {misfit}",
                best.misfit
            );
            assert!((d_fresh / eps - 1.0).abs() < 0.05, "{at}: D = {d_fresh}");
            // What the set is: every atom keeps its cell's true gate, and D comes from the
            // values, which move apart while their weighted sum stays the truth's.
            let states = p.atom_states(&best.theta);
            let gate = states.iter().map(|a| a.gate).fold(0.0, f64::max);
            let value = states.iter().map(|a| a.value).fold(0.0, f64::max);
            assert!(
                gate < 1e-10 && value > 1e-3 * eps.sqrt(),
                "{at}: gate {gate}, value {value}"
            );
        }
    }
}
