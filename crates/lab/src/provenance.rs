//! How a result was made: the experiment file's hash, the git revision, crate versions, threads
//! and wall time, stored in every raw record and summarised for every report.
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Stored in the envelope of every raw record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provenance {
    /// The experiment file by its path in the repository (`experiments/x.toml`); format-1
    /// records hold the absolute path of the machine that ran them.
    pub experiment_file: String,
    pub experiment_sha256: String,
    /// `git rev-parse HEAD` of the checkout holding the experiment file, or "unknown".
    pub git_revision: String,
    /// Whether tracked files differed from that revision (`None` when not a git checkout).
    pub git_dirty: Option<bool>,
    /// SHA-256 of the modification when tracked files differed (format 2 on): with the revision,
    /// it names the exact code a dirty record ran. Taken as [`diff_hash`] describes; records
    /// written before 2026-12-03 hashed plain `git diff HEAD --binary`, whose blob names git
    /// abbreviates to a length that depends on the clone (`hora verify` tries each length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_diff_sha256: Option<String>,
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
    pub git_diff_sha256: Option<String>,
    pub crate_versions: BTreeMap<String, String>,
    pub host_threads: usize,
    pub run_threads: usize,
}

impl RunProvenance {
    /// The provenance of a run, with the checkout's state `git` (from [`git_state`]) taken by the
    /// caller: `hora run` takes it before it writes anything, since the manifest it rewrites may
    /// be a tracked file.
    pub fn collect(
        experiment_file: &Path,
        experiment_sha256: &str,
        run_threads: usize,
        git: GitState,
    ) -> Self {
        RunProvenance {
            experiment_file: repo_path(experiment_file),
            experiment_sha256: experiment_sha256.to_string(),
            git_revision: git.revision,
            git_dirty: git.dirty,
            git_diff_sha256: git.diff_sha256,
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
            git_diff_sha256: self.git_diff_sha256.clone(),
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

/// Physical memory of the host in bytes (`MemTotal` of /proc/meminfo; `None` elsewhere), or the
/// limit in `$HORA_MEMORY_LIMIT` when set, e.g. a cluster job's share of a node. A value that is
/// not a size is an error naming the variable, never silently ignored.
pub fn host_memory() -> Result<Option<u64>, crate::LabError> {
    if let Some(limit) = memory_limit_env()? {
        return Ok(Some(limit));
    }
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return Ok(None);
    };
    Ok(text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024))
}

/// `$HORA_MEMORY_LIMIT`: bytes, or a number with a binary suffix (`512M`, `16G`, `1T`, also
/// `16GiB`); unset or empty means "the machine's memory".
pub fn memory_limit_env() -> Result<Option<u64>, crate::LabError> {
    let Some(raw) = std::env::var_os("HORA_MEMORY_LIMIT") else {
        return Ok(None);
    };
    let raw = raw.to_string_lossy();
    let v = raw.trim();
    if v.is_empty() {
        return Ok(None);
    }
    parse_size(v).map(Some).ok_or_else(|| {
        crate::LabError::Usage(format!(
            "HORA_MEMORY_LIMIT={raw} is not a memory size: give bytes (17179869184) or a number \
             with K, M, G or T (16G), above 0"
        ))
    })
}

/// A size in bytes: digits, optionally followed by K, M, G or T (powers of 1024, with or without
/// `iB`/`B`).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let digits = v.chars().take_while(|c| c.is_ascii_digit()).count();
    let (num, unit) = v.split_at(digits);
    let num: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return None,
    };
    num.checked_mul(1u64 << shift).filter(|b| *b > 0)
}

/// The environment variables of the driver itself, checked as a flag is, before a command
/// starts: `HORA_MEMORY_LIMIT` (a size). Each kind checks its own
/// ([`crate::kind::KindFlags::check_environment`]); the Slurm array variables are checked where
/// `run` reads them.
pub fn check_environment() -> Result<(), crate::LabError> {
    memory_limit_env()?;
    Ok(())
}

/// Bytes in GiB, for messages.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
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

/// The git state of the checkout holding a directory.
#[derive(Clone, Debug, PartialEq)]
pub struct GitState {
    /// `git rev-parse HEAD`, or "unknown" outside a checkout.
    pub revision: String,
    /// Whether tracked files differ from the revision (`None` outside a checkout).
    pub dirty: Option<bool>,
    /// SHA-256 of the modification ([`diff_hash`]) when dirty.
    pub diff_sha256: Option<String>,
}

/// git's default diff options, written out so that no configuration can change a diff's bytes:
/// colour, prefixes (`diff.noprefix`, `diff.mnemonicPrefix`, `diff.srcPrefix`), context lines,
/// the algorithm, an external or text-converting diff, an order file and submodule display are
/// each set by a flag, which wins over any setting.
const DIFF_OPTIONS: &[&str] = &[
    "--binary",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--unified=3",
    "--inter-hunk-context=0",
    "--diff-algorithm=myers",
    "--indent-heuristic",
    "--no-relative",
    "-O/dev/null",
    "--submodule=short",
];

/// Settings that change a diff's bytes and have no flag, pinned to git's defaults.
const DIFF_CONFIG: &[&str] = &[
    "diff.renames=true",
    "diff.suppressBlankEmpty=false",
    "core.quotePath=true",
];

/// How a diff names blobs on its `index` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobNames {
    /// All 40 hex digits (`--full-index`): the same in every clone.
    Full,
    /// Abbreviated to at least this many digits (`--abbrev=N`). Unpinned, git picks the length
    /// from the number of objects in the clone (7 below 2^14 objects, 8 below 2^16, …), so the
    /// same modification gave different bytes in a fresh clone and in a long-used one.
    Abbreviated(usize),
}

/// The bytes of `git -C dir diff <args>` under [`DIFF_OPTIONS`] and [`DIFF_CONFIG`], with the
/// environment variables that reshape a diff (`GIT_DIFF_OPTS`, `GIT_EXTERNAL_DIFF`) removed, and
/// `GIT_INDEX_FILE` set to `index` when given. `None` when git fails.
pub fn pinned_diff(
    dir: &Path,
    index: Option<&Path>,
    args: &[&str],
    names: BlobNames,
) -> Option<Vec<u8>> {
    let mut c = Command::new("git");
    c.arg("-C").arg(dir);
    for kv in DIFF_CONFIG {
        c.arg("-c").arg(kv);
    }
    c.arg("diff").args(args).args(DIFF_OPTIONS);
    match names {
        BlobNames::Full => c.arg("--full-index"),
        BlobNames::Abbreviated(n) => c.arg(format!("--abbrev={n}")),
    };
    c.env_remove("GIT_DIFF_OPTS")
        .env_remove("GIT_EXTERNAL_DIFF");
    git_output(c, index)
}

/// Run a git command (with `GIT_INDEX_FILE` set to `index` when given, its errors silenced):
/// its output when it succeeds.
pub fn git_output(mut c: Command, index: Option<&Path>) -> Option<Vec<u8>> {
    c.stderr(std::process::Stdio::null());
    if let Some(i) = index {
        c.env("GIT_INDEX_FILE", i);
    }
    c.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| o.stdout)
}

/// A record's `git_diff_sha256`: SHA-256 of `git diff HEAD` in `dir` under the pinned options,
/// with full blob names, so that the same modification hashes the same in every clone and under
/// every user's configuration.
pub fn diff_hash(dir: &Path) -> Option<String> {
    pinned_diff(dir, None, &["HEAD"], BlobNames::Full).map(|d| fsio::key::sha256_hex(&d))
}

fn git(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let mut c = Command::new("git");
    c.arg("-C").arg(dir).args(args);
    git_output(c, None)
}

fn git_text(dir: &Path, args: &[&str]) -> Option<String> {
    git(dir, args).map(|o| String::from_utf8_lossy(&o).trim().to_string())
}

/// The revision of the checkout holding `dir`, whether tracked files are modified, and the hash
/// of the modification.
pub fn git_state(dir: &Path) -> GitState {
    match git_text(dir, &["rev-parse", "HEAD"]) {
        Some(rev) if !rev.is_empty() => {
            let dirty = git_text(dir, &["status", "--porcelain", "--untracked-files=no"])
                .map(|s| !s.is_empty());
            let diff_sha256 = match dirty {
                Some(true) => diff_hash(dir),
                _ => None,
            };
            GitState {
                revision: rev,
                dirty,
                diff_sha256,
            }
        }
        _ => GitState {
            revision: "unknown".into(),
            dirty: None,
            diff_sha256: None,
        },
    }
}

/// A file by its path in the repository that holds it (`experiments/x.toml`), so that records
/// and summaries read the same on every machine; outside a checkout, the path as given.
pub fn repo_path(path: &Path) -> String {
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match (
        git_text(dir, &["rev-parse", "--show-prefix"]),
        path.file_name(),
    ) {
        (Some(prefix), Some(name)) => format!("{prefix}{}", name.to_string_lossy()),
        _ => path.display().to_string(),
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
    /// Distinct git revisions of the raw records: `<rev>-dirty` when tracked files were modified,
    /// `<rev>-dirty+diff<12 hex>` when the record also carries the hash of that modification.
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
        let rev = match (p.git_dirty, &p.git_diff_sha256) {
            (Some(true), Some(diff)) => format!("{}-dirty+diff{}", p.git_revision, &diff[..12]),
            (Some(true), None) => format!("{}-dirty", p.git_revision),
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
