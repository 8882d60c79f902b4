//! The simulator's configuration (THEORY.md §1, §3, §6), split by what each part describes:
//!
//! - [`ModelConfig`]: the HMoE model's sizes and structure (`[model]` of an experiment file);
//! - [`DataConfig`]: how the responses are drawn, the noise `σ` (`[data]`);
//! - [`TruthPrior`]: the spread of the true parameters (`[truth_prior]`);
//! - [`FitConfig`]: the least-squares estimator, its box, starts and stopping rules (`[fit]`);
//! - [`LossConfig`]: how losses are computed from stored estimates (`[loss]`).
//!
//! Parse → check → run, as linfa does with `ParamGuard` (the workspace's one guard,
//! `fsio::guard`): each part is a plain serde struct, and [`ParamGuard::check`] is the only way
//! to a [`Checked`] value. The fitting code takes checked
//! values only ([`crate::FitJob`] is a `Checked<FitSpec>`, [`ValidLoss`] a `Checked<LossConfig>`),
//! so nothing downstream re-checks and nothing ever sees a value outside its range. A checked
//! value also deserialises through its check, so a stored record cannot smuggle one in.
use crate::error::{HmoeError, Result};
use serde::{Deserialize, Serialize};

pub use fsio::guard::{Checked, ParamGuard};

/// The checked loss configuration `record_losses` takes.
pub type ValidLoss = Checked<LossConfig>;

/// Sizes and structure of the HMoE regression model. Defaults are THEORY.md §6.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Token dimension `d` (query and key/value tokens live in `R^d`).
    pub d: usize,
    /// Output dimension `q`.
    pub q: usize,
    /// LoRA rank `r`.
    pub r: usize,
    /// Number of heads `H`.
    pub heads: usize,
    /// Number of key/value token slots `S`.
    pub slots: usize,
    /// Fitted atoms per slot `m` (the truth always has one): 1 exact, ≥ 2 over-specified.
    pub atoms: usize,
    /// Tie each head's atoms across slots (multi-head LoRA proper) instead of one atom per slot.
    pub tie_atoms_across_slots: bool,
    /// HoRA only: one A-seed per slot shared by all heads (`true`) or one per head (`false`).
    pub share_a_across_heads: bool,
    /// A frozen softmax gate over heads `π_h(X) = softmax_h(γ_hᵀu)` instead of `π_h = 1/H`.
    pub outer_gate: bool,
    /// The self-attention variant (THEORY.md §1): the gate's query is the token the expert
    /// reads, score `v_sᵀ(P + ΔQ)v_s + c`, instead of the separate query token `u`. Added after
    /// the first records: left out of every serialised form while off, so no id moves.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub self_attention: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            d: 2,
            q: 2,
            r: 1,
            heads: 2,
            slots: 2,
            atoms: 1,
            tie_atoms_across_slots: false,
            share_a_across_heads: true,
            outer_gate: false,
            self_attention: false,
        }
    }
}

pub(crate) fn int_range(
    field: &'static str,
    v: usize,
    lo: usize,
    hi: usize,
    allowed: &'static str,
) -> Result<()> {
    if v < lo || v > hi {
        return Err(HmoeError::InvalidConfig {
            field,
            value: v.to_string(),
            allowed,
        });
    }
    Ok(())
}

pub(crate) fn real_range(
    field: &'static str,
    v: f64,
    ok: bool,
    allowed: &'static str,
) -> Result<()> {
    if !v.is_finite() || !ok {
        return Err(HmoeError::InvalidConfig {
            field,
            value: v.to_string(),
            allowed,
        });
    }
    Ok(())
}

impl ModelConfig {
    /// Parse from a TOML string; unknown keys are errors.
    pub fn from_toml(s: &str) -> Result<Self> {
        toml::from_str(s).map_err(|e| HmoeError::Parse(e.to_string()))
    }

    /// Slots that carry their own parameters: one per slot, or one for all when tied.
    pub fn param_slots(&self) -> usize {
        if self.tie_atoms_across_slots {
            1
        } else {
            self.slots
        }
    }

    /// The slot whose parameters atom slot `s` uses.
    pub fn param_slot(&self, s: usize) -> usize {
        if self.tie_atoms_across_slots {
            0
        } else {
            s
        }
    }
}

impl ParamGuard for ModelConfig {
    type Error = crate::error::HmoeError;
    fn validate(&self) -> Result<()> {
        int_range("d", self.d, 1, 64, "1..=64")?;
        int_range("q", self.q, 1, 64, "1..=64")?;
        int_range("r", self.r, 1, 64, "1..=64")?;
        if self.r > self.d {
            return Err(HmoeError::InvalidConfig {
                field: "r",
                value: self.r.to_string(),
                allowed: "1..=d (a rank above d is not low-rank)",
            });
        }
        int_range("heads", self.heads, 1, 64, "1..=64")?;
        int_range("slots", self.slots, 1, 64, "1..=64")?;
        int_range("atoms", self.atoms, 1, 8, "1..=8")?;
        Ok(())
    }
}

/// How the responses are drawn: `Y = f*(X) + σ ε`, `ε ~ N(0, I_q)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Noise standard deviation `σ`.
    pub sigma: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { sigma: 0.1 }
    }
}

impl ParamGuard for DataConfig {
    type Error = crate::error::HmoeError;
    fn validate(&self) -> Result<()> {
        real_range(
            "sigma",
            self.sigma,
            self.sigma >= 0.0,
            "a finite value >= 0",
        )
    }
}

/// The prior the true parameters are drawn from (THEORY.md §6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TruthPrior {
    /// Standard deviation of the truth's generator weights and seeds (truncated at ±2·std).
    pub std: f64,
}

impl Default for TruthPrior {
    fn default() -> Self {
        Self { std: 1.0 }
    }
}

impl ParamGuard for TruthPrior {
    type Error = crate::error::HmoeError;
    fn validate(&self) -> Result<()> {
        real_range("std", self.std, self.std > 0.0, "a finite value > 0")
    }
}

/// The solver each start of a fit runs (`[fit] solver`): both minimise the same objective
/// `(1/n) Σ_k ‖Y_k − f_θ(X_k)‖²` over the same box, from the same starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Solver {
    /// L-BFGS with More–Thuente line search (argmin) on the box-penalised objective.
    #[default]
    Lbfgs,
    /// Levenberg–Marquardt on the residuals `(f_θ(X_k) − Y_k)/√n`, with the analytic
    /// Gauss–Newton matrix and a step projected onto the box.
    Lm,
}

impl std::fmt::Display for Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Solver::Lbfgs => "lbfgs",
            Solver::Lm => "lm",
        })
    }
}

/// Settings of the least-squares estimator (THEORY.md §3): its box, starts and stopping rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitConfig {
    /// Every free parameter lies in `[-bound, bound]`.
    pub bound: f64,
    /// Starts per fit, all run; the best objective is kept.
    pub restarts: usize,
    /// Further starts allowed when the best is still above the objective at the truth.
    pub extra_restarts: usize,
    /// Standard deviation of the Gaussian noise added to the truth at initialisation.
    pub init_noise: f64,
    /// Iteration cap per start (L-BFGS iterations, or Levenberg–Marquardt Jacobian evaluations).
    pub max_iters: u64,
    /// Stop when the gradient norm falls below this.
    pub tol_grad: f64,
    /// Stop when the objective changes by less than this between iterations (L-BFGS: the
    /// absolute change, argmin's rule; Levenberg–Marquardt: the relative decrease of an
    /// accepted step).
    pub tol_cost: f64,
    /// L-BFGS memory (unused by Levenberg–Marquardt).
    pub memory: usize,
    /// Weight of the box penalty `λ Σ max(0, |θ_j| − bound)²` (exactly zero inside the box).
    pub box_penalty: f64,
    /// Further starts drawn from the truth's prior (not near the truth), run after the others;
    /// the best objective over all starts is kept. 0 (the default) is the behaviour of every
    /// committed record.
    pub prior_starts: usize,
    /// The solver of every start: L-BFGS on the penalised objective (the default, the behaviour
    /// of every committed record) or Levenberg–Marquardt on the residuals (see `fit.rs`).
    /// Omitted from a job's key while it holds the default, so no committed id moves.
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub solver: Solver,
    /// Test-only: an option added after job-key version 1, with a default equal to the old
    /// behaviour; `record::tests` shows it leaves every committed job id unchanged.
    #[cfg(test)]
    #[serde(skip_serializing_if = "fsio::key::is_default")]
    pub probe_option: u32,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            bound: 4.0,
            restarts: 2,
            extra_restarts: 2,
            init_noise: 0.05,
            max_iters: 400,
            tol_grad: 1e-9,
            tol_cost: 1e-15,
            memory: 10,
            box_penalty: 1e3,
            prior_starts: 0,
            solver: Solver::Lbfgs,
            #[cfg(test)]
            probe_option: 0,
        }
    }
}

impl ParamGuard for FitConfig {
    type Error = crate::error::HmoeError;
    fn validate(&self) -> Result<()> {
        real_range("bound", self.bound, self.bound > 0.0, "a finite value > 0")?;
        int_range("restarts", self.restarts, 1, 100, "1..=100")?;
        int_range("extra_restarts", self.extra_restarts, 0, 100, "0..=100")?;
        real_range(
            "init_noise",
            self.init_noise,
            self.init_noise >= 0.0,
            "a finite value >= 0",
        )?;
        if self.max_iters == 0 || self.max_iters > 1_000_000 {
            return Err(HmoeError::InvalidConfig {
                field: "max_iters",
                value: self.max_iters.to_string(),
                allowed: "1..=1000000",
            });
        }
        real_range(
            "tol_grad",
            self.tol_grad,
            self.tol_grad >= 0.0,
            "a finite value >= 0",
        )?;
        real_range(
            "tol_cost",
            self.tol_cost,
            self.tol_cost >= 0.0,
            "a finite value >= 0",
        )?;
        int_range("memory", self.memory, 1, 100, "1..=100")?;
        int_range("prior_starts", self.prior_starts, 0, 100, "0..=100")?;
        real_range(
            "box_penalty",
            self.box_penalty,
            self.box_penalty > 0.0,
            "a finite value > 0",
        )?;
        Ok(())
    }
}

/// How losses are computed from stored estimates (THEORY.md §4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// Exponent `ρ` of the Voronoi loss in cells with two or more fitted atoms.
    pub rho: f64,
    /// Fresh inputs used to measure the regression-function error.
    pub fresh_samples: usize,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            rho: 2.0,
            fresh_samples: 10_000,
        }
    }
}

impl ParamGuard for LossConfig {
    type Error = crate::error::HmoeError;
    fn validate(&self) -> Result<()> {
        real_range("rho", self.rho, self.rho >= 1.0, "a finite value >= 1")?;
        int_range(
            "fresh_samples",
            self.fresh_samples,
            1,
            10_000_000,
            "1..=10000000",
        )?;
        Ok(())
    }
}

/// The truth must lie inside the estimator's box (a draw is truncated at ±2·std).
pub(crate) fn check_prior_inside_box(prior: &TruthPrior, fit: &FitConfig) -> Result<()> {
    if 2.0 * prior.std >= fit.bound {
        return Err(HmoeError::InvalidConfig {
            field: "std",
            value: prior.std.to_string(),
            allowed: "2*std < bound of [fit] (the truth must lie inside the estimator's box)",
        });
    }
    Ok(())
}
