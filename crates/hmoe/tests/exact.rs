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

/// Issue 26, item 4: the flat sets of the tanh families, constructed. In every cell where the
/// exact search of `identifiability-exact` returned members for at least four of five truths
/// (replora-tanh and hora-tanh at r = 2, at d = q = 3 and at d = q = 4 with r = 4;
/// replora-tanh at d = q = 4 and at H = 4 with r = 2), and at the default size (replora-tanh,
/// 3 of 5), the search on the conditions from the drawn truth of seed 11 returns, at D = 0.1,
/// 0.01 and 0.001,
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
        ("replora-tanh", "hora-tanh", 3, 1, 2),
        ("hora-tanh", "hora-tanh", 3, 1, 2),
        ("replora-tanh", "hora-tanh", 2, 2, 4),
        ("replora-tanh", "hora-tanh", 4, 1, 2),
        ("replora-tanh", "hora-tanh", 4, 4, 2),
        ("hora-tanh", "hora-tanh", 4, 4, 2),
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

/// Issue 26, item 4: the flat set of the identity-generator families in closed form
/// (`hmoe::construct::null_space_split`). Wherever the A-seed rows a generator serves leave a
/// direction `n` of `R^d` free (`d = q ≥ 3` with r = 1 and two slots), projecting `n` out of
/// `GAQ` and moving the two atoms of every cell's seeds by `±t·n` keeps every gate and averages
/// the values back to the truth's: f_θ = f* on 20,000 fresh inputs to 1e-12, D > 0 and growing
/// in proportion to t, inside the box. It holds for every truth drawn (five here), in both
/// families, with two heads or four and over-specified by one or two atoms: hora-identity's
/// `bounded` or `falling` cells at these sizes are where both searches missed this set.
#[test]
fn identity_generators_have_a_null_space_flat_set_when_d_exceeds_the_seed_rows() {
    use hmoe::construct::null_space_split;
    let sizes = [
        // (d = q, r, heads, atoms)
        (3, 1, 2, 2),
        (4, 1, 2, 2),
        (3, 1, 4, 2),
        (3, 1, 2, 3),
    ];
    for (method, truth) in [
        ("replora-identity", "hora-identity"),
        ("hora-identity", "hora-identity"),
    ] {
        for (d, r, heads, atoms) in sizes {
            let cfg = ModelConfig {
                d,
                q: d,
                r,
                heads,
                atoms,
                ..ModelConfig::default()
            };
            for truth_seed in 20..25 {
                let (m, t): (Method, Method) = (method.parse().unwrap(), truth.parse().unwrap());
                let fresh = HmoeProbe::new(
                    &cfg,
                    &TruthPrior::default(),
                    t,
                    m,
                    truth_seed,
                    20_000,
                    99,
                    4.0,
                    2.0,
                )
                .unwrap();
                let at = format!("{method} d=q={d} r={r} H={heads} m={atoms} truth {truth_seed}");
                let mut last_d = 0.0;
                for step in [0.01, 0.03, 0.1] {
                    let theta = null_space_split(m, &cfg, fresh.truth(), step)
                        .unwrap_or_else(|| panic!("{at}: no free direction"));
                    let (_, loss, misfit) = ratio_at(&fresh, &theta);
                    assert!(misfit < 1e-12, "{at} t={step}: misfit {misfit}");
                    assert!(
                        loss > 1.5 * last_d,
                        "{at} t={step}: D {loss} after {last_d}"
                    );
                    assert!(
                        max_abs(theta.iter().copied()) <= 4.0,
                        "{at}: outside the box"
                    );
                    let states = fresh.atom_states(&theta);
                    let gate = states.iter().map(|a| a.gate).fold(0.0, f64::max);
                    assert!(gate < 1e-12, "{at}: gate moved by {gate}");
                    last_d = loss;
                }
                // At t = 0 it is the embedded truth itself.
                let zero = null_space_split(m, &cfg, fresh.truth(), 0.0).unwrap();
                assert!(ratio_at(&fresh, &zero).1 < 1e-12, "{at}: D at t = 0");
            }
        }
    }
}

/// Where the seed rows span R^d there is no free direction and no such set: the default size
/// (d = S·r = 2), rank 2 or three slots at d = 2, and d = q = 4 with r = 4. Nor with tanh
/// generators (the value factor is not affine along n) or lora (no generator).
#[test]
fn the_null_space_split_is_refused_where_the_seed_rows_span() {
    use hmoe::construct::null_space_split;
    let refused = [(2, 1, 2), (2, 2, 2), (2, 1, 3), (4, 4, 2)];
    for (d, r, slots) in refused {
        let cfg = ModelConfig {
            d,
            q: d,
            r,
            slots,
            atoms: 2,
            ..ModelConfig::default()
        };
        for method in ["replora-identity", "hora-identity"] {
            let m: Method = method.parse().unwrap();
            let p =
                HmoeProbe::new(&cfg, &TruthPrior::default(), m, m, 20, 16, 1, 4.0, 2.0).unwrap();
            assert!(
                null_space_split(m, &cfg, p.truth(), 0.1).is_none(),
                "{method} d={d} r={r} S={slots}"
            );
        }
    }
    let cfg = ModelConfig {
        d: 3,
        q: 3,
        atoms: 2,
        ..ModelConfig::default()
    };
    for method in ["replora-tanh", "hora-tanh", "lora"] {
        let m: Method = method.parse().unwrap();
        let t: Method = "hora-tanh".parse().unwrap();
        let p = HmoeProbe::new(&cfg, &TruthPrior::default(), t, m, 20, 16, 1, 4.0, 2.0).unwrap();
        assert!(
            null_space_split(m, &cfg, p.truth(), 0.1).is_none(),
            "{method}"
        );
    }
}
