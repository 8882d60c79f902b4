//! L-BFGS against Levenberg–Marquardt (`[fit] solver`) on the same jobs: refits jobs of
//! `rates-overspecified` (setting `tanh`, the same truth, data and starts as its raw records,
//! every other setting at the experiment's defaults) with each solver and prints a Markdown table
//! per job, then the means per method × n × solver. Writes nothing.
//!
//! `cargo run --release -p hmoe --example solvers -- lora,hora-tanh 1000,3162 2`
//! (methods, n's, replicates; these are the defaults).
use hmoe::fit::run_fit_with_stops;
use hmoe::stats::mean;
use hmoe::{record_losses, FitSpec, LossConfig, ParamGuard, Solver};

fn list<T: std::str::FromStr>(s: Option<&String>, default: &str) -> Vec<T> {
    s.map_or(default, |s| s.as_str())
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let methods: Vec<String> = list(a.get(1), "lora,hora-tanh");
    let ns: Vec<usize> = list(a.get(2), "1000,3162");
    let reps: u32 = a.get(3).map_or(Ok(2), |s| s.parse())?;
    let losses = LossConfig::default().check()?;
    println!("| job | solver | objective | objective − at truth | Voronoi loss | iterations | stop | seconds |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for method in &methods {
        for &n in &ns {
            for solver in [Solver::Lbfgs, Solver::Lm] {
                let (mut obj, mut gap, mut loss, mut iters, mut secs) =
                    (vec![], vec![], vec![], vec![], vec![]);
                for replicate in 0..reps {
                    let mut spec = FitSpec::new(
                        "rates-overspecified",
                        "tanh",
                        "hora-tanh".parse()?,
                        method.parse()?,
                        2,
                        n,
                        replicate,
                    );
                    spec.fit.solver = solver;
                    let job = spec.check()?;
                    let id = fsio::key::content_id(&serde_json::to_value(&job)?);
                    let (r, stops) = run_fit_with_stops(&job)?;
                    // The kept start: the first of lowest objective (the estimator's rule).
                    let kept = r
                        .outcome
                        .starts_log
                        .iter()
                        .position(|s| s.objective == r.outcome.objective && s.theta == r.theta)
                        .expect("the kept start is logged");
                    let v = record_losses(&r, &losses)?.voronoi;
                    println!(
                        "| {method} n={n} rep={replicate} (`{id}`) | {solver} | {:.6e} | {:+.3e} | {v:.4} | {} | {} | {:.2} |",
                        r.outcome.objective,
                        r.outcome.objective - r.outcome.objective_at_truth,
                        r.outcome.iterations,
                        stops[kept],
                        r.outcome.seconds
                    );
                    obj.push(r.outcome.objective);
                    gap.push(r.outcome.objective - r.outcome.objective_at_truth);
                    loss.push(v);
                    iters.push(r.outcome.iterations as f64);
                    secs.push(r.outcome.seconds);
                }
                summary.push(format!(
                    "| {method} | {n} | {solver} | {:.6e} | {:+.3e} | {:.4} | {:.0} | {:.2} |",
                    mean(&obj),
                    mean(&gap),
                    mean(&loss),
                    mean(&iters),
                    mean(&secs)
                ));
            }
        }
    }
    println!();
    println!("| method | n | solver | mean objective | mean objective − at truth | mean Voronoi loss | mean iterations | mean seconds |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in summary {
        println!("{row}");
    }
    Ok(())
}
