//! The HMoE view of multi-head LoRA (THEORY.md): the model, the three parametrisations
//! (`lora`, `replora`, `hora`), the least-squares estimator, the Voronoi loss and rate fits.
//!
//! Data flow: [`run_fit`] takes a [`FitJob`] and returns a raw [`FitRecord`]; [`record_losses`]
//! recomputes every loss from a record alone; [`rates`] fits slopes across n.

pub mod atoms;
pub mod config;
pub mod construct;
pub mod controls;
pub mod data;
pub mod error;
pub mod exact;
pub mod fit;
pub mod geometry;
pub mod kernel;
pub mod lm;
pub mod loss;
pub mod method;
pub mod model;
pub mod param;
pub mod probe;
pub mod rates;
pub mod record;
pub mod stats;
pub mod truth;

pub use atoms::Atoms;
pub use config::{
    Checked, DataConfig, FitConfig, LossConfig, ModelConfig, ParamGuard, Solver, TruthPrior,
    ValidLoss,
};
pub use error::{HmoeError, Result};
pub use fit::run_fit;
pub use loss::{
    record_losses, regression_error, start_losses, voronoi_loss, voronoi_loss_and_grad,
    voronoi_parts, Losses, VoronoiParts,
};
pub use method::{Activation, Family, Method};
pub use model::Model;
pub use rates::{fit_rate, sample_complexity, RateFit, SampleComplexity};
pub use record::{
    Draws, FitJob, FitOutcome, FitRecord, FitSpec, FitStatus, JobV1, Seeds, StartLog, StartOrigin,
};
