//! Is the over-specified loss limited by the optimiser's iteration cap? Refits the exact jobs of
//! `rates-overspecified` (setting `tanh`, so the same truth and data as its raw records) with
//! several iteration caps and prints a Markdown table of mean Voronoi loss, objective and
//! convergence per cap.
//!
//! `cargo run --release -p hmoe --example optimiser_budget -- 400,2000 1000,3162,10000 4`
use hmoe::stats::mean;
use hmoe::{record_losses, run_fit, FitConfig, FitSpec, FitStatus, LossConfig, ParamGuard};

fn list<T: std::str::FromStr>(s: Option<&String>, default: &str) -> Vec<T> {
    s.map_or(default, |s| s.as_str())
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let caps: Vec<u64> = list(a.get(1), "400,2000");
    let ns: Vec<usize> = list(a.get(2), "1000,3162,10000");
    let reps: u32 = a.get(3).map_or(Ok(4), |s| s.parse())?;
    println!("| method | n | max_iters | mean Voronoi loss | mean objective − objective at truth | converged | guard failures | mean seconds |");
    println!("|---|---|---|---|---|---|---|---|");
    for method in ["lora", "hora-tanh"] {
        for &n in &ns {
            for &cap in &caps {
                let (mut loss, mut gap, mut conv, mut fail, mut secs) =
                    (vec![], vec![], 0, 0, vec![]);
                for replicate in 0..reps {
                    let (truth, method) = ("hora-tanh".parse()?, method.parse()?);
                    let job = FitSpec {
                        fit: FitConfig {
                            max_iters: cap,
                            ..FitConfig::default()
                        },
                        ..FitSpec::new(
                            "rates-overspecified",
                            "tanh",
                            truth,
                            method,
                            2,
                            n,
                            replicate,
                        )
                    };
                    let r = run_fit(&job.check()?)?;
                    loss.push(record_losses(&r, &LossConfig::default().check()?)?.voronoi);
                    gap.push(r.outcome.objective - r.outcome.objective_at_truth);
                    conv += r.outcome.converged as usize;
                    fail += (r.outcome.status == FitStatus::GuardFailed) as usize;
                    secs.push(r.outcome.seconds);
                }
                println!(
                    "| {method} | {n} | {cap} | {:.3} | {:.3e} | {conv}/{reps} | {fail} | {:.1} |",
                    mean(&loss),
                    mean(&gap),
                    mean(&secs)
                );
            }
        }
    }
    Ok(())
}
