//! The `hora` driver (DESIGN.md, "Data flow"): an experiment file is planned into jobs with
//! content-hashed ids, jobs run into raw records written atomically, metrics are computed from
//! raw records only, and figures and a summary are drawn from the metrics.
//!
//! The plumbing ([`pipeline`]) knows nothing of the science: an experiment `kind` ([`kind::Kind`])
//! expands a profile into jobs, runs one job into a record, turns records into metric tables and
//! draws its report. The kinds are registered in [`kinds`]: `rates` (hmoe fits), `finetune`
//! (candle), `identifiability` (the probe R(ε) of THEORY.md §5a) and `controls` (the classic
//! softmax-gated MoE). [`verify`] checks the committed archive as a whole.

pub mod cli;
pub mod error;
pub mod experiment;
pub mod kind;
pub mod kinds;
pub mod layout;
pub mod markdown;
pub mod paper;
pub mod pipeline;
pub mod plan;
pub mod plot;
pub mod progress;
pub mod provenance;
pub mod reproduce;
pub mod slurm;
pub mod store;
pub mod verify;

pub use error::LabError;
pub use kind::Kind;
