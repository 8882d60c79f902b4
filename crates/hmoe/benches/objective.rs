//! Objective + gradient at n = 10⁴ for each parametrisation, and one complete fit at n = 10⁴
//! (exact and over-specified). Run with `cargo bench -p hmoe`.
use criterion::{criterion_group, criterion_main, Criterion};
use hmoe::data::sample_data;
use hmoe::fit::Objective;
use hmoe::param::parametrisation;
use hmoe::truth::{draw_params, Truth};
use hmoe::{run_fit, DataConfig, FitConfig, FitSpec, Method, ModelConfig, ParamGuard, TruthPrior};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

fn objective_and_gradient(c: &mut Criterion) {
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
    let mut group = c.benchmark_group("objective+gradient n=1e4 m=2");
    for method in Method::all() {
        let p = parametrisation(method, &cfg, cfg.atoms);
        let theta = draw_params(p.as_ref(), &cfg, &prior, &mut ChaCha8Rng::seed_from_u64(3));
        let bound = FitConfig::default().bound;
        let obj = Objective::new(&truth.model, p.as_ref(), x.view(), y.view(), bound, 1e3);
        group.bench_function(method.to_string(), |b| {
            b.iter(|| black_box(obj.value_and_grad(black_box(&theta))))
        });
    }
    group.finish();
}

fn one_fit(c: &mut Criterion) {
    let mut group = c.benchmark_group("fit n=1e4");
    group.sample_size(10);
    for atoms in [1, 2] {
        for method in ["lora", "hora-tanh"] {
            let (truth, method) = ("hora-tanh".parse().unwrap(), method.parse().unwrap());
            let job = FitSpec::new("bench", "default", truth, method, atoms, 10_000, 0)
                .check()
                .unwrap();
            group.bench_function(format!("{method} m={atoms}"), |b| {
                b.iter(|| black_box(run_fit(&job).unwrap()))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, objective_and_gradient, one_fit);
criterion_main!(benches);
