//! Raw records on disk: an envelope (format, id, job, record, provenance) per job, written with
//! [`fsio::write_atomic`] so a crash leaves either the whole record or none.
//!
//! Record formats (the `format` field; a record without one is format 1). Readers accept every
//! format up to [`FORMAT`]; a newer one is reported as such, never misread.
//! - 1: the first format (every record committed before job keys were versioned).
//! - 2: `format` itself; provenance names the experiment file by its path in the repository
//!   and, for a modified working tree, carries `git_diff_sha256`.
use crate::provenance::Provenance;
use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The record format this build writes.
pub const FORMAT: u32 = 2;

fn format_1() -> u32 {
    1
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<J, R> {
    #[serde(default = "format_1")]
    pub format: u32,
    pub id: String,
    pub experiment: String,
    pub kind: String,
    pub label: String,
    pub job: J,
    pub record: R,
    pub provenance: Provenance,
}

/// What is on disk for a job.
pub enum Stored<J, R> {
    Missing,
    /// A file that does not parse as a record of this job (truncated, foreign, edited).
    Corrupt(String),
    Valid(Box<Envelope<J, R>>),
}

/// Read the record of job `id`. It is valid when it parses (its job through its own check),
/// its format is one this build knows, it names job `id`, and its stored job hashes to `id`
/// (so a hand-edited job is caught, not trusted).
pub fn read<J, R>(path: &Path, id: &str) -> Stored<J, R>
where
    J: Serialize + DeserializeOwned,
    R: DeserializeOwned,
{
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Stored::Missing,
        Err(e) => return Stored::Corrupt(e.to_string()),
    };
    let env = match serde_json::from_slice::<Envelope<J, R>>(&bytes) {
        Ok(env) => env,
        Err(e) => {
            // A newer format may carry fields this build cannot read: say so rather than
            // calling it corrupt.
            let newer = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("format").and_then(|f| f.as_u64()))
                .filter(|f| *f > FORMAT as u64);
            return Stored::Corrupt(match newer {
                Some(f) => newer_format(f),
                None => e.to_string(),
            });
        }
    };
    if env.format > FORMAT {
        return Stored::Corrupt(newer_format(env.format as u64));
    }
    if env.format == 0 {
        return Stored::Corrupt(format!("record format 0 is not one of 1..={FORMAT}"));
    }
    if env.id != id {
        return Stored::Corrupt(format!("holds the record of job {}, not {id}", env.id));
    }
    match crate::plan::job_id(&env.job) {
        Ok(stored) if stored == id => Stored::Valid(Box::new(env)),
        Ok(stored) => Stored::Corrupt(format!(
            "its stored job hashes to {stored}, not {id} (edited by hand?)"
        )),
        Err(e) => Stored::Corrupt(e.to_string()),
    }
}

fn newer_format(f: u64) -> String {
    format!("record format {f} is newer than this build's {FORMAT}: update hora to read it")
}

/// Whether a valid record exists, without keeping it.
pub fn is_valid<J: Serialize + DeserializeOwned, R: DeserializeOwned>(
    path: &Path,
    id: &str,
) -> bool {
    matches!(read::<J, R>(path, id), Stored::Valid(_))
}

/// The workspace's one atomic write (temporary file in the same directory, fsync, rename).
pub use fsio::write_atomic;

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Write rows as the CSV table `name` of a profile's folder; returns its path.
pub fn write_table<T: Serialize>(
    dirs: &crate::layout::Dirs,
    name: &str,
    rows: &[T],
) -> anyhow::Result<std::path::PathBuf> {
    let path = dirs.file(name);
    write_csv(&path, rows)?;
    Ok(path)
}

/// Write rows as CSV with a header, atomically.
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

pub fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let mut r = csv::Reader::from_path(path)
        .with_context(|| format!("cannot read {} (run `hora metric` first)", path.display()))?;
    r.deserialize()
        .collect::<Result<Vec<T>, _>>()
        .with_context(|| format!("cannot parse {}", path.display()))
}
