//! The kernel's A/B timer: best, 10th percentile and median of `KT_ITERS` (default 300) calls
//! of the objective + gradient (lora atoms, m = 2, n = 10⁴, one thread, the benchmark's data),
//! by the batched kernel or, with the argument `reference`, by the per-sample loop.
//!
//! criterion measures one build; comparing two builds of the kernel on a VM whose speed drifts
//! within minutes needs them run alternately, so copy each build's binary aside and alternate:
//! `for i in 1 2 3; do ./old; ./new; done`. The numbers in `hmoe::kernel`'s doc were taken so.
use hmoe::atoms::Atoms;
use hmoe::data::sample_data;
use hmoe::kernel::Isa;
use hmoe::model::Workspace;
use hmoe::param::parametrisation;
use hmoe::truth::{draw_params, Truth};
use hmoe::{DataConfig, ModelConfig, TruthPrior};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn main() {
    let reference = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("reference") => true,
        Some(other) => {
            eprintln!("unknown argument {other:?}: the only one is `reference`");
            std::process::exit(2);
        }
    };
    let iters: usize = match std::env::var("KT_ITERS") {
        Err(_) => 300,
        Ok(v) => match v.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("KT_ITERS={v:?} is not a positive integer");
                std::process::exit(2);
            }
        },
    };
    // The benchmark's case (benches/objective.rs): a hora-tanh truth, lora atoms from the prior.
    let cfg = ModelConfig {
        atoms: 2,
        ..ModelConfig::default()
    };
    let prior = TruthPrior::default();
    let truth = Truth::draw(&cfg, &prior, "hora-tanh".parse().unwrap(), 1);
    let (x, y) = sample_data(
        &truth.model,
        &truth.atoms,
        &DataConfig::default(),
        10_000,
        2,
    );
    let p = parametrisation("lora".parse().unwrap(), &cfg, cfg.atoms);
    let theta = draw_params(p.as_ref(), &cfg, &prior, &mut ChaCha8Rng::seed_from_u64(3));
    let mut atoms = p.new_atoms();
    p.atoms(&theta, &mut atoms);
    let mut grad = Atoms::zeros(cfg.heads, cfg.slots, cfg.atoms, cfg.d, cfg.q);
    let mut ws = Workspace::default();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a thread pool");
    let m = &truth.model;
    let mut times: Vec<f64> = one.install(|| {
        (0..iters)
            .map(|_| {
                let t = Instant::now();
                let v = if reference {
                    m.objective_and_grad_reference(&atoms, x.view(), y.view(), &mut grad, &mut ws)
                } else {
                    m.objective_and_grad_with(
                        Isa::best(),
                        &atoms,
                        x.view(),
                        y.view(),
                        &mut grad,
                        &mut ws,
                    )
                };
                std::hint::black_box(v);
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect()
    });
    times.sort_by(f64::total_cmp);
    println!(
        "{}: best {:.0} µs, p10 {:.0} µs, median {:.0} µs over {iters} calls",
        if reference { "reference" } else { "batched" },
        times[0],
        times[iters / 10],
        times[iters / 2]
    );
}
