//! One fit's job and raw record. A record holds everything needed to recompute any loss without
//! refitting: the configuration, the seeds, the true and estimated atoms and parameters.
use crate::atoms::Atoms;
use crate::config::{
    check_prior_inside_box, Checked, DataConfig, FitConfig, ModelConfig, ParamGuard, Solver,
    TruthPrior,
};
use crate::error::{HmoeError, Result};
use crate::method::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What to fit, as written: one (experiment, setting, method, n, replicate) cell of a sweep with
/// the configuration it runs under. [`ParamGuard::check`] turns it into a [`FitJob`], the only
/// input the estimator takes.
///
/// On disk (and in the job's id) a spec is stored in the layout of job-key version 1,
/// [`JobV1`]: see that type for the rule that keeps every committed id stable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "JobV1", into = "JobV1")]
pub struct FitSpec {
    pub experiment: String,
    pub setting: String,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub truth_prior: TruthPrior,
    pub fit: FitConfig,
    /// The family the truth is drawn from.
    pub truth: Method,
    /// The family that is fitted.
    pub method: Method,
    pub n: usize,
    pub replicate: u32,
    /// Where the random draws come from: `None` (the default, every committed record) draws the
    /// truth, the data and the starts under this job's own experiment and setting; `Some` draws
    /// them under another (experiment, setting), so that settings which differ only in the
    /// estimator (a box, a number of starts) see the same truth, the same samples and the same
    /// first starts as each other or as a committed experiment: a paired comparison.
    pub draws: Option<Draws>,
}

/// The (experiment, setting) a job's seeds are derived from, when not its own ([`FitSpec::draws`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draws {
    pub experiment: String,
    pub setting: String,
}

impl FitSpec {
    /// A job with every configuration part at its default (THEORY.md §6) and `atoms` fitted
    /// atoms per slot; set other parts with struct-update syntax before checking.
    pub fn new(
        experiment: &str,
        setting: &str,
        truth: Method,
        method: Method,
        atoms: usize,
        n: usize,
        replicate: u32,
    ) -> Self {
        FitSpec {
            experiment: experiment.into(),
            setting: setting.into(),
            model: ModelConfig {
                atoms,
                ..ModelConfig::default()
            },
            data: DataConfig::default(),
            truth_prior: TruthPrior::default(),
            fit: FitConfig::default(),
            truth,
            method,
            n,
            replicate,
            draws: None,
        }
    }
}

impl ParamGuard for FitSpec {
    type Error = crate::error::HmoeError;
    fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.data.validate()?;
        self.truth_prior.validate()?;
        self.fit.validate()?;
        check_prior_inside_box(&self.truth_prior, &self.fit)?;
        if let Some(d) = &self.draws {
            if d.experiment.is_empty() || d.setting.is_empty() {
                return Err(HmoeError::InvalidConfig {
                    field: "draws",
                    value: format!(
                        "{{ experiment = {:?}, setting = {:?} }}",
                        d.experiment, d.setting
                    ),
                    allowed: "a non-empty experiment and setting",
                });
            }
        }
        if self.n == 0 {
            return Err(HmoeError::InvalidConfig {
                field: "n",
                value: "0".into(),
                allowed: ">= 1",
            });
        }
        Ok(())
    }
}

/// A checked job: what [`crate::run_fit`] takes. Reading one from JSON runs the check.
pub type FitJob = Checked<FitSpec>;

/// The stored layout of a job, job-key version 1: the layout of every committed record and the
/// text whose canonical JSON is hashed into the job's id (`lab::plan::job_id`).
///
/// The rule that keeps ids stable: **this layout only grows, and a field added to it is omitted
/// while it holds its default** (`skip_serializing_if = "fsio::key::is_default"`), where
/// the default is the behaviour before the field existed. A job that does not use the new field
/// then serialises to the same text, and keeps its id and its record; a job that uses it gets a
/// new id. A field is never removed or renamed (old records must still read); a retired field
/// stays readable here and is mapped in `From<JobV1>`. The in-memory types ([`FitSpec`] and its
/// parts) may be reorganised freely: `sigma`, `bound` and `truth_std` sit in `model` here for
/// version 1's sake although they describe the data, the estimator and the truth's prior.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobV1 {
    pub experiment: String,
    pub setting: String,
    pub model: ModelV1,
    pub fit: FitV1,
    pub truth: Method,
    pub method: Method,
    pub n: usize,
    pub replicate: u32,
    /// Added after the first records: omitted while `None`, so every committed id is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draws: Option<Draws>,
}

/// `model` of [`JobV1`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelV1 {
    pub d: usize,
    pub q: usize,
    pub r: usize,
    pub heads: usize,
    pub slots: usize,
    pub atoms: usize,
    pub sigma: f64,
    pub tie_atoms_across_slots: bool,
    pub share_a_across_heads: bool,
    pub outer_gate: bool,
    pub bound: f64,
    pub truth_std: f64,
    /// Added after the first records: omitted while off, so every committed id is unchanged.
    #[serde(default, skip_serializing_if = "fsio::key::is_default")]
    pub self_attention: bool,
}

/// `fit` of [`JobV1`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitV1 {
    pub restarts: usize,
    pub extra_restarts: usize,
    pub init_noise: f64,
    pub max_iters: u64,
    pub tol_grad: f64,
    pub tol_cost: f64,
    pub memory: usize,
    pub box_penalty: f64,
    /// Added after the first records: omitted while 0, so every committed id is unchanged.
    #[serde(default, skip_serializing_if = "fsio::key::is_default")]
    pub prior_starts: usize,
    /// Added after the first records: omitted while `lbfgs`, so every committed id is unchanged.
    #[serde(default, skip_serializing_if = "fsio::key::is_default")]
    pub solver: Solver,
    /// See [`FitConfig`]'s field of the same name (compiled in unit tests only).
    #[cfg(test)]
    #[serde(default, skip_serializing_if = "fsio::key::is_default")]
    pub probe_option: u32,
}

impl From<FitSpec> for JobV1 {
    fn from(s: FitSpec) -> Self {
        let (m, f) = (s.model, s.fit);
        JobV1 {
            experiment: s.experiment,
            setting: s.setting,
            model: ModelV1 {
                d: m.d,
                q: m.q,
                r: m.r,
                heads: m.heads,
                slots: m.slots,
                atoms: m.atoms,
                sigma: s.data.sigma,
                tie_atoms_across_slots: m.tie_atoms_across_slots,
                share_a_across_heads: m.share_a_across_heads,
                outer_gate: m.outer_gate,
                bound: f.bound,
                truth_std: s.truth_prior.std,
                self_attention: m.self_attention,
            },
            fit: FitV1 {
                restarts: f.restarts,
                extra_restarts: f.extra_restarts,
                init_noise: f.init_noise,
                max_iters: f.max_iters,
                tol_grad: f.tol_grad,
                tol_cost: f.tol_cost,
                memory: f.memory,
                box_penalty: f.box_penalty,
                prior_starts: f.prior_starts,
                solver: f.solver,
                #[cfg(test)]
                probe_option: f.probe_option,
            },
            truth: s.truth,
            method: s.method,
            n: s.n,
            replicate: s.replicate,
            draws: s.draws,
        }
    }
}

impl From<JobV1> for FitSpec {
    fn from(j: JobV1) -> Self {
        let (m, f) = (j.model, j.fit);
        FitSpec {
            experiment: j.experiment,
            setting: j.setting,
            model: ModelConfig {
                d: m.d,
                q: m.q,
                r: m.r,
                heads: m.heads,
                slots: m.slots,
                atoms: m.atoms,
                tie_atoms_across_slots: m.tie_atoms_across_slots,
                share_a_across_heads: m.share_a_across_heads,
                outer_gate: m.outer_gate,
                self_attention: m.self_attention,
            },
            data: DataConfig { sigma: m.sigma },
            truth_prior: TruthPrior { std: m.truth_std },
            fit: FitConfig {
                bound: m.bound,
                restarts: f.restarts,
                extra_restarts: f.extra_restarts,
                init_noise: f.init_noise,
                max_iters: f.max_iters,
                tol_grad: f.tol_grad,
                tol_cost: f.tol_cost,
                memory: f.memory,
                box_penalty: f.box_penalty,
                prior_starts: f.prior_starts,
                solver: f.solver,
                #[cfg(test)]
                probe_option: f.probe_option,
            },
            truth: j.truth,
            method: j.method,
            n: j.n,
            replicate: j.replicate,
            draws: j.draws,
        }
    }
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

    /// The seeds of a job: derived from its own experiment and setting, or from those of its
    /// [`FitSpec::draws`].
    pub fn for_job(job: &FitSpec) -> Self {
        let (experiment, setting) = match &job.draws {
            Some(d) => (&d.experiment, &d.setting),
            None => (&job.experiment, &job.setting),
        };
        Self::derive(
            experiment,
            &job.method.to_string(),
            setting,
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
    /// How the fit ended: its objective, guard and starts (the fields every fitted family
    /// records, written inline after the family's own).
    #[serde(flatten)]
    pub outcome: FitOutcome,
}

/// How a fit ended, whatever the model family: the tail of every fit record (`FitRecord`, the
/// HMoE families; `controls::ControlRecord`, the softmax-gated MoE), serialised inline so the
/// records read and re-serialise exactly as they did when each family spelled these fields out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitOutcome {
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
    /// Every start, in the order run, with where it started and where it ended: the estimator's
    /// audit trail (the kept estimate is the start of lowest objective). Absent from records
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub starts_log: Vec<StartLog>,
}

impl FitOutcome {
    /// The outcome of the kept start `best` (its θ is the estimate): the guard compares its
    /// objective with the truth's (`guarded`: whether the guard applies at all).
    pub fn of_best(
        best: &crate::fit::Start,
        objective_at_truth: f64,
        guarded: bool,
        starts: usize,
        seconds: f64,
        starts_log: Vec<StartLog>,
    ) -> Self {
        let status = if !guarded || crate::fit::passes_guard(best.objective, objective_at_truth) {
            FitStatus::Ok
        } else {
            FitStatus::GuardFailed
        };
        FitOutcome {
            objective: best.objective,
            objective_at_truth,
            grad_norm: best.grad_norm,
            iterations: best.iterations,
            converged: best.converged,
            starts,
            status,
            max_abs_param: best.theta.iter().fold(0.0, |a, t| a.max(t.abs())),
            seconds,
            starts_log,
        }
    }
}

/// Where a start began: near the truth (the truth plus noise, or a prior draw plus noise when the
/// family does not contain the truth), or from a fresh draw of the truth's prior.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartOrigin {
    NearTruth,
    Prior,
}

/// One start of a fit: its end point (projected onto the box) and how it stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartLog {
    pub origin: StartOrigin,
    pub theta: Vec<f64>,
    pub objective: f64,
    pub grad_norm: f64,
    pub iterations: u64,
    /// Stopped on a tolerance (not on the iteration cap or a failed line search).
    pub converged: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::Path;

    /// Every committed raw record of a `rates` experiment: (id, stored job, stored record).
    fn committed_records() -> Vec<(String, Value, Value)> {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
        let mut out = Vec::new();
        for exp in std::fs::read_dir(&results).expect("results/ is committed") {
            let raw = exp.unwrap().path().join("raw");
            for f in std::fs::read_dir(&raw).into_iter().flatten() {
                let path = f.unwrap().path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                if v["kind"] == "rates" {
                    let id = v["id"].as_str().unwrap().to_string();
                    out.push((id, v["job"].clone(), v["record"].clone()));
                }
            }
        }
        out
    }

    /// A field added after job-key version 1 (`probe_option`, compiled into this test build
    /// only, default 0 = the old behaviour) changes no committed id, and every committed record
    /// still reads; the same field at a non-default value gives a new id.
    #[test]
    fn a_defaulted_new_field_keeps_every_committed_id_and_record() {
        let records = committed_records();
        assert!(!records.is_empty(), "no committed rates records found");
        for (id, stored, record) in &records {
            let job: FitJob = serde_json::from_value(stored.clone())
                .unwrap_or_else(|e| panic!("record {id}: the stored job does not read: {e}"));
            assert_eq!(job.fit.probe_option, 0);
            let back = serde_json::to_value(&job).unwrap();
            assert_eq!(&back, stored, "record {id}: the job does not round-trip");
            assert_eq!(
                &fsio::key::content_id(&back),
                id,
                "record {id}: the id moved"
            );
            let rec: FitRecord = serde_json::from_value(record.clone())
                .unwrap_or_else(|e| panic!("record {id}: the record does not read: {e}"));
            assert_eq!(rec.job, job);

            let mut changed = job.clone().into_inner();
            changed.fit.probe_option = 3;
            let changed = serde_json::to_value(changed.check().unwrap()).unwrap();
            assert_eq!(changed["fit"]["probe_option"], 3);
            assert_ne!(&fsio::key::content_id(&changed), id);
        }
    }

    /// `draws` takes the seeds of another (experiment, setting) and nothing else: a job of
    /// experiment `x` drawing as (`e`, `s`) has the seeds of the job of `e`/`s` with the same
    /// method, n and replicate, while its id differs (the field is in the key when set).
    #[test]
    fn draws_borrow_only_the_seeds() {
        let base = FitSpec::new(
            "e",
            "s",
            "hora-tanh".parse().unwrap(),
            "lora".parse().unwrap(),
            2,
            100,
            3,
        );
        let other = FitSpec {
            experiment: "x".into(),
            setting: "y".into(),
            draws: Some(Draws {
                experiment: "e".into(),
                setting: "s".into(),
            }),
            ..base.clone()
        };
        assert_eq!(Seeds::for_job(&other), Seeds::for_job(&base));
        let own = FitSpec {
            draws: None,
            ..other.clone()
        };
        assert_ne!(Seeds::for_job(&own), Seeds::for_job(&base));
        let id = |s: &FitSpec| fsio::key::content_id(&serde_json::to_value(s).unwrap());
        assert_ne!(id(&other), id(&own));
        let v = serde_json::to_value(&other).unwrap();
        assert_eq!(v["draws"]["experiment"], "e");
        let back: FitSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back, other);
        let empty = FitSpec {
            draws: Some(Draws {
                experiment: "e".into(),
                setting: String::new(),
            }),
            ..base
        };
        let err = empty.check().unwrap_err().to_string();
        assert!(err.contains("draws"), "{err}");
    }

    /// The version-1 layout itself: a default job serialises to exactly these keys. A new
    /// field that appears here at its default would change every committed id (see [`JobV1`]).
    #[test]
    fn the_version_1_layout_is_frozen() {
        let spec = FitSpec {
            experiment: "e".into(),
            setting: "s".into(),
            model: ModelConfig::default(),
            data: DataConfig::default(),
            truth_prior: TruthPrior::default(),
            fit: FitConfig::default(),
            truth: "hora-tanh".parse().unwrap(),
            method: "lora".parse().unwrap(),
            n: 10,
            replicate: 0,
            draws: None,
        };
        let v = serde_json::to_value(spec.check().unwrap()).unwrap();
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            [
                "experiment",
                "fit",
                "method",
                "model",
                "n",
                "replicate",
                "setting",
                "truth"
            ]
        );
        assert_eq!(
            keys(&v["model"]),
            [
                "atoms",
                "bound",
                "d",
                "heads",
                "outer_gate",
                "q",
                "r",
                "share_a_across_heads",
                "sigma",
                "slots",
                "tie_atoms_across_slots",
                "truth_std"
            ]
        );
        assert_eq!(
            keys(&v["fit"]),
            [
                "box_penalty",
                "extra_restarts",
                "init_noise",
                "max_iters",
                "memory",
                "restarts",
                "tol_cost",
                "tol_grad"
            ]
        );
    }

    #[test]
    fn reading_a_job_runs_its_check() {
        let (_, stored, _) = committed_records().into_iter().next().unwrap();
        let mut bad = stored.clone();
        bad["model"]["sigma"] = serde_json::json!(-1.0);
        let e = serde_json::from_value::<FitJob>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sigma`"), "{e}");
        let mut bad = stored;
        bad["model"]["truth_std"] = serde_json::json!(3.0);
        let e = serde_json::from_value::<FitJob>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`std`") && e.contains("bound"), "{e}");
    }
}
