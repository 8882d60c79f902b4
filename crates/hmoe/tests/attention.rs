//! C1: with `P[h,s] = W_Q^hᵀ W_K^h / √d_h`, `E[h,s] = H · W_O^h W_V^h` for every slot, one atom
//! per slot tied across slots and `c = 0`, the HMoE equals multi-head attention of the query
//! token over the key/value tokens plus one zero token, with LoRA on `W_Q` and `W_V`. The
//! attention below is written independently of the model, from the textbook definition. The
//! self-attention variant (score `v_sᵀ(P + ΔQ)v_s + c`) is the same case with each key/value token
//! scored against its own query.
use hmoe::param::parametrisation;
use hmoe::{Atoms, Method, Model, ModelConfig};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_mat(rng: &mut ChaCha8Rng, r: usize, c: usize) -> Array2<f64> {
    Array2::from_shape_simple_fn((r, c), || rng.random_range(-1.0..1.0))
}

/// Plain multi-head attention with weights `wq, wk, wv` (`H·dh × d`) and `wo` (`q × H·dh`).
fn attention(
    u: &Array1<f64>,
    vs: &[Array1<f64>],
    wq: &Array2<f64>,
    wk: &Array2<f64>,
    wv: &Array2<f64>,
    wo: &Array2<f64>,
    heads: usize,
) -> Array1<f64> {
    let dh = wq.nrows() / heads;
    let query = wq.dot(u);
    let mut keys: Vec<Array1<f64>> = vs.iter().map(|v| wk.dot(v)).collect();
    let mut values: Vec<Array1<f64>> = vs.iter().map(|v| wv.dot(v)).collect();
    keys.push(Array1::zeros(wk.nrows())); // the zero token
    values.push(Array1::zeros(wv.nrows()));
    let mut concat = Array1::zeros(wv.nrows());
    for h in 0..heads {
        let r = h * dh..(h + 1) * dh;
        let scores: Vec<f64> = keys
            .iter()
            .map(|k| {
                query
                    .slice(ndarray::s![r.clone()])
                    .dot(&k.slice(ndarray::s![r.clone()]))
                    / (dh as f64).sqrt()
            })
            .collect();
        let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = scores.iter().map(|s| (s - mx).exp()).sum();
        for (s, v) in scores.iter().zip(&values) {
            let w = (s - mx).exp() / z;
            for j in r.clone() {
                concat[j] += w * v[j];
            }
        }
    }
    wo.dot(&concat)
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

/// Sizes of the special case: d, heads, head width, q, rank, slots.
const SIZES: (usize, usize, usize, usize, usize, usize) = (4, 2, 2, 3, 1, 3);

/// Random attention weights with LoRA on `W_Q` and `W_V`, the HMoE they map to (tied atoms,
/// `c = 0`, `self_attention` as given) and inputs to compare on.
struct Case {
    cfg: ModelConfig,
    model: Model,
    atoms: Atoms,
    x: Array2<f64>,
    /// The attention weights, `W_Q` and `W_V` with their LoRA updates added.
    wq_lora: Array2<f64>,
    wk: Array2<f64>,
    wv_lora: Array2<f64>,
    wo: Array2<f64>,
    /// The LoRA factors (peft: W + B A).
    bq: Array2<f64>,
    aq: Array2<f64>,
    bv: Array2<f64>,
    av: Array2<f64>,
}

fn rows(m: &Array2<f64>, h: usize) -> Array2<f64> {
    let dh = SIZES.2;
    m.slice(ndarray::s![h * dh..(h + 1) * dh, ..]).to_owned()
}

fn cols(m: &Array2<f64>, h: usize) -> Array2<f64> {
    let dh = SIZES.2;
    m.slice(ndarray::s![.., h * dh..(h + 1) * dh]).to_owned()
}

fn case(self_attention: bool, seed: u64) -> Case {
    let (d, heads, dh, q, r, slots) = SIZES;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (wq, wk, wv) = (
        rand_mat(&mut rng, heads * dh, d),
        rand_mat(&mut rng, heads * dh, d),
        rand_mat(&mut rng, heads * dh, d),
    );
    let wo = rand_mat(&mut rng, q, heads * dh);
    // LoRA factors on the full projections (peft: W + B A).
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
        self_attention,
        ..ModelConfig::default()
    };
    let scale = 1.0 / (dh as f64).sqrt();
    let dwq = bq.dot(&aq);
    let dwv = bv.dot(&av);
    let mut p = vec![];
    let mut e = vec![];
    let mut atoms = Atoms::zeros(heads, slots, 1, d, q);
    for h in 0..heads {
        // uᵀ P v = (W_Q u)·(W_K v)/√dh with P = W_Qᵀ W_K/√dh (u = v in the self-attention variant).
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
        cfg: cfg.clone(),
        p,
        e,
        gamma: None,
    };
    let n = 50;
    let x = Array2::from_shape_simple_fn((n, (slots + 1) * d), || rng.random_range(-1.0..=1.0));
    Case {
        cfg,
        model,
        atoms,
        x,
        wq_lora: &wq + &dwq,
        wk,
        wv_lora: &wv + &dwv,
        wo,
        bq,
        aq,
        bv,
        av,
    }
}

/// The key/value tokens of sample `k`.
fn tokens(x: &Array2<f64>, k: usize) -> Vec<Array1<f64>> {
    let (d, _, _, _, _, slots) = SIZES;
    (0..slots)
        .map(|s| x.slice(ndarray::s![k, (s + 1) * d..(s + 2) * d]).to_owned())
        .collect()
}

#[test]
fn hmoe_equals_multi_head_attention_with_lora_on_query_and_value() {
    let (d, heads, dh, q, _, _) = SIZES;
    let Case {
        cfg,
        model,
        atoms,
        x,
        wq_lora,
        wk,
        wv_lora,
        wo,
        bq,
        aq,
        bv,
        av,
    } = case(false, 42);
    let n = x.nrows();
    let scale = 1.0 / (dh as f64).sqrt();
    let f = model.predict(&atoms, x.view());
    for k in 0..n {
        let u = x.slice(ndarray::s![k, 0..d]).to_owned();
        let vs = tokens(&x, k);
        let want = attention(&u, &vs, &wq_lora, &wk, &wv_lora, &wo, heads);
        for a in 0..q {
            assert!(
                (f[[k, a]] - want[a]).abs() < 1e-12,
                "sample {k} output {a}: {} vs {}",
                f[[k, a]],
                want[a]
            );
        }
    }

    // The same atoms come out of the `lora` parametrisation with tied slots: ΔQ_h = BQ AQ with
    // BQ = A_Qᵀ and AQ = (B_Q^h)ᵀ W_K^h / √d_h; ΔV_h = BV AV with BV = H W_O^h B_V^h, AV = A_V.
    let param = parametrisation(Method::LORA, &cfg, 1);
    let mut theta = vec![];
    for h in 0..heads {
        let aq_m = rows(&bq, h).t().dot(&rows(&wk, h)) * scale;
        let bq_m = aq.t().to_owned();
        let bv_m = cols(&wo, h).dot(&rows(&bv, h)) * heads as f64;
        for m in [&aq_m, &bq_m, &av, &bv_m] {
            theta.extend(m.as_standard_layout().iter());
        }
        theta.push(0.0);
    }
    assert_eq!(theta.len(), param.dim());
    let mut from_param = param.new_atoms();
    param.atoms(&theta, &mut from_param);
    for (a, b) in from_param
        .dq
        .iter()
        .zip(&atoms.dq)
        .chain(from_param.dv.iter().zip(&atoms.dv))
    {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn the_self_attention_variant_equals_self_scored_attention_with_lora_on_query_and_value() {
    let (_, heads, _, q, _, _) = SIZES;
    let c = case(true, 7);
    for f in [
        c.model.predict(&c.atoms, c.x.view()),
        c.model.predict_reference(&c.atoms, c.x.view()),
    ] {
        for k in 0..c.x.nrows() {
            let want = self_scored_attention(
                &tokens(&c.x, k),
                &c.wq_lora,
                &c.wk,
                &c.wv_lora,
                &c.wo,
                heads,
            );
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
