//! The fused CPU kernels (`finetune::fused`, f32) against candle's tensor-op forms
//! (`fused::reference`, each with candle's own backward) evaluated in f64: values and every
//! gradient, on shapes whose rows do not fill a parallel chunk, and bit-identical results on 1, 2
//! and 3 threads. The batched matmul is checked the same way against candle's `matmul`.

use candle_core::{DType, Device, Tensor, Var};
use finetune::fused::{self, exp_f32, reference};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(dims: &[usize], scale: f32, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| scale * rng.random_range(-1.0f32..1.0))
        .collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Largest |a − b| / (1 + |b|).
fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    flat(a)
        .iter()
        .zip(flat(b))
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

/// The value of `f` at `x` and the gradients of Σ w ⊙ f(x) with respect to every input.
fn value_and_grads(
    f: &dyn Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    w: &Tensor,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let grads = (&y * w).unwrap().sum_all().unwrap().backward().unwrap();
    let g = ts.iter().map(|t| grads.get(t).unwrap().clone()).collect();
    (y, g)
}

fn check(
    what: &str,
    fused: &dyn Fn(&[Tensor]) -> Tensor,
    reference: &dyn Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    tol: f32,
) {
    let probe = reference(inputs);
    let w = random(probe.dims(), 1.0, 99);
    let (yf, gf) = value_and_grads(fused, inputs, &w);
    let f64s = |ts: &[Tensor]| -> Vec<Tensor> {
        ts.iter().map(|t| t.to_dtype(DType::F64).unwrap()).collect()
    };
    let (yr, gr) = value_and_grads(reference, &f64s(inputs), &w.to_dtype(DType::F64).unwrap());
    let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let d = max_diff(&yf, &f32(&yr));
    assert!(d < tol, "{what}: value differs by {d:e}");
    for (i, (a, b)) in gf.iter().zip(&gr).enumerate() {
        let d = max_diff(a, &f32(b));
        assert!(d < tol, "{what}: gradient of input {i} differs by {d:e}");
    }
}

#[test]
fn exp_matches_the_library_exp() {
    let mut worst = 0f32;
    let mut x = -87.0f32;
    while x < 88.0 {
        let rel = (exp_f32(x) - x.exp()).abs() / x.exp();
        worst = worst.max(rel);
        x += 0.001_37;
    }
    assert!(worst < 5e-7, "relative error {worst:e}");
    assert!(exp_f32(-1e9) < 1e-37 && exp_f32(-1e9) >= 0.0);
    assert_eq!(exp_f32(0.0), 1.0);
}

#[test]
fn gelu_matches_candle() {
    for (dims, seed) in [(vec![3, 5, 7], 1), (vec![2, 48, 1536], 2)] {
        let x = random(&dims, 6.0, seed);
        check(
            "gelu",
            &|t| fused::gelu_erf(&t[0]).unwrap(),
            &|t| reference::gelu_erf(&t[0]).unwrap(),
            &[x],
            2e-6,
        );
    }
}

#[test]
fn softmax_matches_candle() {
    for (dims, seed) in [(vec![2, 3, 5, 7], 3), (vec![4, 12, 48, 48], 4)] {
        let x = random(&dims, 8.0, seed);
        check(
            "softmax",
            &|t| fused::softmax_last_dim(&t[0]).unwrap(),
            &|t| reference::softmax_last_dim(&t[0]).unwrap(),
            &[x],
            2e-6,
        );
    }
    // A masked row, as attention over padding makes it: the masked entries get no weight.
    let mut row = vec![0.5f32, -1.0, 2.0, -1e9, -1e9];
    row.extend([1.0f32, 1.0, 1.0, 1.0, 1.0]);
    let x = Tensor::from_vec(row, (2, 5), &Device::Cpu).unwrap();
    let y = flat(&fused::softmax_last_dim(&x).unwrap());
    assert!(y[3] < 1e-30 && y[4] < 1e-30);
    assert!((y[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!(y[5..].iter().all(|&v| (v - 0.2).abs() < 1e-7));
}

#[test]
fn layer_norm_matches_candle() {
    for (dims, seed) in [(vec![3, 5, 7], 5), (vec![16, 48, 384], 6)] {
        let h = *dims.last().unwrap();
        let x = (random(&dims, 3.0, seed) + 0.7).unwrap();
        let gain = (random(&[h], 0.2, seed + 10) + 1.0).unwrap();
        let bias = random(&[h], 0.5, seed + 20);
        check(
            "layer norm",
            &|t| fused::layer_norm(&t[0], &t[1], &t[2], 1e-12).unwrap(),
            &|t| reference::layer_norm(&t[0], &t[1], &t[2], 1e-12).unwrap(),
            &[x, gain, bias],
            2e-6,
        );
    }
}

#[test]
fn batched_matmul_matches_candle() {
    // Attention's two products (the second operand a transposed view, as `q · kᵀ` has it, and
    // contiguous, as `probs · v`), odd sizes, a batch of one and a rank-3 batch.
    let cases: [(&[usize], &[usize], bool); 4] = [
        (&[2, 3, 5, 4], &[2, 3, 7, 4], true),
        (&[2, 12, 48, 48], &[2, 12, 48, 32], false),
        (&[1, 1, 3, 9], &[1, 1, 9, 2], false),
        (&[5, 6, 1], &[5, 1, 7], false),
    ];
    for (i, (a, b, transposed)) in cases.into_iter().enumerate() {
        let (x, y) = (random(a, 2.0, 20 + i as u64), random(b, 2.0, 30 + i as u64));
        let t = move |y: &Tensor| {
            if transposed {
                y.t().unwrap()
            } else {
                y.clone()
            }
        };
        check(
            "batched matmul",
            &|v| fused::matmul(&v[0], &t(&v[1])).unwrap(),
            &|v| v[0].matmul(&t(&v[1])).unwrap(),
            &[x.clone(), y.clone()],
            // f32 sums of up to 48 products of magnitude up to 4 against the f64 reference.
            1e-5,
        );
        // Against candle's own f32 product and its backward: the same gemm calls, so the same
        // bits (a training run does not move when attention switches to this op).
        let w = random(
            &[
                a[..a.len() - 1].to_vec(),
                vec![b[b.len() - 1 - transposed as usize]],
            ]
            .concat(),
            1.0,
            40,
        );
        let (ours, g_ours) = value_and_grads(
            &|v| fused::matmul(&v[0], &t(&v[1])).unwrap(),
            &[x.clone(), y.clone()],
            &w,
        );
        let (candles, g_candle) =
            value_and_grads(&|v| v[0].matmul(&t(&v[1])).unwrap(), &[x, y], &w);
        assert_eq!(flat(&ours), flat(&candles), "case {i}: values");
        for (g, h) in g_ours.iter().zip(&g_candle) {
            assert_eq!(flat(g), flat(h), "case {i}: gradients");
        }
    }
    // Operands that do not multiply, or whose batches differ, are an error, not a wrong answer.
    let (x, y) = (random(&[2, 3, 4], 1.0, 1), random(&[2, 5, 6], 1.0, 2));
    assert!(fused::matmul(&x, &y).is_err());
    let (x, y) = (random(&[2, 3, 4], 1.0, 1), random(&[3, 4, 6], 1.0, 2));
    assert!(fused::matmul(&x, &y).is_err());
}

#[test]
fn frozen_layer_norm_parameters_get_no_gradient() {
    let x = Var::from_tensor(&random(&[4, 6], 1.0, 7)).unwrap();
    let (gain, bias) = (random(&[6], 1.0, 8), random(&[6], 1.0, 9));
    let y = fused::layer_norm(x.as_tensor(), &gain, &bias, 1e-5).unwrap();
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(x.as_tensor()).is_some());
    assert!(grads.get(&gain).is_none() && grads.get(&bias).is_none());
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let x = random(&[64, 48, 384], 2.0, 11);
            let gain = (random(&[384], 0.2, 12) + 1.0).unwrap();
            let bias = random(&[384], 0.2, 13);
            let inputs = [x, gain, bias];
            let w = random(&[64, 48, 384], 1.0, 14);
            let f = |t: &[Tensor]| {
                let y = fused::layer_norm(&t[0], &t[1], &t[2], 1e-12).unwrap();
                let y = fused::softmax_last_dim(&fused::gelu_erf(&y).unwrap()).unwrap();
                // A batch of 64 products of 48 × 384 by 384 × 48, then back to the shape of w.
                let s = fused::matmul(&y, &y.t().unwrap()).unwrap();
                fused::matmul(&s, &y).unwrap()
            };
            let (y, g) = value_and_grads(&f, &inputs, &w);
            let mut out = flat(&y);
            for g in g {
                out.extend(flat(&g));
            }
            out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        })
    };
    assert_eq!(run(1), run(2));
    assert_eq!(run(1), run(3));
}

/// The fused AdamW against candle-nn's over several steps with changing learning rates: the same
/// parameters to float rounding, and no update of a variable without a gradient.
#[test]
fn fused_adamw_matches_candle_adamw() {
    use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
    use finetune::optim::FusedAdamW;
    let params = ParamsAdamW {
        lr: 1e-2,
        weight_decay: 0.01,
        ..Default::default()
    };
    let init = [
        random(&[70_000], 1.0, 20),
        random(&[3, 5], 1.0, 21),
        random(&[4], 1.0, 22),
    ];
    let vars = |_: ()| -> Vec<Var> { init.iter().map(|t| Var::from_tensor(t).unwrap()).collect() };
    let (ours, theirs) = (vars(()), vars(()));
    let mut fused = FusedAdamW::new(ours.clone(), params.clone()).unwrap();
    let mut candle = AdamW::new(theirs.clone(), params).unwrap();
    for step in 0..6u64 {
        let lr = 1e-2 / (1 + step) as f64;
        let loss = |vs: &[Var]| {
            // Only the first two variables enter the loss: the third gets no gradient.
            let mut total = Tensor::new(0f32, &Device::Cpu).unwrap();
            for (i, v) in vs[..2].iter().enumerate() {
                let w = random(v.dims(), 1.0, 100 + step * 7 + i as u64);
                let term = (v.as_tensor().sqr().unwrap() * &w)
                    .unwrap()
                    .sum_all()
                    .unwrap();
                total = (total + term).unwrap();
            }
            total
        };
        let g_ours = loss(&ours).backward().unwrap();
        let g_theirs = loss(&theirs).backward().unwrap();
        fused.set_learning_rate(lr);
        fused.step(&g_ours).unwrap();
        candle.set_learning_rate(lr);
        candle.step(&g_theirs).unwrap();
    }
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let d = max_diff(a.as_tensor(), b.as_tensor());
        assert!(d < 1e-6, "variable {i}: {d:e}");
        assert!(
            max_diff(a.as_tensor(), &init[i]) > 1e-4 || i == 2,
            "variable {i} did not move"
        );
    }
    assert_eq!(
        flat(ours[2].as_tensor()),
        flat(&init[2]),
        "no gradient, no update"
    );
}
