//! Local geometry of each family (issue 11): the spectrum of the Gauss–Newton matrix `JᵀJ/n`
//! (the Fisher information under Gaussian noise, up to `1/σ²`) at the truth embedded in the
//! exactly specified (m = 1) and over-specified (m = 2) family, and at the estimates of the
//! committed `rates-overspecified` records. Prints Markdown (`results/geometry.md` is its output).
//!
//! `cargo run --release -p hmoe --example geometry -- [results dir]`
use hmoe::data::sample_inputs;
use hmoe::geometry::{gauss_newton, spectrum, symmetric_eigenvalues, Spectrum};
use hmoe::model::Model;
use hmoe::param::parametrisation;
use hmoe::stats::median;
use hmoe::truth::{embed, Truth};
use hmoe::{FitRecord, Method, ModelConfig, TruthPrior};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Eigenvalues below this fraction of the largest count as null (the threshold).
const REL: f64 = 1e-8;
/// Inputs of the Gauss–Newton average (one fixed sample per model).
const INPUTS: usize = 4000;

fn spectrum_at(model: &Model, method: Method, cfg: &ModelConfig, theta: &[f64]) -> Spectrum {
    let p = parametrisation(method, cfg, cfg.atoms);
    let x = sample_inputs(model, INPUTS, &mut ChaCha8Rng::seed_from_u64(20_251_128));
    spectrum(
        &symmetric_eigenvalues(&gauss_newton(model, p.as_ref(), theta, x.view())),
        REL,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let results = std::env::args().nth(1).unwrap_or_else(|| "results".into());
    println!("## At the truth\n");
    println!(
        "Truth drawn from `hora-<activation>` (seed 1, THEORY.md §6 sizes), embedded in each \
         family: at m = 2 each true atom is split into two equal atoms of half its weight. \
         Null: eigenvalues below {REL:e} of the largest, on {INPUTS} inputs. lora's rank-one \
         factors carry a scale gauge (`BA = (Bs)(s⁻¹A)`), so its m = 1 null count is not zero; \
         the excess at m = 2 over m = 1 is what over-specification adds.\n"
    );
    println!("| truth | method | m | parameters | null | smallest non-null | largest | null excess over m = 1 |");
    println!("|---|---|---|---|---|---|---|---|");
    let prior = TruthPrior::default();
    for (truth, methods) in [
        ("hora-tanh", vec!["lora", "replora-tanh", "hora-tanh"]),
        (
            "hora-identity",
            vec!["lora", "replora-identity", "hora-identity"],
        ),
    ] {
        let truth_method: Method = truth.parse()?;
        for method in methods {
            let method: Method = method.parse()?;
            let mut null_m1 = 0;
            for m in [1, 2] {
                let cfg = ModelConfig {
                    atoms: m,
                    ..ModelConfig::default()
                };
                let t = Truth::draw(&cfg, &prior, truth_method, 1);
                let p = parametrisation(method, &cfg, m);
                let theta = embed(t.param.as_ref(), &t.theta, p.as_ref())
                    .ok_or("the family does not contain the truth")?;
                let s = spectrum_at(&t.model, method, &cfg, &theta);
                if m == 1 {
                    null_m1 = s.null;
                }
                println!(
                    "| {truth} | {method} | {m} | {} | {} | {:.2e} | {:.2e} | {} |",
                    s.dim,
                    s.null,
                    s.smallest_nonzero.unwrap_or(f64::NAN),
                    s.largest,
                    if m == 2 {
                        (s.null as i64 - null_m1 as i64).to_string()
                    } else {
                        "—".into()
                    }
                );
            }
        }
    }

    // At the estimates of the committed over-specified fits.
    let raw = std::path::Path::new(&results).join("rates-overspecified/raw");
    let mut cells: BTreeMap<(String, String, usize), Vec<Spectrum>> = BTreeMap::new();
    for f in std::fs::read_dir(&raw)? {
        let path = f?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let r: FitRecord = serde_json::from_value(v["record"].clone())?;
        let cfg = r.job.model.clone();
        let model = Model::frozen(&cfg, r.seeds.truth);
        let s = spectrum_at(&model, r.job.method, &cfg, &r.theta);
        cells
            .entry((r.job.setting.clone(), r.job.method.to_string(), r.job.n))
            .or_default()
            .push(s);
    }
    println!("\n## At the estimates of `rates-overspecified` (m = 2, every committed fit)\n");
    println!(
        "Per setting, method and n: the fits, and the median over fits of the null count and of \
         the smallest non-null eigenvalue (threshold {REL:e} of the largest; {INPUTS} inputs \
         per fit, drawn from the fit's own frozen model).\n"
    );
    println!("| setting | method | n | fits | null (median) | null (min–max) | smallest non-null (median) |");
    println!("|---|---|---|---|---|---|---|");
    for ((setting, method, n), v) in &cells {
        let nulls: Vec<f64> = v.iter().map(|s| s.null as f64).collect();
        let small: Vec<f64> = v.iter().filter_map(|s| s.smallest_nonzero).collect();
        let (lo, hi) = v
            .iter()
            .fold((usize::MAX, 0), |(a, b), s| (a.min(s.null), b.max(s.null)));
        println!(
            "| {setting} | {method} | {n} | {} | {} | {lo}–{hi} | {:.2e} |",
            v.len(),
            median(&nulls),
            median(&small)
        );
    }
    Ok(())
}
