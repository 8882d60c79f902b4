//! One fit: its job, its record, its starts and its losses.
use super::data::{sample_data, sample_inputs};
use super::loss::voronoi_loss;
use super::model::{objective, predict, ControlObjective};
use super::truth::{draw_truth, embed};
use super::{stride, ControlModel, Expert};
use crate::config::{int_range, real_range, Checked, DataConfig, FitConfig, ParamGuard, ValidLoss};
use crate::error::{HmoeError, Result};
use crate::fit::{jitter, run_starts, Starts};
use crate::loss::Losses;
use crate::record::{derive_seed, FitOutcome, Seeds};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One fit of a `controls` experiment, as written: its stored form is the job key (its canonical
/// JSON is hashed into the job's id), so it follows DESIGN.md's rule: it only grows, and a field
/// added later is skipped while it holds its default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSpec {
    pub experiment: String,
    pub setting: String,
    pub model: ControlModel,
    pub data: DataConfig,
    pub fit: FitConfig,
    pub n: usize,
    pub replicate: u32,
}

impl ParamGuard for ControlSpec {
    type Error = crate::error::HmoeError;
    fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.data.validate()?;
        self.fit.validate()?;
        // Every true parameter lies in [-2, 2] (`draw_truth`).
        real_range(
            "bound",
            self.fit.bound,
            self.fit.bound > 2.0,
            "a finite value > 2 (the truth's parameters reach ±2)",
        )?;
        int_range("n", self.n, 1, usize::MAX, ">= 1")?;
        Ok(())
    }
}

/// A checked control job: what [`run_control_fit`] takes.
pub type ControlJob = Checked<ControlSpec>;

impl ControlSpec {
    /// The truth depends on `(experiment, d, k_true)` only and the data on those and `(n,
    /// replicate)`: every setting of an experiment (linear or tanh experts, exact or
    /// over-specified) draws the same true parameters and the same inputs and noise (common
    /// random numbers); the starts depend on the setting too.
    pub fn seeds(&self) -> Seeds {
        let (e, d, k) = (
            &self.experiment,
            self.model.d.to_string(),
            self.model.k_true.to_string(),
        );
        let (n, r) = (self.n.to_string(), self.replicate.to_string());
        Seeds {
            truth: derive_seed("controls-truth", &[e, &d, &k]),
            data: derive_seed("controls-data", &[e, &d, &k, &n, &r]),
            init: derive_seed("controls-init", &[e, &self.setting, &n, &r]),
        }
    }
}

/// The raw result of one control fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlRecord {
    pub job: ControlJob,
    pub seeds: Seeds,
    /// The truth, `k_true` experts.
    pub true_theta: Vec<f64>,
    /// The estimate, `k_fit` experts.
    pub theta: Vec<f64>,
    /// How it ended (the HMoE fits' own outcome type, written inline).
    #[serde(flatten)]
    pub outcome: FitOutcome,
}

/// The starting point of start `k`: the truth embedded with the extra experts copying true
/// experts round-robin over starts (extra expert `e` copies true expert `(k + e) mod k_true`),
/// plus `N(0, init_noise²)` noise, in the box.
pub fn initial_point(truth: &[f64], job: &ControlSpec, init_seed: u64, k: usize) -> Vec<f64> {
    let m = &job.model;
    let copies: Vec<usize> = (0..m.k_fit - m.k_true)
        .map(|e| (k + e) % m.k_true)
        .collect();
    let mut theta = embed(truth, m.d, &copies);
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
        "controls-start",
        &[&init_seed.to_string(), &k.to_string()],
    ));
    jitter(&mut theta, &job.fit, &mut rng);
    theta
}

/// The starting point of prior start `k`: a fresh draw of the truth's prior with `k_fit`
/// experts, in the box.
fn prior_point(job: &ControlSpec, init_seed: u64, k: usize) -> Vec<f64> {
    let seed = derive_seed(
        "controls-prior-start",
        &[&init_seed.to_string(), &k.to_string()],
    );
    let mut theta = draw_truth(job.model.d, job.model.k_fit, seed);
    crate::fit::clamp_to_box(&mut theta, job.fit.bound);
    theta
}

/// Fit one control job with the estimator of `crate::fit`.
pub fn run_control_fit(job: &ControlJob) -> Result<ControlRecord> {
    let t0 = Instant::now();
    let seeds = job.seeds();
    let m = &job.model;
    let truth = draw_truth(m.d, m.k_true, seeds.truth);
    let (x, y) = sample_data(m.expert, m.d, &truth, job.data.sigma, job.n, seeds.data);
    let objective_at_truth = objective(m.expert, m.d, &truth, &x, &y);
    let obj = ControlObjective::new(m.expert, m.d, &x, &y, job.fit.bound, job.fit.box_penalty);
    let Starts {
        best, starts, log, ..
    } = run_starts(
        &obj,
        &job.fit,
        Some(objective_at_truth),
        |k| initial_point(&truth, job, seeds.init, k),
        |k| prior_point(job, seeds.init, k),
    )?;
    let outcome = FitOutcome::of_best(
        &best,
        objective_at_truth,
        true,
        starts,
        t0.elapsed().as_secs_f64(),
        log,
    );
    Ok(ControlRecord {
        job: job.clone(),
        seeds,
        true_theta: truth,
        theta: best.theta,
        outcome,
    })
}

/// `‖f̂ − f*‖_{L²}` on `n` fresh inputs drawn from `seed`.
pub fn regression_error(
    expert: Expert,
    d: usize,
    theta: &[f64],
    truth: &[f64],
    n: usize,
    seed: u64,
) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = sample_inputs(d, n, &mut rng);
    let (f, fs) = (predict(expert, d, theta, &x), predict(expert, d, truth, &x));
    (f.iter()
        .zip(&fs)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / n as f64)
        .sqrt()
}

/// Every loss of a record, from the record alone.
pub fn record_losses(rec: &ControlRecord, cfg: &ValidLoss) -> Result<Losses> {
    let m = &rec.job.model;
    let p = stride(m.d);
    if rec.theta.len() != m.k_fit * p || rec.true_theta.len() != m.k_true * p {
        return Err(HmoeError::Inconsistent(
            "theta or true_theta do not match the record's model".into(),
        ));
    }
    let fresh = derive_seed("fresh", &[&rec.seeds.data.to_string()]);
    Ok(Losses {
        voronoi: voronoi_loss(&rec.theta, &rec.true_theta, m.d, cfg.rho),
        regression: regression_error(
            m.expert,
            m.d,
            &rec.theta,
            &rec.true_theta,
            cfg.fresh_samples,
            fresh,
        ),
    })
}

/// The Voronoi loss at the end of every logged start of a record, in the order run.
pub fn start_losses(rec: &ControlRecord, cfg: &ValidLoss) -> Vec<f64> {
    rec.outcome
        .starts_log
        .iter()
        .map(|s| voronoi_loss(&s.theta, &rec.true_theta, rec.job.model.d, cfg.rho))
        .collect()
}
