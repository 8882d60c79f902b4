//! The self-attention variant of THEORY.md §1: the gate's query is the token the expert reads,
//! score `v_sᵀ(P + ΔQ)v_s + c`. The batched kernel against the reference; what the quadratic
//! form cannot see; and the job key, which must not move for a configuration without the option.
//! (Its attention special case is in `attention.rs`, beside the plain one.)
use hmoe::data::sample_inputs;
use hmoe::kernel::Isa;
use hmoe::model::Workspace;
use hmoe::param::parametrisation;
use hmoe::truth::{draw_params, Truth};
use hmoe::{Atoms, FitSpec, Method, Model, ModelConfig, TruthPrior};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn setup(method: &str, atoms: usize, seed: u64) -> (Model, Atoms, Array2<f64>, Array2<f64>) {
    let cfg = ModelConfig {
        atoms,
        heads: 2,
        slots: 3,
        d: 3,
        q: 2,
        self_attention: true,
        ..ModelConfig::default()
    };
    let prior = TruthPrior::default();
    let truth = Truth::draw(&cfg, &prior, "hora-tanh".parse().unwrap(), seed);
    let m: Method = method.parse().unwrap();
    let param = parametrisation(m, &cfg, atoms);
    let theta = draw_params(
        param.as_ref(),
        &cfg,
        &prior,
        &mut ChaCha8Rng::seed_from_u64(seed + 1),
    );
    let mut est = param.new_atoms();
    param.atoms(&theta, &mut est);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
    // Three kernel chunks and a partial block.
    let x = sample_inputs(&truth.model, 3 * 2048 + 5, &mut rng);
    let y = truth.model.predict_reference(&truth.atoms, x.view());
    (truth.model, est, x, y)
}

#[test]
fn the_batched_kernel_matches_the_reference_and_every_isa_gives_the_same_bits() {
    let mut worst: f64 = 0.0;
    for (method, atoms) in [("lora", 2), ("replora-tanh", 1), ("hora-identity", 2)] {
        let (model, est, x, y) = setup(method, atoms, 31);
        let mut ws = Workspace::default();
        let mut g_ref = est.clone();
        let f_ref =
            model.objective_and_grad_reference(&est, x.view(), y.view(), &mut g_ref, &mut ws);
        let mut first: Option<(f64, Atoms)> = None;
        for &isa in Isa::available() {
            let mut g = est.clone();
            let f = model.objective_and_grad_with(isa, &est, x.view(), y.view(), &mut g, &mut ws);
            let rel = |a: f64, b: f64| (a - b).abs() / (1e-300 + b.abs().max(1e-3));
            worst = worst.max(rel(f, f_ref));
            for (a, b) in [(&g.dq, &g_ref.dq), (&g.dv, &g_ref.dv), (&g.c, &g_ref.c)] {
                let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                for (u, v) in a.iter().zip(b.iter()) {
                    worst = worst.max((u - v).abs() / scale);
                }
            }
            match &first {
                None => first = Some((f, g)),
                Some((f0, g0)) => {
                    assert_eq!(f.to_bits(), f0.to_bits(), "{method}: {isa:?}");
                    assert_eq!(&g, g0, "{method}: {isa:?}");
                }
            }
        }
        let (p, p_ref) = (
            model.predict(&est, x.view()),
            model.predict_reference(&est, x.view()),
        );
        for (a, b) in p.iter().zip(p_ref.iter()) {
            worst = worst.max((a - b).abs() / (1.0 + b.abs()));
        }
    }
    assert!(worst < 1e-12, "worst relative difference {worst}");
}

#[test]
fn the_variant_sees_only_the_symmetric_part_of_the_gate() {
    let (model, est, x, _) = setup("lora", 1, 5);
    let f = model.predict(&est, x.view());
    // An antisymmetric change of every ΔQ is invisible ...
    let mut moved = est.clone();
    let d = est.d;
    for k in 0..moved.count() {
        let dq = moved.dq_mut(k);
        for a in 0..d {
            for b in 0..a {
                dq[a * d + b] += 0.7;
                dq[b * d + a] -= 0.7;
            }
        }
    }
    // ... and so is the swap of a rank-one gate's factors: b aᵀ and a bᵀ share sym(b aᵀ).
    let mut swapped = est.clone();
    let mut moved_by = 0.0f64;
    for k in 0..swapped.count() {
        let dq = swapped.dq_mut(k);
        for a in 0..d {
            for b in 0..a {
                moved_by = moved_by.max((dq[a * d + b] - dq[b * d + a]).abs());
                dq.swap(a * d + b, b * d + a);
            }
        }
    }
    assert!(moved_by > 1e-3, "the gates were symmetric already");
    for other in [&moved, &swapped] {
        let g = model.predict(other, x.view());
        let diff = f
            .iter()
            .zip(g.iter())
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-12, "f moved by {diff}");
    }
    // Without the variant the same change is visible.
    let plain = Model {
        cfg: ModelConfig {
            self_attention: false,
            ..model.cfg.clone()
        },
        ..model.clone()
    };
    let diff = plain
        .predict(&est, x.view())
        .iter()
        .zip(plain.predict(&swapped, x.view()).iter())
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff > 1e-4, "{diff}");
}

#[test]
fn the_option_is_in_the_job_key_only_when_on() {
    let lora: Method = "lora".parse().unwrap();
    let plain = FitSpec::new("e", "s", lora, lora, 2, 100, 0);
    let key = serde_json::to_value(&plain).unwrap();
    assert!(key["model"].get("self_attention").is_none(), "{key}");
    let cfg = serde_json::to_value(ModelConfig::default()).unwrap();
    assert!(cfg.get("self_attention").is_none(), "{cfg}");
    let mut on = plain.clone();
    on.model.self_attention = true;
    let key = serde_json::to_value(&on).unwrap();
    assert_eq!(key["model"]["self_attention"], true);
    let back: FitSpec = serde_json::from_value(key).unwrap();
    assert!(back.model.self_attention);
}
