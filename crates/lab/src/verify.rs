//! `hora verify`: is every committed number traceable to a clean commit of this repository?
//!
//! For every raw record of an experiment it checks what a reader would have to take on trust
//! otherwise:
//! - **the record**: it parses as its kind's record, names the job of its file, its stored job
//!   hashes to that id, and its checksum (over the whole record, results included) matches; a
//!   record without a checksum has not been sealed and cannot show that its results are as
//!   written ([`crate::store`]);
//! - **its revision**: the git revision it names is a commit of this repository's history (an
//!   ancestor of `HEAD`), and the experiment file it ran is, at that commit, the file whose hash
//!   it recorded;
//! - **its tree**: it ran from a clean checkout, or from one whose only modification was a
//!   manifest of its experiment: the recorded hash of the modification is recomputed for every
//!   version of every manifest of the experiment that the history holds, put into the recorded
//!   revision, and must match one of them (under pinned diff options, with each way git may have
//!   written blob names: [`History::manifest_only_diffs`]);
//! - **the tables**: every table `hora metric` writes for a committed profile is computed afresh
//!   from the records (into a scratch folder) and must equal the committed one byte for byte.
//!
//! A record that no profile plans is listed as a note (it feeds no table). Anything else that
//! fails is a finding, and `hora verify` exits 1.
use crate::kinds::Experiment;
use crate::layout::Dirs;
pub use crate::pipeline::{Judged, RecordCheck};
use crate::provenance::{self, BlobNames};
use crate::store;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One thing `hora verify` found.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub experiment: String,
    /// A record's id, or a table's path under the experiment folder.
    pub subject: String,
    pub check: &'static str,
    pub detail: String,
    /// A note is reported but does not fail the verification.
    pub note: bool,
}

/// Per experiment: what was checked and how much of it passed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub records: usize,
    pub valid: usize,
    pub sealed: usize,
    pub in_history: usize,
    pub clean: usize,
    /// Dirty records whose diff hash is that of a manifest-only modification.
    pub traced: usize,
    pub tables: usize,
    pub tables_identical: usize,
}

/// The result of verifying some experiments.
#[derive(Debug, Default)]
pub struct Verification {
    pub tallies: BTreeMap<String, Tally>,
    pub findings: Vec<Finding>,
    /// Set when the history checks could not run (not a git checkout, or a shallow clone).
    pub history: Option<String>,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.note)
    }

    /// The report: one line per experiment, then every finding.
    pub fn report(&self) -> String {
        let mut out = String::new();
        out += "| experiment | records | valid | sealed | revision in history | clean | dirty, manifest-only diff | tables identical |\n";
        out += "|---|---|---|---|---|---|---|---|\n";
        let mut total = Tally::default();
        for (name, t) in &self.tallies {
            out += &format!(
                "| {name} | {} | {} | {} | {} | {} | {} | {}/{} |\n",
                t.records,
                t.valid,
                t.sealed,
                t.in_history,
                t.clean,
                t.traced,
                t.tables_identical,
                t.tables
            );
            total.records += t.records;
            total.valid += t.valid;
            total.sealed += t.sealed;
            total.in_history += t.in_history;
            total.clean += t.clean;
            total.traced += t.traced;
            total.tables += t.tables;
            total.tables_identical += t.tables_identical;
        }
        if self.tallies.len() > 1 {
            out += &format!(
                "| **all** | {} | {} | {} | {} | {} | {} | {}/{} |\n",
                total.records,
                total.valid,
                total.sealed,
                total.in_history,
                total.clean,
                total.traced,
                total.tables_identical,
                total.tables
            );
        }
        if let Some(why) = &self.history {
            out += &format!("\nhistory checks not run: {why}\n");
        }
        let (notes, failures): (Vec<&Finding>, Vec<&Finding>) =
            self.findings.iter().partition(|f| f.note);
        for (title, list) in [("failures", &failures), ("notes", &notes)] {
            if list.is_empty() {
                continue;
            }
            out += &format!("\n{title} ({}):\n", list.len());
            // Many records failing one check the same way read as one line with a count.
            let mut grouped: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
            for f in list.iter() {
                grouped
                    .entry((&f.experiment, f.check, &f.detail))
                    .or_default()
                    .push(&f.subject);
            }
            for ((exp, check, detail), subjects) in grouped {
                let who = match subjects.len() {
                    1 => subjects[0].to_string(),
                    n if n <= 3 => subjects.join(", "),
                    n => format!("{n} records, e.g. {}", subjects[..2].join(", ")),
                };
                out += &format!("  {exp}  {who}  [{check}] {detail}\n");
            }
        }
        out
    }
}

/// The rule precedes its records: the commit that first put `marker` into the experiment file
/// must be the revision, or an ancestor of the revision, of every record of the judged profile
/// (issue 25: a decision rule is committed before the first record it will judge). A record
/// made before the rule existed fails; a rule not yet committed, with records of its profile, is
/// a failure too.
pub fn check_rule_first(
    experiment: &str,
    judged: &Judged,
    records: &[RecordCheck],
    history: &History,
    findings: &mut Vec<Finding>,
) {
    let mine: Vec<&RecordCheck> = records
        .iter()
        .filter(|r| r.valid.is_ok() && judged.ids.contains(&r.id))
        .collect();
    if mine.is_empty() {
        return;
    }
    let added = git_line(
        &history.root,
        &[
            "log",
            "--reverse",
            "--format=%H",
            "-S",
            judged.marker,
            "--",
            &judged.file,
        ],
    )
    .and_then(|o| o.lines().next().map(str::to_string))
    .filter(|h| !h.is_empty());
    let Some(rule) = added else {
        findings.push(Finding {
            experiment: experiment.to_string(),
            subject: judged.profile.clone(),
            check: "rule first",
            detail: format!(
                "{} records of the judged profile, but no commit of {} has `{}`",
                mine.len(),
                judged.file,
                judged.marker
            ),
            note: false,
        });
        return;
    };
    let short = &rule[..rule.len().min(12)];
    for r in mine {
        let rev = r
            .provenance
            .get("git_revision")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let after = git_out(&history.root, &["merge-base", "--is-ancestor", &rule, rev]).is_some();
        if !after {
            findings.push(Finding {
                experiment: experiment.to_string(),
                subject: r.id.clone(),
                check: "rule first",
                detail: format!(
                    "made at {rev:.12}, which does not descend from {short}, the commit that \
                     put the rule (`{}`) into {}",
                    judged.marker, judged.file
                ),
                note: false,
            });
        }
    }
}

/// Per (revision, experiment): the hash of each manifest-only diff, with what it was.
type ManifestDiffs = HashMap<(String, String), Vec<(String, String)>>;

/// Git questions about one repository, each answered once.
pub struct History {
    root: PathBuf,
    head: String,
    ancestors: Mutex<HashMap<String, Result<(), String>>>,
    files: Mutex<HashMap<(String, String), Option<String>>>,
    manifest_diffs: Mutex<ManifestDiffs>,
}

fn git_out(root: &Path, args: &[&str]) -> Option<Vec<u8>> {
    git_with_index(root, None, args)
}

/// `git -C root args…` (with `GIT_INDEX_FILE` set to `index` when given): its output when it
/// succeeds.
fn git_with_index(root: &Path, index: Option<&Path>, args: &[&str]) -> Option<Vec<u8>> {
    let mut c = Command::new("git");
    c.arg("-C").arg(root).args(args);
    provenance::git_output(c, index)
}

fn git_line(root: &Path, args: &[&str]) -> Option<String> {
    git_out(root, args).map(|o| String::from_utf8_lossy(&o).trim().to_string())
}

impl History {
    /// The history of the checkout at `root`, or why it cannot be used.
    pub fn open(root: &Path) -> Result<History, String> {
        let head = git_line(root, &["rev-parse", "HEAD"])
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{} is not a git checkout", root.display()))?;
        if git_line(root, &["rev-parse", "--is-shallow-repository"]).as_deref() == Some("true") {
            return Err(
                "this is a shallow clone, so the records' revisions cannot be looked up \
                 (deepen it with `git fetch --unshallow`)"
                    .into(),
            );
        }
        let root = git_line(root, &["rev-parse", "--show-toplevel"])
            .map(PathBuf::from)
            .unwrap_or_else(|| root.to_path_buf());
        Ok(History {
            root,
            head,
            ancestors: Mutex::default(),
            files: Mutex::default(),
            manifest_diffs: Mutex::default(),
        })
    }

    /// `Ok` when `rev` is a commit that `HEAD` descends from.
    pub fn in_history(&self, rev: &str) -> Result<(), String> {
        if let Some(r) = self.ancestors.lock().unwrap().get(rev) {
            return r.clone();
        }
        let r = if rev.len() < 7 || !rev.chars().all(|c| c.is_ascii_hexdigit()) {
            Err(format!("`{rev}` is not a commit hash"))
        } else if git_out(
            &self.root,
            &["cat-file", "-e", &format!("{rev}^{{commit}}")],
        )
        .is_none()
        {
            Err(format!("revision {rev} is not in this repository"))
        } else if git_out(
            &self.root,
            &["merge-base", "--is-ancestor", rev, &self.head],
        )
        .is_some()
        {
            Ok(())
        } else {
            Err(format!(
                "revision {rev} exists but is not in the history of HEAD (an unmerged branch?)"
            ))
        };
        self.ancestors
            .lock()
            .unwrap()
            .insert(rev.to_string(), r.clone());
        r
    }

    /// SHA-256 of `path` as committed at `rev` (`None` if it is not there).
    pub fn file_sha256(&self, rev: &str, path: &str) -> Option<String> {
        let key = (rev.to_string(), path.to_string());
        if let Some(h) = self.files.lock().unwrap().get(&key) {
            return h.clone();
        }
        let h = git_out(&self.root, &["show", &format!("{rev}:{path}")])
            .map(|b| fsio::key::sha256_hex(&b));
        self.files.lock().unwrap().insert(key, h.clone());
        h
    }

    /// The hashes `git_diff_sha256` can have for a checkout of `rev` whose only modification is
    /// one manifest of `experiment` (at one of the versions the history holds), each with what it
    /// was: the diff a `hora run` left when it rewrote a committed manifest before reading the
    /// tree's state (fixed in 6d1f991).
    pub fn manifest_only_diffs(&self, rev: &str, experiment: &str) -> Vec<(String, String)> {
        let key = (rev.to_string(), experiment.to_string());
        if let Some(v) = self.manifest_diffs.lock().unwrap().get(&key) {
            return v.clone();
        }
        let mut out = Vec::new();
        let pattern = format!("results/{experiment}/*/manifest.json");
        let paths: BTreeSet<String> = git_out(
            &self.root,
            &[
                "log",
                "--pretty=format:",
                "--name-only",
                "HEAD",
                "--",
                &pattern,
            ],
        )
        .map(|o| {
            String::from_utf8_lossy(&o)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
        for path in paths {
            let commits = git_line(&self.root, &["log", "--format=%H", "HEAD", "--", &path])
                .unwrap_or_default();
            let mut blobs = BTreeMap::new();
            for c in commits.lines() {
                if let Some(blob) = git_line(&self.root, &["rev-parse", &format!("{c}:{path}")]) {
                    blobs.entry(blob).or_insert_with(|| c.to_string());
                }
            }
            for (blob, commit) in blobs {
                for (hash, names) in self.diffs_with(rev, &path, &blob) {
                    let names = match names {
                        BlobNames::Full => "full blob names".to_string(),
                        BlobNames::Abbreviated(n) => format!("blob names of {n} digits"),
                    };
                    out.push((
                        hash,
                        format!("{path} as committed in {} ({names})", &commit[..12]),
                    ));
                }
            }
        }
        self.manifest_diffs.lock().unwrap().insert(key, out.clone());
        out
    }

    /// The hashes `git_diff_sha256` can have for a checkout of `rev` with `path` replaced by
    /// `blob` (through a scratch index, so the checkout is not touched): the diff under
    /// [`provenance::pinned_diff`]'s options with full blob names (records from 2026-12-03 on),
    /// and with the names abbreviated to each length git picks on its own for a clone of up to
    /// 2^24 objects (7 to 12 digits: earlier records hashed plain `git diff HEAD --binary`, whose
    /// length depended on the clone that ran them). Each names the same modification.
    fn diffs_with(&self, rev: &str, path: &str, blob: &str) -> Vec<(String, BlobNames)> {
        let Ok(index) = tempfile::NamedTempFile::new() else {
            return Vec::new();
        };
        let git = |args: &[&str]| git_with_index(&self.root, Some(index.path()), args);
        if git(&["read-tree", rev]).is_none()
            || git(&[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("100644,{blob},{path}"),
            ])
            .is_none()
        {
            return Vec::new();
        }
        std::iter::once(BlobNames::Full)
            .chain((7..=12).map(BlobNames::Abbreviated))
            .filter_map(|names| {
                let diff = provenance::pinned_diff(
                    &self.root,
                    Some(index.path()),
                    &["--cached", rev],
                    names,
                )?;
                (!diff.is_empty()).then(|| (fsio::key::sha256_hex(&diff), names))
            })
            .collect()
    }
}

/// The experiment file a record ran, by its path in the repository: format 2 on stores it so;
/// format 1 stored the absolute path of the machine that ran it, whose file name is looked up
/// in `experiments/`.
fn repo_experiment_path(stored: &str, format: u64) -> String {
    if format >= 2 {
        return stored.to_string();
    }
    let name = Path::new(stored)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("experiments/{name}")
}

/// Check one experiment's records against the history and record the findings.
pub fn check_records(
    experiment: &str,
    records: &[RecordCheck],
    history: Option<&History>,
    tally: &mut Tally,
    findings: &mut Vec<Finding>,
) {
    let mut find = |subject: &str, check: &'static str, detail: String, note: bool| {
        findings.push(Finding {
            experiment: experiment.to_string(),
            subject: subject.to_string(),
            check,
            detail,
            note,
        })
    };
    for r in records {
        tally.records += 1;
        if !r.planned {
            find(
                &r.id,
                "orphan",
                "no profile of the experiment plans this job (it feeds no table)".into(),
                true,
            );
        }
        match &r.valid {
            Ok(()) => tally.valid += 1,
            Err(why) => {
                find(&r.id, "record", why.clone(), false);
                continue;
            }
        }
        if r.sealed {
            tally.sealed += 1;
        } else {
            find(
                &r.id,
                "checksum",
                format!(
                    "format {} without a checksum: its results cannot be shown unedited \
                     (`hora verify --seal` seals every valid record that has none; the other checks still apply)",
                    r.format
                ),
                false,
            );
        }
        let Some(history) = history else { continue };
        let p = &r.provenance;
        let text = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let rev = text("git_revision");
        if let Err(why) = history.in_history(rev) {
            find(&r.id, "revision", why, false);
            continue;
        }
        tally.in_history += 1;
        let file = repo_experiment_path(text("experiment_file"), r.format);
        match history.file_sha256(rev, &file) {
            Some(h) if h == text("experiment_sha256") => {}
            Some(h) => find(
                &r.id,
                "experiment file",
                format!(
                    "{file} at {} hashes to {}…, the record says it ran {}…",
                    &rev[..12.min(rev.len())],
                    &h[..12],
                    text("experiment_sha256").get(..12).unwrap_or("?")
                ),
                false,
            ),
            None => find(
                &r.id,
                "experiment file",
                format!("{file} is not in revision {}", &rev[..12.min(rev.len())]),
                false,
            ),
        }
        match p.get("git_dirty").and_then(|d| d.as_bool()) {
            Some(false) => tally.clean += 1,
            None => find(
                &r.id,
                "tree",
                "the record does not say whether its tree was clean".into(),
                false,
            ),
            Some(true) => {
                let Some(diff) = p.get("git_diff_sha256").and_then(|d| d.as_str()) else {
                    find(
                        &r.id,
                        "tree",
                        format!(
                            "ran from a modified tree at {} and (format {}) kept no hash of \
                             the modification: its code cannot be traced; rerun it from a clean tree",
                            &rev[..12.min(rev.len())],
                            r.format
                        ),
                        false,
                    );
                    continue;
                };
                let candidates = history.manifest_only_diffs(rev, experiment);
                match candidates.iter().find(|(h, _)| h == diff) {
                    Some(_) => tally.traced += 1,
                    None => find(
                        &r.id,
                        "tree",
                        format!(
                            "ran from a modified tree at {} whose diff ({}…) is not a \
                             manifest-only change of this experiment ({} candidate diffs \
                             computed{}): its code cannot be traced",
                            &rev[..12.min(rev.len())],
                            &diff[..12.min(diff.len())],
                            candidates.len(),
                            if candidates.is_empty() {
                                ": git could not build a scratch index or diff it"
                            } else {
                                ""
                            }
                        ),
                        false,
                    ),
                }
            }
        }
    }
}

/// Recompute the metric tables of every committed profile of `exp` into `scratch` and compare
/// each with the committed file, byte for byte.
pub fn check_tables(
    exp: &dyn Experiment,
    results: &Path,
    scratch: &Path,
    tally: &mut Tally,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<()> {
    let name = &exp.info().name;
    let folder = results.join(name);
    let defined: BTreeSet<String> = exp.profiles().into_iter().collect();
    let mut committed: Vec<String> = std::fs::read_dir(&folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("manifest.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    for profile in committed {
        if !defined.contains(&profile) {
            findings.push(Finding {
                experiment: name.clone(),
                subject: format!("{profile}/"),
                check: "tables",
                detail: format!(
                    "a committed profile folder that {}.toml does not define",
                    name
                ),
                note: false,
            });
            continue;
        }
        // A profile planned and committed before its run (as a long profile should be) has no
        // record yet, so nothing to recompute: a note until its first record lands.
        if !folder.join(&profile).join("provenance.json").is_file() {
            let (done, total) = exp.status(results, &profile)?;
            if done == 0 {
                findings.push(Finding {
                    experiment: name.clone(),
                    subject: format!("{profile}/"),
                    check: "tables",
                    detail: format!(
                        "planned, not started: none of its {total} jobs has a record yet (its \
                         tables are checked once they are committed)"
                    ),
                    note: true,
                });
                continue;
            }
        }
        let mut dirs = Dirs::new(results, name, &profile);
        let out = scratch.join(name).join(&profile);
        dirs.out = Some(out.clone());
        let report = match exp.metric(&dirs) {
            Ok(r) => r,
            Err(e) => {
                findings.push(Finding {
                    experiment: name.clone(),
                    subject: format!("{profile}/"),
                    check: "tables",
                    detail: format!("`hora metric` cannot recompute the tables: {e:#}"),
                    note: false,
                });
                continue;
            }
        };
        // A profile still being run (records landing over several sessions) has no committed
        // tables yet: its manifest is checked, its records are (above), its tables once
        // committed. A complete profile without tables is a failure below.
        let in_progress = !folder.join(&profile).join("provenance.json").is_file() && {
            let (done, total) = exp.status(results, &profile)?;
            if done < total {
                findings.push(Finding {
                    experiment: name.clone(),
                    subject: format!("{profile}/"),
                    check: "tables",
                    detail: format!(
                        "in progress: {done} of {total} jobs have a record and no table is \
                         committed yet (the tables are checked once they are)"
                    ),
                    note: true,
                });
            }
            done < total
        };
        for file in &report.files {
            let Some(fname) = file.file_name() else {
                continue;
            };
            if in_progress && fname != "manifest.json" {
                continue;
            }
            let fresh = std::fs::read(file)?;
            let path = folder.join(&profile).join(fname);
            let subject = format!("{profile}/{}", fname.to_string_lossy());
            let committed = match std::fs::read(&path) {
                Ok(old) => old,
                Err(e) => {
                    findings.push(Finding {
                        experiment: name.clone(),
                        subject,
                        check: "tables",
                        detail: format!(
                            "`hora metric` writes it but the committed one cannot be read: {e}"
                        ),
                        note: false,
                    });
                    continue;
                }
            };
            if fname == "manifest.json" {
                // The plan, not a table: its jobs must be the experiment's; the file hash in its
                // header is that of the file it was planned from, which may be older.
                if let Some(f) = compare_manifests(name, &profile, &committed, &fresh) {
                    findings.push(f);
                }
                continue;
            }
            tally.tables += 1;
            if committed == fresh {
                tally.tables_identical += 1;
            } else {
                findings.push(Finding {
                    experiment: name.clone(),
                    subject,
                    check: "tables",
                    detail: format!(
                        "differs from `hora metric` on the committed records ({})",
                        first_difference(&committed, &fresh)
                    ),
                    note: false,
                });
            }
        }
    }
    Ok(())
}

/// A committed manifest against the plan of today's experiment file: a failure when the jobs
/// differ, a note when only the file hash it was planned from does.
fn compare_manifests(
    experiment: &str,
    profile: &str,
    committed: &[u8],
    fresh: &[u8],
) -> Option<Finding> {
    let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
    let finding = |detail: String, note: bool| Finding {
        experiment: experiment.to_string(),
        subject: format!("{profile}/manifest.json"),
        check: "plan",
        detail,
        note,
    };
    let (Some(mut old), Some(mut new)) = (parse(committed), parse(fresh)) else {
        return Some(finding("the committed manifest is not JSON".into(), false));
    };
    if old == new {
        return None;
    }
    let hash = |v: &mut serde_json::Value| {
        v.as_object_mut()
            .and_then(|m| m.remove("experiment_sha256"))
            .and_then(|h| h.as_str().map(|h| h.chars().take(12).collect::<String>()))
            .unwrap_or_default()
    };
    let (was, is) = (hash(&mut old), hash(&mut new));
    Some(if old == new {
        finding(
            format!(
                "same jobs as today's plan, planned from an earlier version of the experiment \
                 file ({was}…, today {is}…)"
            ),
            true,
        )
    } else {
        finding(
            "its jobs are not those today's experiment file plans: rerun `hora plan`, or \
             restore the experiment file the records were made with"
                .into(),
            false,
        )
    })
}

/// Where two texts first differ, as "line k: committed … / fresh …".
fn first_difference(old: &[u8], fresh: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(old), String::from_utf8_lossy(fresh));
    let clip = |s: &str| s.chars().take(80).collect::<String>();
    for (k, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!(
                "line {}: committed `{}`, fresh `{}`",
                k + 1,
                clip(x),
                clip(y)
            );
        }
    }
    format!(
        "{} lines committed, {} fresh",
        a.lines().count(),
        b.lines().count()
    )
}

/// Results folders that are no experiment's: a folder with records but no experiment file is a
/// failure (its records cannot be read as any kind); one without records is a note.
pub fn unclaimed_folders(results: &Path, experiments: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        if experiments.contains(&name) {
            continue;
        }
        let has_raw = d.join("raw").is_dir();
        out.push(Finding {
            experiment: name,
            subject: "-".into(),
            check: "folder",
            detail: if has_raw {
                "holds raw records but no experiment file names it".into()
            } else {
                "not an experiment's folder (no raw records): not checked".into()
            },
            note: !has_raw,
        });
    }
    out
}

/// Seal every valid record of `records` that has no checksum; returns how many were sealed.
pub fn seal(records: &[RecordCheck]) -> anyhow::Result<usize> {
    let mut sealed = 0;
    for r in records {
        if r.valid.is_ok() && !r.sealed {
            store::seal_file(&r.path)?;
            sealed += 1;
        }
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_paths_are_looked_up_in_experiments() {
        assert_eq!(
            repo_experiment_path("/work/main/experiments/x.toml", 1),
            "experiments/x.toml"
        );
        assert_eq!(
            repo_experiment_path("experiments/x.toml", 2),
            "experiments/x.toml"
        );
    }

    #[test]
    fn the_first_difference_names_the_line() {
        assert_eq!(
            first_difference(b"a,b\n1,2\n", b"a,b\n1,3\n"),
            "line 2: committed `1,2`, fresh `1,3`"
        );
        assert_eq!(
            first_difference(b"a\n", b"a\nb\n"),
            "1 lines committed, 2 fresh"
        );
    }

    /// `git -C dir args…`, which must succeed; its output.
    fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
        let o = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {o:?}");
        o.stdout
    }

    /// A repository with one committed manifest of experiment `x`, at revision `rev`, whose
    /// working tree then rewrites that manifest.
    fn repo_with_a_rewritten_manifest() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("results/x/quick/manifest.json");
        std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
        std::fs::write(&manifest, "{\n  \"jobs\": []\n}\n").unwrap();
        std::fs::write(dir.path().join("code.rs"), "fn main() {}\n").unwrap();
        git(dir.path(), &["init", "-q"]);
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "one"]);
        let rev = String::from_utf8(git(dir.path(), &["rev-parse", "HEAD"])).unwrap();
        std::fs::write(&manifest, "{\n  \"jobs\": [\"a\", \"b\"]\n}\n").unwrap();
        (dir, rev.trim().to_string())
    }

    /// A rule's commit must precede the records it judges: a record made at the commit before
    /// `[decision]` entered the file fails, one made at or after it passes, and records of
    /// another profile or of an unjudged job are not looked at.
    #[test]
    fn a_record_made_before_its_rule_fails() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let file = root.join("experiments/x.toml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "name = \"x\"\n").unwrap();
        git(root, &["init", "-q"]);
        git(root, &["add", "."]);
        git(root, &["commit", "-q", "-m", "before"]);
        let rev = |root: &Path| {
            String::from_utf8(git(root, &["rev-parse", "HEAD"]))
                .unwrap()
                .trim()
                .to_string()
        };
        let before = rev(root);
        std::fs::write(&file, "name = \"x\"\n[decision]\nprofile = \"paper\"\n").unwrap();
        git(root, &["commit", "-q", "-am", "the rule"]);
        let rule = rev(root);
        std::fs::write(root.join("later.txt"), "x\n").unwrap();
        git(root, &["add", "."]);
        git(root, &["commit", "-q", "-m", "after"]);
        let after = rev(root);
        let record = |id: &str, rev: &str| RecordCheck {
            id: id.into(),
            path: PathBuf::new(),
            planned: true,
            valid: Ok(()),
            format: 3,
            sealed: true,
            provenance: serde_json::json!({ "git_revision": rev }),
        };
        let judged = Judged {
            file: "experiments/x.toml".into(),
            profile: "paper".into(),
            marker: "[decision]",
            ids: ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
        };
        let records = [
            record("a", &before),
            record("b", &rule),
            record("c", &after),
            record("other", &before),
        ];
        let history = History::open(root).unwrap();
        let mut findings = Vec::new();
        check_rule_first("x", &judged, &records, &history, &mut findings);
        let failed: Vec<&str> = findings.iter().map(|f| f.subject.as_str()).collect();
        assert_eq!(failed, ["a"], "{findings:?}");
        assert!(
            findings[0].detail.contains(&rule[..12]),
            "{}",
            findings[0].detail
        );
        // No commit with the rule, and records of its profile: a failure naming the profile.
        let judged = Judged {
            marker: "[nothing]",
            ..judged
        };
        let mut findings = Vec::new();
        check_rule_first("x", &judged, &records, &history, &mut findings);
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].detail.contains("no commit"),
            "{:?}",
            findings[0]
        );
    }

    /// What a record's diff hash is, however the clone that verifies it is configured: CI failed
    /// on 2026-12-03 because the hashes of earlier records were of plain `git diff HEAD --binary`,
    /// which abbreviates blob names to a length that grows with the clone.
    #[test]
    fn a_manifest_only_diff_is_traced_under_any_configuration_and_abbreviation() {
        let (dir, rev) = repo_with_a_rewritten_manifest();
        let root = dir.path();
        let pinned = provenance::diff_hash(root).unwrap();
        // How records before 2026-12-03 hashed the modification, in clones that abbreviate to
        // 7, 9 and 12 digits.
        let plain: Vec<String> = [7, 9, 12]
            .iter()
            .map(|n| {
                let abbrev = format!("core.abbrev={n}");
                fsio::key::sha256_hex(&git(root, &["-c", &abbrev, "diff", "HEAD", "--binary"]))
            })
            .collect();
        assert_ne!(plain[0], plain[1], "the abbreviation changes the bytes");
        git(root, &["add", "."]);
        git(root, &["commit", "-q", "-m", "records"]);
        // A verifying clone with settings that reshape every diff.
        for (k, v) in [
            ("core.abbrev", "10"),
            ("diff.context", "5"),
            ("color.ui", "always"),
            ("diff.noprefix", "true"),
            ("diff.mnemonicPrefix", "true"),
            ("diff.algorithm", "histogram"),
            ("diff.suppressBlankEmpty", "true"),
        ] {
            git(root, &["config", k, v]);
        }
        let history = History::open(root).unwrap();
        let found = history.manifest_only_diffs(&rev, "x");
        for h in plain.iter().chain([&pinned]) {
            assert!(found.iter().any(|(f, _)| f == h), "{h} not among {found:?}");
        }
        // Nothing else is traced: a diff that also touches code is not among them.
        git(root, &["checkout", "-q", &rev]);
        std::fs::write(root.join("code.rs"), "fn main() { }\n").unwrap();
        let other = provenance::diff_hash(root).unwrap();
        assert!(found.iter().all(|(f, _)| *f != other));
    }

    /// The hash a run records does not depend on the user's git settings.
    #[test]
    fn a_recorded_diff_hash_ignores_the_users_git_settings() {
        let (dir, _) = repo_with_a_rewritten_manifest();
        let root = dir.path();
        let before = provenance::diff_hash(root).unwrap();
        for (k, v) in [
            ("core.abbrev", "12"),
            ("diff.context", "1"),
            ("color.ui", "always"),
            ("diff.noprefix", "true"),
            ("diff.external", "false"),
            ("diff.orderFile", "/nonexistent"),
        ] {
            git(root, &["config", k, v]);
        }
        assert_eq!(provenance::diff_hash(root).unwrap(), before);
    }
}
