//! Raw records on disk: an envelope (format, id, job, record, provenance) per job, written with
//! [`fsio::write_atomic`] so a crash leaves either the whole record or none.
//!
//! Record formats (the `format` field; a record without one is format 1). Readers accept every
//! format up to [`FORMAT`]; a newer one is reported as such, never misread.
//! - 1: the first format (every record committed before job keys were versioned).
//! - 2: `format` itself; provenance names the experiment file by its path in the repository
//!   and, for a modified working tree, carries `git_diff_sha256`.
//! - 3: `checksum`, the SHA-256 of the whole record (result fields included) without the
//!   checksum itself ([`checksum_of`]), so an edited result is caught on read, not used.
//!
//! A record of format 1 or 2 may carry a checksum too: the committed ones were sealed by
//! `hora verify --seal` ([`seal_file`]), which adds that one field and changes no other byte.
//! Where a checksum is present it must match; a format-3 record without one is corrupt.
use crate::provenance::Provenance;
use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The record format this build writes.
pub const FORMAT: u32 = 3;

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
    /// SHA-256 of the record's canonical JSON without this field ([`checksum_of`]): required
    /// from format 3 on, present on older records once sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

impl<J: Serialize, R: Serialize> Envelope<J, R> {
    /// The envelope with its checksum computed over everything else it holds.
    pub fn sealed(mut self) -> anyhow::Result<Self> {
        self.checksum = None;
        // Through the bytes a writer produces, so the value hashed is the value a reader parses
        // back (an `f32` written shortest-first reads back as a different `f64` than it converts
        // to in memory).
        let value: serde_json::Value = serde_json::from_slice(&serde_json::to_vec(&self)?)?;
        self.checksum = Some(checksum_of(&value));
        Ok(self)
    }
}

/// The checksum of a record as parsed from its file: the SHA-256 of the canonical JSON (keys
/// sorted, no whitespace: [`fsio::key::canonical_json`]) of the record without its `checksum`
/// field. Formatting, key order and the checksum itself do not enter it; every value does.
pub fn checksum_of(record: &serde_json::Value) -> String {
    fsio::key::sha256_hex(fsio::key::canonical_json_without(record, "checksum").as_bytes())
}

/// Why a record's checksum rules it out, if it does: a format-3 record must carry one, and a
/// checksum that is present must match the record.
pub fn checksum_problem(format: u32, record: &serde_json::Value) -> Option<String> {
    match record.get("checksum") {
        None | Some(serde_json::Value::Null) if format >= 3 => Some(format!(
            "a format-{format} record must carry a checksum and this one has none (edited by hand?)"
        )),
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(stored)) => {
            let actual = checksum_of(record);
            (*stored != actual).then(|| {
                format!(
                    "its checksum does not match its contents (stored {}…, contents hash to {}…): \
                     a field was changed after the record was written",
                    &stored.get(..16).unwrap_or(stored),
                    &actual[..16]
                )
            })
        }
        Some(other) => Some(format!("its checksum is not a string: {other}")),
    }
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
    // Parsed once: the tree serves the checksum and the typed envelope alike.
    let value = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => v,
        Err(e) => return Stored::Corrupt(e.to_string()),
    };
    let env = match Envelope::<J, R>::deserialize(&value) {
        Ok(env) => env,
        Err(_) => {
            // A newer format may carry fields this build cannot read: say so rather than
            // calling it corrupt. Otherwise the bytes are parsed again, only on this error
            // path, for a message that gives the line and column.
            let newer = value
                .get("format")
                .and_then(|f| f.as_u64())
                .filter(|f| *f > FORMAT as u64);
            return Stored::Corrupt(match newer {
                Some(f) => newer_format(f),
                None => match serde_json::from_slice::<Envelope<J, R>>(&bytes) {
                    Err(e) => e.to_string(),
                    Ok(_) => "does not read as a record".into(),
                },
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
        Ok(stored) if stored == id => {}
        Ok(stored) => {
            return Stored::Corrupt(format!(
                "its stored job hashes to {stored}, not {id} (edited by hand?)"
            ))
        }
        Err(e) => return Stored::Corrupt(e.to_string()),
    }
    // The job is keyed by its id; the rest of the record (results included) by its checksum.
    match checksum_problem(env.format, &value) {
        Some(why) => Stored::Corrupt(why),
        None => Stored::Valid(Box::new(env)),
    }
}

/// Seal a record of format 1 or 2 that has no checksum: insert `"checksum"` as the envelope's
/// last field, changing no other byte of the file (a pretty-printed record ends in `}` and a
/// newline; the checksum line goes before that brace, as a writer of format 3 puts it). Returns
/// the checksum, or an error that names why the file cannot be sealed (it has one already, it
/// is format 3, or it does not look like a record). The caller checks the record first: sealing
/// certifies the bytes as they stand.
pub fn seal_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let format = value.get("format").and_then(|f| f.as_u64()).unwrap_or(1);
    anyhow::ensure!(
        value.is_object() && value.get("checksum").is_none(),
        "{} already has a checksum (or is not a record)",
        path.display()
    );
    anyhow::ensure!(
        format < 3,
        "{} is format {format}, which is sealed when written",
        path.display()
    );
    let sum = checksum_of(&value);
    let text =
        std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
    let body = text.trim_end();
    let close = body
        .strip_suffix('}')
        .with_context(|| {
            format!(
                "{} does not end with the record's closing brace",
                path.display()
            )
        })?
        .trim_end();
    let trailer = &text[body.len()..];
    let sealed = format!("{close},\n  \"checksum\": \"{sum}\"\n}}{trailer}");
    // The sealed file must parse to the same record plus exactly this checksum.
    let mut check: serde_json::Value = serde_json::from_str(&sealed)
        .with_context(|| format!("sealing {} would not give JSON", path.display()))?;
    let stored = check.as_object_mut().and_then(|m| m.remove("checksum"));
    anyhow::ensure!(
        check == value && stored == Some(serde_json::Value::String(sum.clone())),
        "sealing {} would change more than the checksum",
        path.display()
    );
    write_atomic(path, sealed.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(sum)
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

/// Read a table whose rows were written as a tuple of structs (a family's columns, then shared
/// ones: csv writes them side by side but reads a tuple only by position). The header must be
/// the one this build writes for the first row, so a table of another layout is an error that
/// names it rather than columns read under the wrong names.
pub fn read_rows<T: serde::de::DeserializeOwned + Serialize>(
    path: &Path,
) -> anyhow::Result<Vec<T>> {
    let mut r = csv::Reader::from_path(path)
        .with_context(|| format!("cannot read {} (run `hora metric` first)", path.display()))?;
    let header = r
        .headers()
        .with_context(|| format!("cannot parse {}", path.display()))?
        .clone();
    let rows = r
        .records()
        .map(|rec| Ok(rec?.deserialize::<T>(None)?))
        .collect::<anyhow::Result<Vec<T>>>()
        .with_context(|| format!("cannot parse {}", path.display()))?;
    if let Some(first) = rows.first() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(first)?;
        let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        let expected = csv::Reader::from_reader(bytes.as_slice())
            .headers()?
            .clone();
        anyhow::ensure!(
            expected == header,
            "{}: columns {:?}, expected {:?} (a table of another layout: rerun `hora metric`)",
            path.display(),
            header.iter().collect::<Vec<_>>(),
            expected.iter().collect::<Vec<_>>()
        );
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provenance() -> Provenance {
        Provenance {
            experiment_file: "experiments/x.toml".into(),
            experiment_sha256: "ab".repeat(32),
            git_revision: "unknown".into(),
            git_dirty: None,
            git_diff_sha256: None,
            crate_versions: Default::default(),
            wall_seconds: 0.25,
            host_threads: 2,
            run_threads: 1,
            finished_unix: 1,
        }
    }

    /// A record as `hora run` writes it: sealed, in a file named by its job's id.
    fn written(dir: &Path, record: serde_json::Value) -> (std::path::PathBuf, String) {
        let job = json!({"n": 100, "method": "lora"});
        let id = crate::plan::job_id(&job).unwrap();
        let env = Envelope {
            format: FORMAT,
            id: id.clone(),
            experiment: "x".into(),
            kind: "rates".into(),
            label: "lora n=100".into(),
            job,
            record,
            provenance: provenance(),
            checksum: None,
        }
        .sealed()
        .unwrap();
        let path = dir.join(format!("{id}.json"));
        write_json(&path, &env).unwrap();
        (path, id)
    }

    fn read_value(path: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn corrupt_why(path: &Path, id: &str) -> String {
        match read::<serde_json::Value, serde_json::Value>(path, id) {
            Stored::Corrupt(why) => why,
            Stored::Valid(_) => panic!("{} read as valid", path.display()),
            Stored::Missing => panic!("{} missing", path.display()),
        }
    }

    #[test]
    fn the_checksum_sees_every_value_but_not_layout_or_itself() {
        let a = json!({"format": 3, "record": {"loss": 0.5, "xs": [1, 2]}, "checksum": "x"});
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "record": {"xs": [1,2], "loss": 0.5}, "format": 3 }"#)
                .unwrap();
        assert_eq!(checksum_of(&a), checksum_of(&b));
        let mut c = b.clone();
        c["record"]["loss"] = json!(0.5000000000000001);
        assert_ne!(checksum_of(&b), checksum_of(&c));
        // The SHA-256 of the canonical text, so any tool can recompute it.
        assert_eq!(
            checksum_of(&json!({"a": 1})),
            fsio::key::sha256_hex(br#"{"a":1}"#)
        );
    }

    /// Every numeric field of a written record (results, provenance, job) is covered: changing
    /// any of them makes the reader call the record corrupt.
    #[test]
    fn an_edited_number_anywhere_in_a_record_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        // An f32 written shortest-first: the checksum is of the value read back, not of its f64
        // conversion in memory.
        let record = json!({"accuracy": 0.1f32, "loss": [0.75, 0.5], "steps": 30});
        let (path, id) = written(dir.path(), record);
        assert!(matches!(
            read::<serde_json::Value, serde_json::Value>(&path, &id),
            Stored::Valid(_)
        ));
        let original = read_value(&path);
        assert_eq!(original["format"], 3);
        type Edit = fn(&mut serde_json::Value);
        let edits: [(&str, Edit); 5] = [
            ("accuracy", |v| v["record"]["accuracy"] = json!(0.11)),
            ("loss", |v| v["record"]["loss"][1] = json!(0.4)),
            ("steps", |v| v["record"]["steps"] = json!(31)),
            ("wall", |v| v["provenance"]["wall_seconds"] = json!(0.3)),
            ("label", |v| v["label"] = json!("hora n=100")),
        ];
        for (what, edit) in edits {
            let mut v = original.clone();
            edit(&mut v);
            std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
            let why = corrupt_why(&path, &id);
            assert!(why.contains("checksum does not match"), "{what}: {why}");
        }
        // A format-3 record whose checksum was removed is corrupt too.
        let mut v = original.clone();
        v.as_object_mut().unwrap().remove("checksum");
        std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        assert!(corrupt_why(&path, &id).contains("must carry a checksum"));
    }

    /// Sealing a format-2 record adds the checksum line and changes no other byte; the sealed
    /// record reads as valid and is caught when edited, like a format-3 one.
    #[test]
    fn sealing_adds_only_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let (path, id) = written(dir.path(), json!({"loss": 0.25}));
        let mut v = read_value(&path);
        v.as_object_mut().unwrap().remove("checksum");
        v["format"] = json!(2);
        let mut old = serde_json::to_vec_pretty(&v).unwrap();
        old.push(b'\n');
        std::fs::write(&path, &old).unwrap();
        assert!(matches!(
            read::<serde_json::Value, serde_json::Value>(&path, &id),
            Stored::Valid(_)
        ));
        let sum = seal_file(&path).unwrap();
        let sealed = std::fs::read(&path).unwrap();
        let line = format!(",\n  \"checksum\": \"{sum}\"");
        let expect = [
            &old[..old.len() - 3],
            line.as_bytes(),
            &old[old.len() - 3..],
        ]
        .concat();
        assert_eq!(
            String::from_utf8(sealed.clone()).unwrap(),
            String::from_utf8(expect).unwrap()
        );
        assert!(matches!(
            read::<serde_json::Value, serde_json::Value>(&path, &id),
            Stored::Valid(_)
        ));
        assert!(seal_file(&path).is_err(), "sealed twice");
        let edited = String::from_utf8(sealed).unwrap().replace("0.25", "0.26");
        std::fs::write(&path, edited).unwrap();
        assert!(corrupt_why(&path, &id).contains("checksum does not match"));
    }

    /// Rows written as (family columns, shared columns) read back by position, empty cells as
    /// `None`; a table whose header is not the one this build writes is an error naming both.
    #[test]
    fn tuple_rows_read_back_by_position_and_check_their_header() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Own {
            setting: String,
        }
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Shared {
            fits: usize,
            slope: Option<f64>,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rates.csv");
        let rows = vec![
            (
                Own {
                    setting: "1".into(),
                },
                Shared {
                    fits: 3,
                    slope: None,
                },
            ),
            (
                Own {
                    setting: "b".into(),
                },
                Shared {
                    fits: 2,
                    slope: Some(-0.5),
                },
            ),
        ];
        write_csv(&path, &rows).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "setting,fits,slope\n1,3,\nb,2,-0.5\n"
        );
        assert_eq!(read_rows::<(Own, Shared)>(&path).unwrap(), rows);
        // Columns that parse by position under other names: the header check catches them.
        std::fs::write(&path, "place,fits,slope\n1,3,\n").unwrap();
        let e = format!("{:#}", read_rows::<(Own, Shared)>(&path).unwrap_err());
        assert!(e.contains("rates.csv") && e.contains("expected"), "{e}");
        // Columns that do not parse: the error names the file.
        std::fs::write(&path, "setting,slope,fits\n1,,3\n").unwrap();
        let e = format!("{:#}", read_rows::<(Own, Shared)>(&path).unwrap_err());
        assert!(e.contains("rates.csv"), "{e}");
    }
}
