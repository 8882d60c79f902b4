//! Errors that are the user's to fix (exit code 2, nothing written), as opposed to failures while
//! running, which the binary reports through `anyhow` with exit code 1.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LabError {
    /// No experiment file of that name.
    #[error("unknown experiment `{name}`: no file {path} (available: {available})")]
    UnknownExperiment {
        name: String,
        path: String,
        available: String,
    },
    /// An experiment file that does not parse or holds a value out of range.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    /// A flag or argument that makes no sense (a bad shard, an unknown profile, ...).
    #[error("{0}")]
    Usage(String),
}

impl LabError {
    /// The process exit code of a user error.
    pub const EXIT_CODE: i32 = 2;
}

/// Exit code for an error chain: 2 when any cause is a [`LabError`], else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.downcast_ref::<LabError>().is_some()) {
        LabError::EXIT_CODE
    } else {
        1
    }
}
