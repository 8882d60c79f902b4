//! How a result was made: the experiment file's hash, the git revision, crate versions, threads
//! and wall time, stored in every raw record and summarised for every report.
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Stored in the envelope of every raw record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provenance {
    pub experiment_file: String,
    pub experiment_sha256: String,
    /// `git rev-parse HEAD` of the checkout holding the experiment file, or "unknown".
    pub git_revision: String,
    /// Whether tracked files differed from that revision (`None` when not a git checkout).
    pub git_dirty: Option<bool>,
    pub crate_versions: BTreeMap<String, String>,
    /// Wall time of this job alone.
    pub wall_seconds: f64,
    /// Logical cores of the host, and jobs run at once.
    pub host_threads: usize,
    pub run_threads: usize,
    /// Seconds since the Unix epoch when the record was written.
    pub finished_unix: u64,
}

/// The part of [`Provenance`] that is the same for every job of a run, computed once.
#[derive(Clone, Debug)]
pub struct RunProvenance {
    pub experiment_file: String,
    pub experiment_sha256: String,
    pub git_revision: String,
    pub git_dirty: Option<bool>,
    pub crate_versions: BTreeMap<String, String>,
    pub host_threads: usize,
    pub run_threads: usize,
}

impl RunProvenance {
    pub fn collect(experiment_file: &Path, experiment_sha256: &str, run_threads: usize) -> Self {
        let (git_revision, git_dirty) =
            git_state(experiment_file.parent().unwrap_or(Path::new(".")));
        RunProvenance {
            experiment_file: experiment_file.display().to_string(),
            experiment_sha256: experiment_sha256.to_string(),
            git_revision,
            git_dirty,
            crate_versions: crate_versions(),
            host_threads: host_threads(),
            run_threads,
        }
    }

    pub fn for_job(&self, wall_seconds: f64) -> Provenance {
        Provenance {
            experiment_file: self.experiment_file.clone(),
            experiment_sha256: self.experiment_sha256.clone(),
            git_revision: self.git_revision.clone(),
            git_dirty: self.git_dirty,
            crate_versions: self.crate_versions.clone(),
            wall_seconds,
            host_threads: self.host_threads,
            run_threads: self.run_threads,
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }
}

pub fn host_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `lab` itself plus the versions of the science crates and their engines, from Cargo.lock.
pub fn crate_versions() -> BTreeMap<String, String> {
    let mut v: BTreeMap<String, String> = env!("LAB_DEP_VERSIONS")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.insert("lab".into(), env!("CARGO_PKG_VERSION").into());
    v
}

/// The revision of the checkout holding `dir`, and whether tracked files are modified.
pub fn git_state(dir: &Path) -> (String, Option<bool>) {
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(rev) if !rev.is_empty() => {
            let dirty =
                run(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
            (rev, dirty)
        }
        _ => ("unknown".into(), None),
    }
}

/// What produced the records behind a report, written to `provenance.json` by `metric`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProvenanceSummary {
    pub experiment: String,
    pub profile: String,
    pub experiment_file: String,
    /// Hash of the experiment file when the metrics were computed.
    pub experiment_sha256: String,
    /// Distinct hashes of the experiment file recorded in the raw records.
    pub record_experiment_sha256: BTreeSet<String>,
    /// Distinct git revisions of the raw records (`<rev>-dirty` when tracked files were modified).
    pub git_revisions: BTreeSet<String>,
    /// Distinct crate versions of the raw records, as `name=version`.
    pub crate_versions: BTreeSet<String>,
    pub jobs: usize,
    pub records: usize,
    pub missing: usize,
    pub corrupt: usize,
    /// Sum of the jobs' wall times.
    pub job_seconds: f64,
    pub host_threads: BTreeSet<usize>,
}

impl ProvenanceSummary {
    pub fn add(&mut self, p: &Provenance) {
        self.record_experiment_sha256
            .insert(p.experiment_sha256.clone());
        let rev = match p.git_dirty {
            Some(true) => format!("{}-dirty", p.git_revision),
            _ => p.git_revision.clone(),
        };
        self.git_revisions.insert(rev);
        for (k, v) in &p.crate_versions {
            self.crate_versions.insert(format!("{k}={v}"));
        }
        self.job_seconds += p.wall_seconds;
        self.host_threads.insert(p.host_threads);
    }

    /// The provenance section of a summary, in Markdown.
    pub fn markdown(&self) -> String {
        let list = |s: &BTreeSet<String>| {
            s.iter()
                .map(|x| format!("`{x}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::from("## Provenance\n\n");
        out += &format!(
            "- experiment file: `{}`, SHA-256 `{}`\n",
            self.experiment_file, self.experiment_sha256
        );
        if self
            .record_experiment_sha256
            .iter()
            .any(|h| *h != self.experiment_sha256)
        {
            out += &format!(
                "- raw records were made from file versions {}\n",
                list(&self.record_experiment_sha256)
            );
        }
        out += &format!(
            "- git revision(s) of the raw records: {}\n",
            list(&self.git_revisions)
        );
        out += &format!("- crate versions: {}\n", list(&self.crate_versions));
        out += &format!(
            "- records: {} of {} jobs ({} missing, {} corrupt); total job wall time {:.1} s; host threads {}\n",
            self.records,
            self.jobs,
            self.missing,
            self.corrupt,
            self.job_seconds,
            self.host_threads.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
        );
        out += &format!(
            "- regenerate: `hora run-all {} --profile {}` (every job is seeded from its own description)\n",
            self.experiment, self.profile
        );
        out
    }
}
