//! Records the versions of the crates that shape a result (read from the workspace's Cargo.lock),
//! so every raw record and summary can say what produced it.
use std::path::Path;

const TRACKED: &[&str] = &[
    "hmoe",
    "finetune",
    "candle-core",
    "candle-nn",
    "argmin",
    "ndarray",
    "plotters",
    "tokenizers",
];

fn main() {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let mut found = Vec::new();
    let mut name: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            name = None;
        } else if let Some(v) = line.strip_prefix("name = ") {
            name = Some(v.trim_matches('"').to_string());
        } else if let Some(v) = line.strip_prefix("version = ") {
            if let Some(n) = name.take() {
                if TRACKED.contains(&n.as_str()) {
                    found.push(format!("{n}={}", v.trim_matches('"')));
                }
            }
        }
    }
    println!("cargo:rustc-env=LAB_DEP_VERSIONS={}", found.join(","));
}
