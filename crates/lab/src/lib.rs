//! The `hora` driver (DESIGN.md, "Data flow"): an experiment file is planned into jobs with
//! content-hashed ids, jobs run into raw records written atomically, metrics are computed from
//! raw records only, and figures and a summary are drawn from the metrics.
//!
//! The plumbing (`pipeline`) knows nothing of the science: an experiment `kind` (`kind::Kind`)
//! expands a profile into jobs, runs one job into a record, turns records into metric tables and
//! draws its report. The kinds are registered in `kinds`: `rates` (hmoe fits), `finetune`
//! (candle), `identifiability` (the probe R(ε) of THEORY.md §5a) and `controls` (the classic
//! softmax-gated MoE). `verify` checks the committed archive as a whole.
//!
//! Public are only what the `hora` binary, the tests and the examples use: [`cli`] (the
//! commands), [`error`], [`paper`] (its figure layout is tested from outside) and [`plot`]
//! (the geometry example draws with it); everything else is the crate's own.

pub mod cli;
pub mod error;
pub(crate) mod experiment;
pub(crate) mod kind;
pub(crate) mod kinds;
pub(crate) mod layout;
pub(crate) mod markdown;
pub mod paper;
pub(crate) mod pipeline;
pub(crate) mod plan;
pub mod plot;
pub(crate) mod progress;
pub(crate) mod provenance;
pub(crate) mod reproduce;
pub(crate) mod slurm;
pub(crate) mod store;
pub(crate) mod verify;

pub use error::LabError;
