//! The one error type of the simulator: every variant names what was wrong.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HmoeError {
    /// A configuration value outside its allowed range.
    #[error("invalid value for `{field}`: {value} (allowed: {allowed})")]
    InvalidConfig {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
    /// A configuration file that does not parse (unknown key, wrong type, ...).
    #[error("cannot parse configuration: {0}")]
    Parse(String),
    /// A method name that is not one of the known parametrisations.
    #[error("unknown method `{0}` (allowed: lora, replora-identity, replora-tanh, hora-identity, hora-tanh; `replora` and `hora` alone mean tanh)")]
    UnknownMethod(String),
    /// A stored record whose arrays do not match its own configuration.
    #[error("inconsistent record: {0}")]
    Inconsistent(String),
    /// The optimiser itself failed (not a failed guard: that is a recorded status).
    #[error("optimiser error: {0}")]
    Optimiser(String),
}

pub type Result<T> = std::result::Result<T, HmoeError>;
