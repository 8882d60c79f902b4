//! One fit printed as a summary: `cargo run --release -p hmoe --example one_fit -- <method> <n> <atoms> [truth]`.
use hmoe::{record_losses, run_fit, FitConfig, FitSpec, LossConfig, ParamGuard};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let method = a.get(1).map_or("hora-tanh", |s| s.as_str()).parse()?;
    let n: usize = a.get(2).map_or(Ok(10_000), |s| s.parse())?;
    let atoms: usize = a.get(3).map_or(Ok(2), |s| s.parse())?;
    let truth = a.get(4).map_or("hora-tanh", |s| s.as_str()).parse()?;
    for rep in 0..3 {
        let job = FitSpec {
            fit: FitConfig {
                max_iters: std::env::var("MAX_ITERS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(400),
                ..FitConfig::default()
            },
            ..FitSpec::new("example", "default", truth, method, atoms, n, rep)
        };
        let r = run_fit(&job.check()?)?;
        let o = &r.outcome;
        let l = record_losses(&r, &LossConfig::default().check()?)?;
        println!(
            "{method} n={n} m={atoms} rep={rep}: obj={:.6e} truth={:.6e} |g|={:.1e} it={} conv={} starts={} status={:?} maxθ={:.2} D={:.4e} reg={:.4e} {:.3}s",
            o.objective, o.objective_at_truth, o.grad_norm, o.iterations, o.converged, o.starts, o.status, o.max_abs_param, l.voronoi, l.regression, o.seconds
        );
    }
    if std::env::var("HMOE_DEBUG").is_ok() {
        let job = FitSpec::new("example", "default", truth, method, atoms, n, 0);
        let r = run_fit(&job.check()?)?;
        let (e, t) = (&r.est_atoms, &r.true_atoms);
        for k in 0..t.count() {
            println!(
                "true atom {k}: c={:.3} dq={:.3?} dv={:.3?}",
                t.c[k],
                t.dq(k),
                t.dv(k)
            );
            for i in 0..e.atoms {
                let j = k * e.atoms + i;
                println!(
                    "   est {i}: c={:.3} dq={:.3?} dv={:.3?}",
                    e.c[j],
                    e.dq(j),
                    e.dv(j)
                );
            }
        }
    }
    Ok(())
}
