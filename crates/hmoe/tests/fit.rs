//! The estimator: ends at or below the truth's objective, stays in the box, records a failed
//! guard instead of hiding it, and is bit-for-bit deterministic whatever the thread count.
use hmoe::{
    record_losses, run_fit, FitConfig, FitJob, FitRecord, FitSpec, FitStatus, HmoeError,
    LossConfig, ModelConfig, ParamGuard, ValidLoss,
};

fn spec(method: &str, atoms: usize, n: usize, replicate: u32) -> FitSpec {
    let (truth, method) = ("hora-tanh".parse().unwrap(), method.parse().unwrap());
    FitSpec::new("test", "default", truth, method, atoms, n, replicate)
}

fn job(method: &str, atoms: usize, n: usize, replicate: u32) -> FitJob {
    spec(method, atoms, n, replicate).check().unwrap()
}

fn loss_config() -> ValidLoss {
    LossConfig::default().check().unwrap()
}

#[test]
fn fits_end_at_or_below_the_objective_at_the_truth() {
    for method in ["lora", "replora-tanh", "hora-tanh"] {
        for atoms in [1, 2] {
            let r = run_fit(&job(method, atoms, 400, 0)).unwrap();
            assert!(r.truth_in_family);
            assert_eq!(r.outcome.status, FitStatus::Ok, "{method} m={atoms}");
            assert!(
                r.outcome.objective <= r.outcome.objective_at_truth,
                "{method} m={atoms}: {} > {}",
                r.outcome.objective,
                r.outcome.objective_at_truth
            );
            assert!(r.outcome.max_abs_param <= r.job.fit.bound);
            assert!(r.theta.iter().all(|t| t.abs() <= r.job.fit.bound));
            let l = record_losses(&r, &loss_config()).unwrap();
            assert!(l.voronoi.is_finite() && l.voronoi > 0.0);
            assert!(l.regression.is_finite() && l.regression > 0.0);
        }
    }
}

#[test]
fn an_unconverged_fit_is_recorded_as_a_guard_failure() {
    // One iteration from a start far from the truth cannot reach the truth's objective.
    let mut j = spec("lora", 2, 400, 0);
    j.fit = FitConfig {
        max_iters: 1,
        init_noise: 1.0,
        restarts: 1,
        extra_restarts: 1,
        ..FitConfig::default()
    };
    let r = run_fit(&j.check().unwrap()).unwrap();
    assert_eq!(r.outcome.status, FitStatus::GuardFailed);
    assert_eq!(r.outcome.starts, 2);
    assert!(r.outcome.objective > r.outcome.objective_at_truth);
}

#[test]
fn the_box_holds_for_a_start_outside_it() {
    // A tight box that the truth itself nearly fills: the estimate must end inside it.
    let mut j = spec("lora", 2, 300, 1);
    j.fit.bound = 2.5;
    j.truth_prior.std = 1.0;
    j.fit.init_noise = 2.0;
    let r = run_fit(&j.check().unwrap()).unwrap();
    assert!(
        r.theta.iter().all(|t| t.abs() <= 2.5),
        "max |θ| = {}",
        r.outcome.max_abs_param
    );
}

#[test]
fn a_misspecified_family_is_flagged_and_not_guarded() {
    let mut j = spec("hora-tanh", 1, 300, 0);
    j.truth = "lora".parse().unwrap();
    let r = run_fit(&j.check().unwrap()).unwrap();
    assert!(!r.truth_in_family);
    assert_eq!(r.outcome.status, FitStatus::Ok);
}

fn run_in_pool(threads: usize, jobs: &[FitJob]) -> Vec<FitRecord> {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| jobs.par_iter().map(|j| run_fit(j).unwrap()).collect())
}

#[test]
fn the_same_seed_gives_bit_identical_records_with_one_and_two_threads() {
    let jobs: Vec<FitJob> = (0..4)
        .flat_map(|rep| [job("hora-tanh", 2, 300, rep), job("lora", 1, 300, rep)])
        .collect();
    let one = run_in_pool(1, &jobs);
    let two = run_in_pool(2, &jobs);
    for (a, b) in one.iter().zip(&two) {
        let strip = |r: &FitRecord| {
            let mut r = r.clone();
            r.outcome.seconds = 0.0;
            serde_json::to_string(&r).unwrap()
        };
        assert_eq!(strip(a), strip(b));
    }
    // Different replicates draw different data.
    assert_ne!(one[0].outcome.objective, one[2].outcome.objective);
}

#[test]
fn one_large_fit_splits_its_samples_over_threads_with_the_same_bits() {
    // Fewer jobs than threads: the kernel's chunks of one fit run on several threads, and the
    // fixed chunking and reduction order give the same record as on one thread.
    let n = 3 * hmoe::kernel::CHUNK + 11;
    let jobs = [job("hora-tanh", 2, n, 0)];
    let strip = |r: &FitRecord| {
        let mut r = r.clone();
        r.outcome.seconds = 0.0;
        serde_json::to_string(&r).unwrap()
    };
    let one = strip(&run_in_pool(1, &jobs)[0]);
    for threads in [2, 3] {
        assert_eq!(
            strip(&run_in_pool(threads, &jobs)[0]),
            one,
            "{threads} threads"
        );
    }
}

#[test]
fn a_bad_config_is_rejected_with_a_message_naming_the_field() {
    let mut j = spec("lora", 1, 100, 0);
    j.data.sigma = -1.0;
    let e = j.check().unwrap_err();
    assert!(matches!(e, HmoeError::InvalidConfig { field: "sigma", .. }));
    assert!(
        e.to_string().contains("`sigma`") && e.to_string().contains(">= 0"),
        "{e}"
    );

    let mut j = spec("lora", 1, 100, 0);
    j.model.r = 3;
    assert!(j.check().unwrap_err().to_string().contains("`r`"));

    let mut j = spec("lora", 1, 100, 0);
    j.fit.restarts = 0;
    assert!(j.check().unwrap_err().to_string().contains("`restarts`"));

    let mut j = spec("lora", 1, 100, 0);
    j.truth_prior.std = 2.0;
    let e = j.check().unwrap_err().to_string();
    assert!(e.contains("`std`") && e.contains("bound"), "{e}");

    let mut j = spec("lora", 1, 100, 0);
    j.n = 0;
    assert!(j.check().unwrap_err().to_string().contains("`n`"));

    let e = ModelConfig::from_toml("d = 2\nheadz = 3\n").unwrap_err();
    assert!(e.to_string().contains("headz"), "{e}");
    let e = ModelConfig::from_toml("atoms = 9\n")
        .unwrap()
        .check()
        .unwrap_err();
    assert!(
        e.to_string().contains("`atoms`") && e.to_string().contains("1..=8"),
        "{e}"
    );
    assert!("hira-tanh"
        .parse::<hmoe::Method>()
        .unwrap_err()
        .to_string()
        .contains("hira-tanh"));
}

#[test]
fn losses_from_a_round_tripped_record_are_identical() {
    let r = run_fit(&job("replora-tanh", 2, 300, 3)).unwrap();
    let back: FitRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    let cfg = loss_config();
    assert_eq!(
        record_losses(&r, &cfg).unwrap(),
        record_losses(&back, &cfg).unwrap()
    );
    let mut broken = back.clone();
    broken.est_atoms.c.pop();
    assert!(matches!(
        record_losses(&broken, &cfg),
        Err(HmoeError::Inconsistent(_))
    ));
}

#[test]
fn every_start_is_logged_and_the_lowest_objective_is_kept() {
    use hmoe::StartOrigin;
    let mut j = spec("lora", 2, 300, 1);
    j.fit = FitConfig {
        prior_starts: 3,
        max_iters: 80,
        ..FitConfig::default()
    };
    let r = run_fit(&j.check().unwrap()).unwrap();
    let log = &r.outcome.starts_log;
    assert_eq!(log.len(), r.outcome.starts);
    let near = log
        .iter()
        .filter(|s| s.origin == StartOrigin::NearTruth)
        .count();
    assert!(near >= 2, "{near} near-truth starts");
    let origins: Vec<StartOrigin> = log.iter().map(|s| s.origin).collect();
    assert_eq!(&origins[near..], &[StartOrigin::Prior; 3]);
    // The kept estimate is the logged start of lowest objective, bit for bit.
    let best = log
        .iter()
        .min_by(|a, b| a.objective.total_cmp(&b.objective))
        .unwrap();
    assert_eq!(r.outcome.objective, best.objective);
    assert_eq!(r.theta, best.theta);
    assert_eq!(
        (r.outcome.iterations, r.outcome.converged),
        (best.iterations, best.converged)
    );
    // Prior starts begin far from the truth: they end elsewhere.
    let d = hmoe::start_losses(&r, &loss_config());
    assert_eq!(d.len(), log.len());
    assert!(d.iter().all(|v| v.is_finite() && *v > 0.0));
    assert!(
        d[near..].iter().any(|v| (v - d[0]).abs() > 1e-6 * d[0]),
        "{d:?}"
    );
    // The record round-trips with its log; the option is part of the job's stored key.
    let back: FitRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back.outcome.starts_log, r.outcome.starts_log);
    let key = serde_json::to_value(&r.job).unwrap();
    assert_eq!(key["fit"]["prior_starts"], 3);
    let plain = serde_json::to_value(job("lora", 2, 300, 1)).unwrap();
    assert!(plain["fit"].get("prior_starts").is_none());
}
