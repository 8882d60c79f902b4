//! The classic softmax-gated MoE controls (THEORY.md §4a): gradients, the Voronoi loss, the
//! probe, the estimator's guard and determinism, and the flat set of linear experts.
use hmoe::controls::{
    draw_truth, embed, nearest_cells, predict, run_control_fit, sample_data, slots, stride,
    voronoi_loss, ControlModel, ControlObjective, ControlProbe, ControlSpec, Expert,
};
use hmoe::fit::Smooth;
use hmoe::probe::{Part, Probe};
use hmoe::{DataConfig, FitConfig, ParamGuard};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const D: usize = 2;
const K: usize = 2;

/// A value and its gradient at θ.
type ValueGrad<'a> = &'a dyn Fn(&[f64]) -> (f64, Vec<f64>);

/// Central finite differences of `f` against its gradient at `theta`, relative error below `tol`.
fn check_grad(what: &str, f: ValueGrad<'_>, theta: &[f64], tol: f64) {
    let (_, g) = f(theta);
    assert_eq!(g.len(), theta.len());
    let h = 1e-6;
    for j in 0..theta.len() {
        let (mut tp, mut tm) = (theta.to_vec(), theta.to_vec());
        tp[j] += h;
        tm[j] -= h;
        let fd = (f(&tp).0 - f(&tm).0) / (2.0 * h);
        let err = (fd - g[j]).abs() / (1e-4 + fd.abs().max(g[j].abs()));
        assert!(
            err < tol,
            "{what}, coordinate {j}: analytic {} vs finite difference {fd}",
            g[j]
        );
    }
    assert!(g.iter().any(|v| v.abs() > 1e-6), "{what}: zero gradient");
}

fn near(theta: &[f64], spread: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    theta
        .iter()
        .map(|t| t + spread * rng.random_range(-1.0..=1.0))
        .collect()
}

#[test]
fn objective_gradient_matches_finite_differences() {
    for expert in [Expert::Linear, Expert::Tanh] {
        for k_fit in [K, K + 1] {
            let truth = draw_truth(D, K, 3);
            let (x, y) = sample_data(expert, D, &truth, 0.1, 40, 4);
            let obj = ControlObjective::new(expert, D, &x, &y, 4.0, 1e3);
            let theta = draw_truth(D, k_fit, 5);
            check_grad(
                &format!("{expert} k_fit={k_fit}"),
                &|t| obj.value_and_grad(t),
                &theta,
                1e-5,
            );
        }
    }
}

#[test]
fn probe_gradients_match_finite_differences() {
    for expert in [Expert::Linear, Expert::Tanh] {
        for k_fit in [K, K + 1] {
            let p = ControlProbe::new(expert, K, k_fit, D, 11, 50, 12, 4.0);
            let theta = near(p.truth(), 0.3, 13);
            let what = format!("{expert} k_fit={k_fit}");
            // The misfit's gradient, Jᵀr with the trait's finite-difference Jacobian, against
            // central differences of the misfit itself.
            let misfit = |t: &[f64]| -> (f64, Vec<f64>) {
                let r = p.residuals(t);
                let g = p.jacobian(t).t().dot(&ndarray::Array1::from(r.clone())) * 2.0;
                (r.iter().map(|v| v * v).sum(), g.to_vec())
            };
            check_grad(&format!("misfit, {what}"), &misfit, &theta, 1e-5);
            for smooth in [0.0, 1e-3] {
                check_grad(
                    &format!("loss, {what}"),
                    &|t| p.loss(t, smooth),
                    &theta,
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn the_probe_is_zero_at_its_truth_and_names_its_cells_and_roles() {
    for expert in [Expert::Linear, Expert::Tanh] {
        let p = ControlProbe::new(expert, K, K + 1, D, 21, 100, 22, 4.0);
        assert_eq!(p.dim(), (K + 1) * stride(D));
        assert!(p.residuals(p.truth()).iter().all(|r| r.abs() < 1e-14));
        assert!(p.loss(p.truth(), 0.0).0.abs() < 1e-14);
        assert_eq!(p.cells(), vec![vec![0, K], vec![1]]);
        let r = p.roles();
        let o = slots(D, K);
        assert_eq!(r[o.beta].part, Part::Gate);
        assert_eq!(r[o.beta0].part, Part::Weight);
        assert_eq!((r[o.a].part, r[o.b].part), (Part::Value, Part::Value));
        assert!(r[o.beta0..o.beta0 + 1].iter().all(|x| x.atoms == vec![K]));
        let st = p.atom_states(p.truth());
        assert_eq!(st.iter().map(|s| s.cell).collect::<Vec<_>>(), [0, 1, 0]);
        assert!(st.iter().all(|s| s.gate == 0.0 && s.value == 0.0));
        let exact = ControlProbe::new(expert, K, K, D, 21, 100, 22, 4.0);
        assert_eq!(exact.cells(), vec![vec![0], vec![1]]);
        assert_eq!(exact.truth(), exact.true_theta());
    }
}

#[test]
fn voronoi_loss_is_zero_at_the_truth_and_invariant_to_the_order_of_experts() {
    let truth = draw_truth(D, K, 31);
    assert_eq!(voronoi_loss(&truth, &truth, D, 2.0), 0.0);
    let over = embed(&truth, D, &[1]);
    assert!(voronoi_loss(&over, &truth, D, 2.0) < 1e-15);
    let theta = near(&over, 0.4, 32);
    let d0 = voronoi_loss(&theta, &truth, D, 2.0);
    assert!(d0 > 0.0);
    let p = stride(D);
    for perm in [[2, 0, 1], [1, 2, 0], [0, 2, 1]] {
        let permuted: Vec<f64> = perm
            .iter()
            .flat_map(|&i| theta[i * p..(i + 1) * p].to_vec())
            .collect();
        let d1 = voronoi_loss(&permuted, &truth, D, 2.0);
        assert!((d0 - d1).abs() < 1e-12 * d0, "{d0} vs {d1}");
    }
    // An empty cell costs its full mass: every fitted expert on true expert 0.
    let both_on_0 = embed(&truth[..p], D, &[0, 0]);
    assert_eq!(nearest_cells(&both_on_0, &truth, D), [0, 0, 0]);
    let w1 = truth[slots(D, 1).beta0].exp();
    assert!((voronoi_loss(&both_on_0, &truth, D, 2.0) - w1).abs() < 1e-12);
}

fn spec(expert: Expert, k_fit: usize, n: usize) -> ControlSpec {
    ControlSpec {
        experiment: "t".into(),
        setting: format!("{expert}-{k_fit}"),
        model: ControlModel {
            expert,
            d: D,
            k_true: K,
            k_fit,
        },
        data: DataConfig::default(),
        fit: FitConfig::default(),
        n,
        replicate: 0,
    }
}

#[test]
fn fits_pass_the_guard_and_repeat_bit_for_bit() {
    for expert in [Expert::Linear, Expert::Tanh] {
        for k_fit in [K, K + 1] {
            let job = spec(expert, k_fit, 300).check().unwrap();
            let a = run_control_fit(&job).unwrap();
            assert_eq!(
                a.outcome.status,
                hmoe::FitStatus::Ok,
                "{expert} k_fit={k_fit}"
            );
            assert!(a.outcome.objective <= a.outcome.objective_at_truth * (1.0 + 1e-12));
            assert_eq!(a.theta.len(), k_fit * stride(D));
            assert!(a.outcome.max_abs_param <= job.fit.bound);
            assert_eq!(a.outcome.starts_log.len(), a.outcome.starts);
            let mut b = run_control_fit(&job).unwrap();
            b.outcome.seconds = a.outcome.seconds;
            assert_eq!(a, b, "{expert} k_fit={k_fit}: not deterministic");
        }
    }
}

#[test]
fn settings_share_the_truth_and_the_data() {
    let (a, b) = (spec(Expert::Linear, K, 10), spec(Expert::Tanh, K + 1, 10));
    let (sa, sb) = (a.seeds(), b.seeds());
    assert_eq!((sa.truth, sa.data), (sb.truth, sb.data));
    assert_ne!(sa.init, sb.init);
}

#[test]
fn a_job_key_has_a_fixed_layout_and_reading_it_runs_its_check() {
    let job = spec(Expert::Tanh, K + 1, 100).check().unwrap();
    let v = serde_json::to_value(&job).unwrap();
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "data",
            "experiment",
            "fit",
            "model",
            "n",
            "replicate",
            "setting"
        ]
    );
    assert_eq!(v["model"]["expert"], "tanh");
    let mut bad = v.clone();
    bad["model"]["k_fit"] = serde_json::json!(1);
    let e = serde_json::from_value::<hmoe::controls::ControlJob>(bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("k_fit"), "{e}");
}

/// Two copies of true expert 0 with equal gates (`β0 = β0* − ln 2`) and a symmetric split of the
/// expert, `a = a* ± δ`, `b = b* ± δ'`.
fn split(truth: &[f64], delta: f64) -> Vec<f64> {
    let mut theta = embed(truth, D, &[0]);
    let (o0, o1) = (slots(D, 0), slots(D, K));
    for (c, s) in [(0, 1.0), (1, -0.7)] {
        theta[o0.a + c] += s * delta;
        theta[o1.a + c] -= s * delta;
    }
    theta[o0.b] += 0.5 * delta;
    theta[o1.b] -= 0.5 * delta;
    theta
}

fn max_gap(expert: Expert, theta: &[f64], truth: &[f64], x: &[f64]) -> f64 {
    let (f, fs) = (predict(expert, D, theta, x), predict(expert, D, truth, x));
    f.iter()
        .zip(&fs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn linear_experts_have_an_exact_flat_set() {
    let truth = draw_truth(D, K, 41);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let x = hmoe::controls::sample_inputs(D, 1000, &mut rng);
    let mut last = 0.0;
    for delta in [0.05, 0.1, 0.2, 0.4, 0.8] {
        let theta = split(&truth, delta);
        assert!(
            max_gap(Expert::Linear, &theta, &truth, &x) < 1e-12,
            "δ = {delta}: f ≠ f*"
        );
        let dl = voronoi_loss(&theta, &truth, D, 2.0);
        assert!(dl > last, "δ = {delta}: D = {dl} did not grow from {last}");
        last = dl;
    }
}

#[test]
fn tanh_experts_miss_the_split_at_second_order() {
    let truth = draw_truth(D, K, 41);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let x = hmoe::controls::sample_inputs(D, 1000, &mut rng);
    let gap = |delta: f64| max_gap(Expert::Tanh, &split(&truth, delta), &truth, &x);
    for delta in [0.2, 0.1, 0.05] {
        let (g1, g2) = (gap(delta), gap(delta / 2.0));
        assert!(g1 > 1e-6, "δ = {delta}: f = f* for tanh experts");
        let ratio = g1 / g2;
        assert!(
            (3.0..=5.0).contains(&ratio),
            "δ = {delta}: halving δ divided the mismatch by {ratio}, not about 4"
        );
    }
}
