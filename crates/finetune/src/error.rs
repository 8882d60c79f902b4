//! The one error type of the crate: every failure names what went wrong and, where a user can
//! act on it, what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error("asset {path} is missing; run `hora assets fetch` (or `hora assets fetch --assets-dir DIR`) to download it")]
    MissingAsset { path: PathBuf },
    #[error("asset {path} is corrupt: {reason}; delete it and run `hora assets fetch` again")]
    CorruptAsset { path: PathBuf, reason: String },
    #[error("fetching assets failed: {0}")]
    Fetch(String),
    #[error("invalid config: `{field}` = {value}: {allowed}")]
    Config {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("invalid data: {0}")]
    Data(String),
    #[error("split file {path}: {reason}")]
    Split { path: PathBuf, reason: String },
    #[error("model checkpoint: {0}")]
    Checkpoint(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("adapter file {path}: {reason}")]
    AdapterFile { path: PathBuf, reason: String },
    #[error("training diverged: {0}")]
    Diverged(String),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, FinetuneError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> FinetuneError {
    let path = path.into();
    move |source| FinetuneError::Io { path, source }
}
