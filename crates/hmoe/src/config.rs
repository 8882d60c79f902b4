//! The model and fit configuration (THEORY.md §1, §3, §6), parsed from TOML and checked before use.
//!
//! Parse → check → run, as linfa does: `ModelConfig::check` is the only way to a `ValidModel`,
//! so nothing downstream ever sees a value outside its range.
use crate::error::{HmoeError, Result};
use serde::{Deserialize, Serialize};

/// Sizes and noise of the HMoE regression model. Defaults are THEORY.md §6.
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
    /// Noise standard deviation `σ`.
    pub sigma: f64,
    /// Tie each head's atoms across slots (multi-head LoRA proper) instead of one atom per slot.
    pub tie_atoms_across_slots: bool,
    /// HoRA only: one A-seed per slot shared by all heads (`true`) or one per head (`false`).
    pub share_a_across_heads: bool,
    /// A frozen softmax gate over heads `π_h(X) = softmax_h(γ_hᵀu)` instead of `π_h = 1/H`.
    pub outer_gate: bool,
    /// Every free parameter lies in `[-bound, bound]`.
    pub bound: f64,
    /// Standard deviation of the truth's generator weights and seeds (truncated at ±2·std).
    pub truth_std: f64,
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
            sigma: 0.1,
            tie_atoms_across_slots: false,
            share_a_across_heads: true,
            outer_gate: false,
            bound: 4.0,
            truth_std: 1.0,
        }
    }
}

fn int_range(
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

fn real_range(field: &'static str, v: f64, ok: bool, allowed: &'static str) -> Result<()> {
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

    /// Check every value against its allowed range.
    pub fn check(&self) -> Result<()> {
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
        real_range(
            "sigma",
            self.sigma,
            self.sigma >= 0.0,
            "a finite value >= 0",
        )?;
        real_range("bound", self.bound, self.bound > 0.0, "a finite value > 0")?;
        real_range(
            "truth_std",
            self.truth_std,
            self.truth_std > 0.0 && 2.0 * self.truth_std < self.bound,
            "a finite value > 0 with 2*truth_std < bound (the truth must lie inside the box)",
        )?;
        Ok(())
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

/// Settings of the least-squares estimator (THEORY.md §3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitConfig {
    /// Starts per fit, all run; the best objective is kept.
    pub restarts: usize,
    /// Further starts allowed when the best is still above the objective at the truth.
    pub extra_restarts: usize,
    /// Standard deviation of the Gaussian noise added to the truth at initialisation.
    pub init_noise: f64,
    /// L-BFGS iteration cap per start.
    pub max_iters: u64,
    /// Stop when the gradient norm falls below this.
    pub tol_grad: f64,
    /// Stop when the objective changes by less than this between iterations.
    pub tol_cost: f64,
    /// L-BFGS memory.
    pub memory: usize,
    /// Weight of the box penalty `λ Σ max(0, |θ_j| − bound)²` (exactly zero inside the box).
    pub box_penalty: f64,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            restarts: 2,
            extra_restarts: 2,
            init_noise: 0.05,
            max_iters: 400,
            tol_grad: 1e-9,
            tol_cost: 1e-15,
            memory: 10,
            box_penalty: 1e3,
        }
    }
}

impl FitConfig {
    pub fn check(&self) -> Result<()> {
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

impl LossConfig {
    pub fn check(&self) -> Result<()> {
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
