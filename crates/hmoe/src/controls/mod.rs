//! Controls (THEORY.md §4a): the classic softmax-gated mixture-of-experts regression, a second
//! model family for the rate curves and for the identifiability probe of §5a.
//!
//! Input `x ∈ R^d ~ Uniform[-1, 1]^d`, scalar output. Expert `j` has a gate `(β_j ∈ R^d, β0_j)`
//! and expert parameters `(a_j ∈ R^d, b_j)`; its output is `e_j(x) = a_jᵀx + b_j` (`linear`) or
//! `tanh(a_jᵀx + b_j)` (`tanh`). As the HMoE's inner level (THEORY.md §1), the normaliser holds
//! one frozen sink expert of score 0 and output 0, which removes softmax's translation invariance:
//!
//! ```text
//! f(x) = Σ_j exp(β_jᵀx + β0_j) e_j(x) / (1 + Σ_j exp(β_jᵀx + β0_j))
//! ```
//!
//! Scores are shifted by their maximum (the sink's 0 included) before `exp`, as in
//! `crate::model`. θ holds, expert after expert, `[β_j (d), β0_j, a_j (d), b_j]`.
//!
//! The estimator is the HMoE's (`crate::fit`: L-BFGS, the box and its penalty, starts near the
//! truth, the guard), reached through [`crate::fit::Smooth`]; the Voronoi loss is §4's with
//! cells in the joint distance of `(β, a, b)` ([`voronoi_loss`]); [`ControlProbe`] is the
//! family as `crate::probe` sees it.
//!
//! Files, as the HMoE family's: `model.rs` (f_θ, objective, gradient), `truth.rs`, `loss.rs`
//! (the Voronoi loss), `data.rs`, `fit.rs` (job, record, starts, losses) and `probe.rs`.
use crate::config::{int_range, ParamGuard};
use crate::error::{HmoeError, Result};
use serde::{Deserialize, Serialize};

mod data;
mod fit;
mod loss;
mod model;
mod probe;
mod truth;

pub use data::{sample_data, sample_inputs};
pub use fit::{
    initial_point, record_losses, regression_error, run_control_fit, start_losses, ControlJob,
    ControlRecord, ControlSpec,
};
pub use loss::{nearest_cells, voronoi_loss, voronoi_parts, voronoi_with_cells};
pub use model::{objective, objective_and_grad, predict, ControlObjective};
pub use probe::ControlProbe;
pub use truth::{draw_truth, embed};

/// The experts' output function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expert {
    /// `e(x) = aᵀx + b`: an exact flat set when over-specified (THEORY.md §5a).
    Linear,
    /// `e(x) = tanh(aᵀx + b)`.
    Tanh,
}

impl std::fmt::Display for Expert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expert::Linear => "linear",
            Expert::Tanh => "tanh",
        })
    }
}

impl Expert {
    /// `(e(z), e'(z))` at the pre-activation `z = aᵀx + b`.
    #[inline]
    fn eval(self, z: f64) -> (f64, f64) {
        match self {
            Expert::Linear => (z, 1.0),
            Expert::Tanh => {
                let t = z.tanh();
                (t, 1.0 - t * t)
            }
        }
    }
}

/// Parameters per expert: `β (d), β0, a (d), b`.
pub fn stride(d: usize) -> usize {
    2 * d + 2
}

/// Offsets of expert `j`'s parts in θ.
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    pub beta: usize,
    pub beta0: usize,
    pub a: usize,
    pub b: usize,
}

/// Where expert `j`'s parameters sit in θ.
pub fn slots(d: usize, j: usize) -> Slots {
    let o = j * stride(d);
    Slots {
        beta: o,
        beta0: o + d,
        a: o + d + 1,
        b: o + 2 * d + 1,
    }
}

/// The model's sizes and expert type (`[model]` of a `controls` experiment, with the setting's
/// `expert` and `k_fit`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlModel {
    pub expert: Expert,
    /// Input dimension.
    pub d: usize,
    /// Experts of the truth.
    pub k_true: usize,
    /// Experts fitted: `k_true` exact, more over-specified.
    pub k_fit: usize,
}

impl ParamGuard for ControlModel {
    type Error = crate::error::HmoeError;
    fn validate(&self) -> Result<()> {
        int_range("d", self.d, 1, 64, "1..=64")?;
        int_range("k_true", self.k_true, 1, 16, "1..=16")?;
        if self.k_fit < self.k_true || self.k_fit > self.k_true + 8 {
            return Err(HmoeError::InvalidConfig {
                field: "k_fit",
                value: self.k_fit.to_string(),
                allowed: "k_true..=k_true+8 (the family must contain the truth)",
            });
        }
        Ok(())
    }
}
