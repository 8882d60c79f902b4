//! The self-attention variant of THEORY.md §1: the gate's query is the token the expert reads,
//! score `v_sᵀ(P + ΔQ)v_s + c`. Its attention special case, written independently of the model;
//! the batched kernel against the reference; what the quadratic form cannot see; and the job
//! key, which must not move for a configuration without the option.
use hmoe::data::sample_inputs;
use hmoe::kernel::Isa;
use hmoe::model::Workspace;
use hmoe::param::parametrisation;
use hmoe::truth::{draw_params, Truth};
use hmoe::{Atoms, FitSpec, Method, Model, ModelConfig, TruthPrior};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_mat(rng: &mut ChaCha8Rng, r: usize, c: usize) -> Array2<f64> {
    Array2::from_shape_simple_fn((r, c), || rng.random_range(-1.0..1.0))
}

/// Multi-head attention in which key/value token `s` is scored against its own query
/// (`q_s = W_Q v_s`, `k_s = W_K v_s`, score `q_s·k_s/√dh`), plus one zero token, values
/// `W_V v_s`, output projection `W_O`: from the textbook definition, not through the model.
fn self_scored_attention(
    vs: &[Array1<f64>],
    wq: &Array2<f64>,
    wk: &Array2<f64>,
    wv: &Array2<f64>,
    wo: &Array2<f64>,
    heads: usize,
) -> Array1<f64> {
    let dh = wq.nrows() / heads;
    let mut concat = Array1::zeros(wv.nrows());
    for h in 0..heads {
        let r = h * dh..(h + 1) * dh;
        let head = |w: &Array2<f64>, v: &Array1<f64>| w.slice(ndarray::s![r.clone(), ..]).dot(v);
        let mut scores: Vec<f64> = vs
            .iter()
            .map(|v| head(wq, v).dot(&head(wk, v)) / (dh as f64).sqrt())
            .collect();
        let mut values: Vec<Array1<f64>> = vs.iter().map(|v| head(wv, v)).collect();
        scores.push(0.0); // the zero token
        values.push(Array1::zeros(dh));
        let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = scores.iter().map(|s| (s - mx).exp()).sum();
        for (s, v) in scores.iter().zip(&values) {
            let w = (s - mx).exp() / z;
            for (j, x) in r.clone().zip(v.iter()) {
                concat[j] += w * x;
            }
        }
    }
    wo.dot(&concat)
}

#[test]
fn the_variant_equals_self_scored_attention_with_lora_on_query_and_value() {
    let (d, heads, dh, q, r, slots) = (4, 2, 2, 3, 1, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (wq, wk, wv) = (
        rand_mat(&mut rng, heads * dh, d),
        rand_mat(&mut rng, heads * dh, d),
        rand_mat(&mut rng, heads * dh, d),
    );
    let wo = rand_mat(&mut rng, q, heads * dh);
    let (bq, aq) = (rand_mat(&mut rng, heads * dh, r), rand_mat(&mut rng, r, d));
    let (bv, av) = (rand_mat(&mut rng, heads * dh, r), rand_mat(&mut rng, r, d));
    let cfg = ModelConfig {
        d,
        q,
        r,
        heads,
        slots,
        atoms: 1,
        tie_atoms_across_slots: true,
        self_attention: true,
        ..ModelConfig::default()
    };
    let scale = 1.0 / (dh as f64).sqrt();
    let rows =
        |m: &Array2<f64>, h: usize| m.slice(ndarray::s![h * dh..(h + 1) * dh, ..]).to_owned();
    let cols =
        |m: &Array2<f64>, h: usize| m.slice(ndarray::s![.., h * dh..(h + 1) * dh]).to_owned();
    let (dwq, dwv) = (bq.dot(&aq), bv.dot(&av));
    let (mut p, mut e) = (vec![], vec![]);
    let mut atoms = Atoms::zeros(heads, slots, 1, d, q);
    for h in 0..heads {
        // vᵀ P v = (W_Q v)·(W_K v)/√dh with P = W_Qᵀ W_K /√dh.
        let pm = rows(&wq, h).t().dot(&rows(&wk, h)) * scale;
        let em = cols(&wo, h).dot(&rows(&wv, h)) * heads as f64;
        let dqm = rows(&dwq, h).t().dot(&rows(&wk, h)) * scale;
        let dvm = cols(&wo, h).dot(&rows(&dwv, h)) * heads as f64;
        for s in 0..slots {
            p.extend(pm.iter());
            e.extend(em.iter());
            let k = atoms.index(h, s, 0);
            atoms.dq_mut(k).copy_from_slice(dqm.as_slice().unwrap());
            atoms
                .dv_mut(k)
                .copy_from_slice(dvm.as_standard_layout().as_slice().unwrap());
        }
    }
    let model = Model {
        cfg,
        p,
        e,
        gamma: None,
    };
    let n = 50;
    let x = Array2::from_shape_simple_fn((n, (slots + 1) * d), || rng.random_range(-1.0..=1.0));
    let (wq_lora, wv_lora) = (&wq + &dwq, &wv + &dwv);
    for f in [
        model.predict(&atoms, x.view()),
        model.predict_reference(&atoms, x.view()),
    ] {
        for k in 0..n {
            let vs: Vec<Array1<f64>> = (0..slots)
                .map(|s| x.slice(ndarray::s![k, (s + 1) * d..(s + 2) * d]).to_owned())
                .collect();
            let want = self_scored_attention(&vs, &wq_lora, &wk, &wv_lora, &wo, heads);
            for a in 0..q {
                assert!(
                    (f[[k, a]] - want[a]).abs() < 1e-12 * (1.0 + want[a].abs()),
                    "sample {k}, output {a}: {} vs {}",
                    f[[k, a]],
                    want[a]
                );
            }
        }
    }
}

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
