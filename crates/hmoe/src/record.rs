//! One fit's job and raw record. A record holds everything needed to recompute any loss without
//! refitting: the configuration, the seeds, the true and estimated atoms and parameters.
use crate::atoms::Atoms;
use crate::config::{FitConfig, ModelConfig};
use crate::method::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What to fit: one (experiment, setting, method, n, replicate) cell of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitJob {
    pub experiment: String,
    pub setting: String,
    pub model: ModelConfig,
    pub fit: FitConfig,
    /// The family the truth is drawn from.
    pub truth: Method,
    /// The family that is fitted.
    pub method: Method,
    pub n: usize,
    pub replicate: u32,
}

/// The three independent random streams of one fit.
///
/// The truth depends on (experiment, setting) only, so every method and every n estimates the
/// same mixing measure. The data depend on (experiment, setting, n, replicate) but not on the
/// method: methods are compared on identical samples (common random numbers), which makes
/// the comparison paired. The initialisation depends on all five, method included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seeds {
    pub truth: u64,
    pub data: u64,
    pub init: u64,
}

/// A 64-bit seed from a domain tag and fields, by SHA-256 (stable across platforms and versions).
pub fn derive_seed(tag: &str, fields: &[&str]) -> u64 {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    for f in fields {
        h.update([0u8]);
        h.update(f.as_bytes());
    }
    let out = h.finalize();
    u64::from_le_bytes(out[..8].try_into().expect("sha256 has 32 bytes"))
}

impl Seeds {
    pub fn derive(experiment: &str, method: &str, setting: &str, n: usize, replicate: u32) -> Self {
        let (n, rep) = (n.to_string(), replicate.to_string());
        Seeds {
            truth: derive_seed("truth", &[experiment, setting]),
            data: derive_seed("data", &[experiment, setting, &n, &rep]),
            init: derive_seed("init", &[experiment, method, setting, &n, &rep]),
        }
    }

    pub fn for_job(job: &FitJob) -> Self {
        Self::derive(
            &job.experiment,
            &job.method.to_string(),
            &job.setting,
            job.n,
            job.replicate,
        )
    }
}

/// How a fit ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitStatus {
    /// Objective at or below the objective at the truth (or the truth is outside the family,
    /// where that guard does not apply).
    Ok,
    /// Every start ended above the objective at the truth: the optimiser failed.
    GuardFailed,
}

/// The raw result of one fit (THEORY.md §3), written to `results/<experiment>/raw/<id>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitRecord {
    pub job: FitJob,
    pub seeds: Seeds,
    /// Whether the truth lies in the fitted family (then the truth-objective guard applies).
    pub truth_in_family: bool,
    /// The truth's parameters in the truth family's own layout.
    pub true_theta: Vec<f64>,
    pub true_atoms: Atoms,
    /// The estimate's parameters in the fitted family's layout.
    pub theta: Vec<f64>,
    pub est_atoms: Atoms,
    /// Mean squared residual `(1/n) Σ ‖Y − f(X)‖²` at the estimate.
    pub objective: f64,
    /// The same at the true parameters, on the same data.
    pub objective_at_truth: f64,
    /// Norm of the objective's gradient at the estimate.
    pub grad_norm: f64,
    /// L-BFGS iterations of the kept start.
    pub iterations: u64,
    /// Whether the kept start stopped on a tolerance (not on the iteration cap).
    pub converged: bool,
    /// Starts run (restarts plus extra restarts used).
    pub starts: usize,
    pub status: FitStatus,
    /// Largest `|θ_j|` of the estimate (≤ bound by construction).
    pub max_abs_param: f64,
    pub seconds: f64,
}
