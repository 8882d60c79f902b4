//! Raw records on disk: an envelope (id, job, record, provenance) per job, written atomically
//! (temporary file, then rename) so a crash leaves either the whole record or none.
use crate::provenance::Provenance;
use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<J, R> {
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

pub fn read<J: DeserializeOwned, R: DeserializeOwned>(path: &Path, id: &str) -> Stored<J, R> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Stored::Missing,
        Err(e) => return Stored::Corrupt(e.to_string()),
    };
    match serde_json::from_slice::<Envelope<J, R>>(&bytes) {
        Ok(env) if env.id == id => Stored::Valid(Box::new(env)),
        Ok(env) => Stored::Corrupt(format!("holds the record of job {}, not {id}", env.id)),
        Err(e) => Stored::Corrupt(e.to_string()),
    }
}

/// Whether a valid record exists, without keeping it.
pub fn is_valid<J: DeserializeOwned, R: DeserializeOwned>(path: &Path, id: &str) -> bool {
    matches!(read::<J, R>(path, id), Stored::Valid(_))
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename.
/// The temporary name carries the process id, so concurrent shards never share one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
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
