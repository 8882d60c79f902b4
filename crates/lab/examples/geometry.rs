//! Local geometry of each family (issue 11): the spectrum of the Gauss–Newton matrix `JᵀJ/n`
//! (the Fisher information under Gaussian noise, up to `1/σ²`) at the truth embedded in the
//! exactly specified (m = 1) and over-specified (m = 2) family, and at the estimates of the
//! committed records of over-specified rate experiments. Prints Markdown (`results/geometry.md`
//! is its output) and, per experiment, writes `results/geometry/<experiment>.csv` (one row per
//! fit) and draws `results/geometry/<experiment>.png` (and `.svg`): per family, the smallest
//! non-null eigenvalue and the null count against n.
//!
//! `cargo run --release -p lab --example geometry -- [results dir] [experiment ...]`
//! (default: `results rates-overspecified`)
use hmoe::data::sample_inputs;
use hmoe::geometry::{gauss_newton, spectrum, symmetric_eigenvalues, Spectrum};
use hmoe::model::Model;
use hmoe::param::parametrisation;
use hmoe::stats::median;
use hmoe::truth::{embed, Truth};
use hmoe::{FitRecord, Method, ModelConfig, TruthPrior};
use lab::plot::{self, Axis, Curve, Panel, Scale, GREY, PALETTE};
use plotters::prelude::SeriesLabelPosition;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Per (setting, method, n): the spectrum at each fit's estimate, with its replicate.
type Cells = BTreeMap<(String, String, usize), Vec<(u32, Spectrum)>>;

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
    let mut args = std::env::args().skip(1);
    let results = args.next().unwrap_or_else(|| "results".into());
    let mut experiments: Vec<String> = args.collect();
    if experiments.is_empty() {
        experiments.push("rates-overspecified".into());
    }
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

    for experiment in &experiments {
        let cells = estimates(Path::new(&results), experiment)?;
        print_estimates(experiment, &cells);
        let out = Path::new(&results).join("geometry");
        std::fs::create_dir_all(&out)?;
        write_csv(&out.join(format!("{experiment}.csv")), &cells)?;
        draw(&out.join(experiment), experiment, &cells)?;
    }
    Ok(())
}

/// The spectrum at the estimate of every committed fit of `experiment`.
fn estimates(results: &Path, experiment: &str) -> Result<Cells, Box<dyn std::error::Error>> {
    let raw = results.join(experiment).join("raw");
    let mut cells = Cells::new();
    let mut paths: Vec<_> = std::fs::read_dir(&raw)
        .map_err(|e| format!("cannot read {}: {e}", raw.display()))?
        .map(|f| f.map(|f| f.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    for path in paths {
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let r: FitRecord = serde_json::from_value(v["record"].clone())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg = r.job.model.clone();
        let model = Model::frozen(&cfg, r.seeds.truth);
        let s = spectrum_at(&model, r.job.method, &cfg, &r.theta);
        cells
            .entry((r.job.setting.clone(), r.job.method.to_string(), r.job.n))
            .or_default()
            .push((r.job.replicate, s));
    }
    for v in cells.values_mut() {
        v.sort_by_key(|(rep, _)| *rep);
    }
    Ok(cells)
}

fn print_estimates(experiment: &str, cells: &Cells) {
    println!("\n## At the estimates of `{experiment}` (m = 2, every committed fit)\n");
    println!(
        "Per setting, method and n: the fits, and the median over fits of the null count and of \
         the smallest non-null eigenvalue (threshold {REL:e} of the largest; {INPUTS} inputs \
         per fit, drawn from the fit's own frozen model). Per fit: `geometry/{experiment}.csv`; \
         figure: `geometry/{experiment}.png`.\n"
    );
    println!("| setting | method | n | fits | null (median) | null (min–max) | smallest non-null (median) |");
    println!("|---|---|---|---|---|---|---|");
    for ((setting, method, n), v) in cells {
        let nulls: Vec<f64> = v.iter().map(|(_, s)| s.null as f64).collect();
        let small: Vec<f64> = v.iter().filter_map(|(_, s)| s.smallest_nonzero).collect();
        let (lo, hi) = v.iter().fold((usize::MAX, 0), |(a, b), (_, s)| {
            (a.min(s.null), b.max(s.null))
        });
        println!(
            "| {setting} | {method} | {n} | {} | {} | {lo}–{hi} | {:.2e} |",
            v.len(),
            median(&nulls),
            median(&small)
        );
    }
}

fn write_csv(path: &Path, cells: &Cells) -> Result<(), Box<dyn std::error::Error>> {
    let mut text =
        String::from("setting,method,n,replicate,parameters,null,smallest_nonnull,largest\n");
    for ((setting, method, n), v) in cells {
        for (rep, s) in v {
            let small = s
                .smallest_nonzero
                .map(|x| format!("{x:e}"))
                .unwrap_or_default();
            writeln!(
                text,
                "{setting},{method},{n},{rep},{},{},{small},{:e}",
                s.dim, s.null, s.largest
            )?;
        }
    }
    fsio::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// One column per family (lora, replora, hora), one curve per setting: the median over fits
/// with the range over fits as a band; the top row the smallest non-null eigenvalue (with a
/// dashed 1/n through the panel's first median for scale), the bottom row the null count.
fn draw(stem: &Path, experiment: &str, cells: &Cells) -> Result<(), Box<dyn std::error::Error>> {
    let family = |m: &str| m.split('-').next().unwrap_or(m).to_string();
    let mut families: Vec<String> = Vec::new();
    let mut settings: Vec<String> = Vec::new();
    for (setting, method, _) in cells.keys() {
        let f = family(method);
        if !families.contains(&f) {
            families.push(f);
        }
        if !settings.contains(setting) {
            settings.push(setting.clone());
        }
    }
    let order = |f: &String| ["lora", "replora", "hora"].iter().position(|x| x == f);
    families.sort_by_key(|f| order(f).unwrap_or(usize::MAX));
    let ns: Vec<f64> = {
        let mut ns: Vec<usize> = cells.keys().map(|(_, _, n)| *n).collect();
        ns.sort();
        ns.dedup();
        ns.into_iter().map(|n| n as f64).collect()
    };
    let mut top = Vec::new();
    let mut bottom = Vec::new();
    for f in &families {
        let mut small_curves = Vec::new();
        let mut null_curves = Vec::new();
        for (k, setting) in settings.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let mut small = Curve::new(setting.clone(), color);
            let mut null = Curve::new(setting.clone(), color);
            for ((s, m, n), v) in cells {
                if s != setting || family(m) != *f {
                    continue;
                }
                let x = *n as f64;
                let e: Vec<f64> = v.iter().filter_map(|(_, s)| s.smallest_nonzero).collect();
                if !e.is_empty() {
                    let (lo, hi) = range(&e);
                    small.points.push((x, median(&e)));
                    small.band.push((x, lo, hi));
                }
                let c: Vec<f64> = v.iter().map(|(_, s)| s.null as f64).collect();
                let (lo, hi) = range(&c);
                null.points.push((x, median(&c)));
                null.band.push((x, lo, hi));
            }
            small_curves.push(small);
            null_curves.push(null);
        }
        // The scale line: 1/n through the panel's first median.
        if let Some(&(n0, e0)) = small_curves.iter().find_map(|c| c.points.first()) {
            let mut reference = Curve::new("∝ 1/n", GREY);
            reference.dashed = true;
            reference.markers = false;
            reference.points = ns.iter().map(|n| (*n, e0 * n0 / n)).collect();
            small_curves.push(reference);
        }
        top.push(Panel {
            title: format!("{f}: smallest non-null eigenvalue of JᵀJ/n"),
            x: Axis::new("n", Scale::Log10),
            y: Axis::new("eigenvalue (median, range over fits)", Scale::Log10),
            curves: small_curves,
            legend: SeriesLabelPosition::LowerLeft,
        });
        bottom.push(Panel {
            title: format!("{f}: null eigenvalues (below {REL:e} of the largest)"),
            x: Axis::new("n", Scale::Log10),
            y: Axis::new("count (median, range over fits)", Scale::Linear),
            curves: null_curves,
            legend: SeriesLabelPosition::UpperLeft,
        });
    }
    let cols = top.len();
    top.extend(bottom);
    plot::save(stem, &top, cols)
        .map_err(|e| format!("{experiment}: cannot draw the figure: {e}"))?;
    Ok(())
}

fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        })
}
