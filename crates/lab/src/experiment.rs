//! Experiment files: `experiments/<name>.toml`, one per figure or table. This module finds and
//! reads one, checks its header (`name`, `kind`) and hands the text to its kind to parse.
//!
//! Overrides (a setting's `model = {..}`, a profile's `[train]`) are merged as TOML tables
//! *before* deserialising, so an unknown key anywhere is still an error that names it.
use crate::error::LabError;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// What every experiment has, whatever its kind.
#[derive(Clone, Debug)]
pub struct ExperimentInfo {
    /// The file stem, which is also the `name` inside the file and the results folder.
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, recorded with every result.
    pub sha256: String,
    pub kind: String,
    /// The file's `description` (printed under the title of every summary).
    pub description: String,
}

/// Names of the experiments in `dir`, sorted.
pub fn available(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// The file of experiment `name`: `dir/<name>.toml`, or `name` itself when it is a path to a
/// `.toml` file.
pub fn resolve(dir: &Path, name: &str) -> Result<PathBuf, LabError> {
    let direct = Path::new(name);
    if name.ends_with(".toml") && direct.is_file() {
        return Ok(direct.to_path_buf());
    }
    let path = dir.join(format!("{name}.toml"));
    if path.is_file() {
        return Ok(path);
    }
    let names = available(dir);
    Err(LabError::UnknownExperiment {
        name: name.to_string(),
        path: path.display().to_string(),
        available: if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        },
    })
}

pub fn config_error(path: &Path, message: impl Into<String>) -> LabError {
    LabError::Config {
        file: path.display().to_string(),
        message: message.into(),
    }
}

/// Read the file and check its header (`name`, `kind` among `kinds`, the registered kind names,
/// and an optional `description`); returns the info and the rest of the file, for the kind to
/// parse.
pub fn read(
    dir: &Path,
    name: &str,
    kinds: &[&str],
) -> Result<(ExperimentInfo, toml::Table), LabError> {
    let path = resolve(dir, name)?;
    let bytes =
        std::fs::read(&path).map_err(|e| config_error(&path, format!("cannot read: {e}")))?;
    let text =
        String::from_utf8(bytes.clone()).map_err(|_| config_error(&path, "not valid UTF-8"))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| config_error(&path, e.to_string()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match table.get("name") {
        Some(toml::Value::String(n)) if *n == stem => {}
        Some(toml::Value::String(n)) => {
            return Err(config_error(
                &path,
                format!("`name = \"{n}\"` must match the file name `{stem}`"),
            ))
        }
        _ => return Err(config_error(&path, format!("missing `name = \"{stem}\"`"))),
    }
    let kind = match table.get("kind") {
        Some(toml::Value::String(k)) if kinds.contains(&k.as_str()) => k.clone(),
        Some(v) => {
            return Err(config_error(
                &path,
                format!("unknown `kind = {v}` (allowed: {})", kinds.join(", ")),
            ))
        }
        None => {
            return Err(config_error(
                &path,
                format!("missing `kind` (allowed: {})", kinds.join(", ")),
            ))
        }
    };
    let description = match table.remove("description") {
        None => String::new(),
        Some(toml::Value::String(d)) => d,
        Some(v) => {
            return Err(config_error(
                &path,
                format!("`description` must be a string, not {}", v.type_str()),
            ))
        }
    };
    table.remove("name");
    table.remove("kind");
    let sha256 = fsio::key::sha256_hex(&bytes);
    Ok((
        ExperimentInfo {
            name: stem,
            path,
            sha256,
            kind,
            description,
        },
        table,
    ))
}

/// `over` laid over `base`, key by key; tables merge recursively, anything else is replaced.
pub fn merge_tables(base: &toml::Table, over: &toml::Table) -> toml::Table {
    let mut out = base.clone();
    for (k, v) in over {
        let merged = match (out.get(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                toml::Value::Table(merge_tables(b, o))
            }
            _ => v.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

/// Deserialise a (merged) table into a config struct; `what` names where it came from.
pub fn from_table<T: DeserializeOwned>(
    table: toml::Table,
    path: &Path,
    what: &str,
) -> Result<T, LabError> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| config_error(path, format!("{what}: {}", e.message().trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_before_deserialising_so_unknown_keys_are_caught() {
        let base: toml::Table = toml::from_str("atoms = 2\nheads = 2").unwrap();
        let over: toml::Table = toml::from_str("heads = 8").unwrap();
        let m: hmoe::ModelConfig =
            from_table(merge_tables(&base, &over), Path::new("x.toml"), "[model]").unwrap();
        assert_eq!((m.atoms, m.heads, m.d), (2, 8, 2));
        let bad: toml::Table = toml::from_str("headz = 8").unwrap();
        let e = from_table::<hmoe::ModelConfig>(
            merge_tables(&base, &bad),
            Path::new("x.toml"),
            "[model]",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("headz") && e.to_string().starts_with("x.toml: [model]"),
            "{e}"
        );
    }
}
