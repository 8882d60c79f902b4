//! Objective + gradient, reference loop against the batched kernel, for every parametrisation at
//! n = 10⁴ and 10⁵ (one thread); complete fits at n = 10⁴ (one thread) and n = 10⁵ (one and two
//! threads). Run with `cargo bench -p hmoe`; the README's Benchmarks table is one such run.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hmoe::atoms::Atoms;
use hmoe::data::sample_data;
use hmoe::kernel::Isa;
use hmoe::model::Workspace;
use hmoe::param::parametrisation;
use hmoe::truth::{draw_params, Truth};
use hmoe::{run_fit, DataConfig, FitSpec, Method, ModelConfig, ParamGuard, TruthPrior};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::ThreadPool;
use std::hint::black_box;

fn pool(threads: usize) -> ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
}

fn objective_and_gradient(c: &mut Criterion) {
    let cfg = ModelConfig {
        atoms: 2,
        ..ModelConfig::default()
    };
    let prior = TruthPrior::default();
    let truth = Truth::draw(&cfg, &prior, "hora-tanh".parse().unwrap(), 1);
    let one = pool(1);
    for n in [10_000, 100_000] {
        let (x, y) = sample_data(&truth.model, &truth.atoms, &DataConfig::default(), n, 2);
        let mut group = c.benchmark_group(format!("objective+gradient m=2 n={n}"));
        if n > 10_000 {
            group.sample_size(20);
        }
        for method in Method::all() {
            let p = parametrisation(method, &cfg, cfg.atoms);
            let theta = draw_params(p.as_ref(), &cfg, &prior, &mut ChaCha8Rng::seed_from_u64(3));
            let mut atoms = p.new_atoms();
            p.atoms(&theta, &mut atoms);
            let mut grad = Atoms::zeros(cfg.heads, cfg.slots, cfg.atoms, cfg.d, cfg.q);
            let mut ws = Workspace::default();
            let m = &truth.model;
            group.bench_function(BenchmarkId::new("reference", method), |b| {
                b.iter(|| {
                    black_box(m.objective_and_grad_reference(
                        &atoms,
                        x.view(),
                        y.view(),
                        &mut grad,
                        &mut ws,
                    ))
                })
            });
            group.bench_function(BenchmarkId::new("batched", method), |b| {
                one.install(|| {
                    b.iter(|| {
                        black_box(m.objective_and_grad_with(
                            Isa::best(),
                            &atoms,
                            x.view(),
                            y.view(),
                            &mut grad,
                            &mut ws,
                        ))
                    })
                })
            });
        }
        group.finish();
    }
}

fn job(method: &str, atoms: usize, n: usize) -> hmoe::FitJob {
    FitSpec::new(
        "bench",
        "default",
        "hora-tanh".parse().unwrap(),
        method.parse().unwrap(),
        atoms,
        n,
        0,
    )
    .check()
    .expect("a valid job")
}

fn one_fit(c: &mut Criterion) {
    let mut group = c.benchmark_group("fit n=1e4, 1 thread");
    group.sample_size(10);
    let one = pool(1);
    for atoms in [1, 2] {
        for method in ["lora", "hora-tanh"] {
            let job = job(method, atoms, 10_000);
            group.bench_function(format!("{method} m={atoms}"), |b| {
                one.install(|| b.iter(|| black_box(run_fit(&job).unwrap())))
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("fit n=1e5");
    group.sample_size(10);
    let job = job("hora-tanh", 2, 100_000);
    for threads in [1, 2] {
        let p = pool(threads);
        group.bench_function(format!("hora-tanh m=2, {threads} threads"), |b| {
            p.install(|| b.iter(|| black_box(run_fit(&job).unwrap())))
        });
    }
    group.finish();
}

criterion_group!(benches, objective_and_gradient, one_fit);
criterion_main!(benches);
