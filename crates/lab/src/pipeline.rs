//! The stages of DESIGN.md's data flow, written once for every kind: plan, run (resumable,
//! sharded, parallel), metric (from raw records only), report, merge and status.
use crate::experiment::ExperimentInfo;
use crate::kind::{Done, JobContext, Kind};
use crate::layout::Dirs;
use crate::plan::{self, Plan, Planned, Shard};
use crate::progress::{self, Progress};
use crate::provenance::{host_threads, ProvenanceSummary, RunProvenance};
use crate::store::{self, Envelope, Stored};
use anyhow::{bail, Context};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Build the plan of `dirs.profile` and, unless `dry_run`, write its manifest.
pub fn plan<K: Kind>(
    info: &ExperimentInfo,
    kind: &K,
    dirs: &Dirs,
    dry_run: bool,
) -> anyhow::Result<Plan<K::Job>> {
    let plan = plan::build(info, kind, &dirs.profile)?;
    if !dry_run {
        store::write_json(&dirs.manifest(), &plan.manifest()?)?;
    }
    Ok(plan)
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Jobs at once; default: the kind's choice, else one per core.
    pub threads: Option<usize>,
    pub shard: Option<Shard>,
    pub dry_run: bool,
}

#[derive(Debug, Default)]
pub struct RunReport {
    pub planned: usize,
    pub already_done: usize,
    pub ran: usize,
    /// (label, error) of the jobs that failed; they have no record and run again next time.
    pub failed: Vec<(String, String)>,
    pub seconds: f64,
}

/// Run the jobs of the plan (of the shard) that have no valid record yet.
pub fn run<K: Kind>(
    info: &ExperimentInfo,
    kind: &K,
    dirs: &Dirs,
    opts: &RunOptions,
) -> anyhow::Result<RunReport> {
    // The checkout as the user left it: the plan below rewrites the profile's manifest, which
    // may be committed, and a record must not call its tree modified for that (nor for any other
    // output of this run).
    let git = crate::provenance::git_state(info.path.parent().unwrap_or(Path::new(".")));
    let plan = plan(info, kind, dirs, opts.dry_run)?;
    // One run per experiment and shard at a time; held until this function returns (and released
    // by the OS if the process dies, however it dies).
    let _lock = if opts.dry_run {
        None
    } else {
        Some(lock_run(info, dirs, opts.shard)?)
    };
    let (mine, todo) = pending(kind, &plan, dirs, opts.shard);
    let mut report = RunReport {
        planned: plan.jobs.len(),
        already_done: mine.len() - todo.len(),
        ..Default::default()
    };
    let shard_note = opts
        .shard
        .map(|s| format!(" (shard {s})"))
        .unwrap_or_default();
    if opts.dry_run {
        println!(
            "{} / {}{shard_note}: {} jobs, {} done, {} to run (dry run: nothing written)",
            info.name,
            dirs.profile,
            mine.len(),
            report.already_done,
            todo.len()
        );
        list_jobs(&todo, 20);
        return Ok(report);
    }
    if todo.is_empty() {
        eprintln!(
            "{} / {}{shard_note}: all {} jobs already have records",
            info.name,
            dirs.profile,
            mine.len()
        );
        return Ok(report);
    }
    kind.prepare(dirs)?;
    std::fs::create_dir_all(dirs.raw())
        .with_context(|| format!("cannot create {}", dirs.raw().display()))?;
    let threads = jobs_at_once(kind, opts, &todo)?;
    let prov = RunProvenance::collect(&info.path, &info.sha256, threads, git);
    eprintln!(
        "{} / {}{shard_note}: running {} of {} jobs on {threads} thread(s) ({} already done)",
        info.name,
        dirs.profile,
        todo.len(),
        mine.len(),
        report.already_done
    );
    let costs: Vec<f64> = todo.iter().map(|p| kind.cost(&p.job)).collect();
    let units = progress::units(&costs);
    let progress = Progress::new(
        format!("{} / {}{shard_note}", info.name, dirs.profile),
        todo.len(),
        units.iter().sum(),
    )?;
    let failed = Mutex::new(Vec::new());
    let started = Instant::now();
    let one = |(p, &units): (&&Planned<K::Job>, &u64)| {
        let err = run_one(info, kind, dirs, &prov, &progress, p);
        let failed_now = err.is_some();
        if let Some(e) = err {
            progress.println(format!("job {} ({}) failed: {e}", p.id, p.label));
            failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((p.label.clone(), e));
        }
        progress.job_done(units, failed_now);
    };
    in_run_order(threads, todo.len(), |i| one((&todo[i], &units[i])))?;
    progress.finish();
    report.failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    report.ran = todo.len() - report.failed.len();
    report.seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} / {}{shard_note}: {} jobs done in {:.1} s, records in {}",
        info.name,
        dirs.profile,
        report.ran,
        report.seconds,
        dirs.raw().display()
    );
    if !report.failed.is_empty() {
        bail!(
            "{} of {} jobs failed (they have no record; rerun to retry): {}",
            report.failed.len(),
            todo.len(),
            report
                .failed
                .iter()
                .take(5)
                .map(|(l, e)| format!("{l}: {e}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(report)
}

/// Some jobs of a plan.
type Jobs<'a, J> = Vec<&'a Planned<J>>;

/// The jobs of this shard (all without one), and those of them without a valid record in the
/// order `Kind::run_rank` gives (a stable sort: jobs of equal rank keep their plan order).
fn pending<'a, K: Kind>(
    kind: &K,
    plan: &'a Plan<K::Job>,
    dirs: &Dirs,
    shard: Option<Shard>,
) -> (Jobs<'a, K::Job>, Jobs<'a, K::Job>) {
    let mine: Vec<&Planned<K::Job>> = plan
        .jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|s| s.takes(*i)))
        .map(|(_, p)| p)
        .collect();
    let mut todo: Vec<&Planned<K::Job>> = mine
        .par_iter()
        .filter(|p| !store::is_valid::<K::Job, K::Record>(&dirs.record(&p.id), &p.id))
        .copied()
        .collect();
    todo.sort_by(|a, b| kind.run_rank(&a.job).total_cmp(&kind.run_rank(&b.job)));
    (mine, todo)
}

/// The first `most` jobs of a list, and how many more there are.
fn list_jobs<J>(jobs: &[&Planned<J>], most: usize) {
    for p in jobs.iter().take(most) {
        println!("  {}  {}", p.id, p.label);
    }
    if jobs.len() > most {
        println!("  ... and {} more", jobs.len() - most);
    }
}

/// Run `job(0..n)` on `threads` workers, each taking the next index in order.
///
/// One worker runs on this thread, so whatever a job parallelises inside itself (the finetune
/// kind's matrix products, candle's and the optimiser's kernels) has every core of the global
/// pool. A pool of one thread here put all of that on one core: every finetune run before
/// 2026-12-03 used one of the two cores (results do not depend on the thread count:
/// crates/finetune/tests/fused.rs, hmoe's lm tests). With several, each worker takes the next
/// job in run order (a shared counter), so jobs start in the order `Kind::run_rank` gives: a
/// parallel iterator would split the list in halves and start the second half at once, leaving
/// both halves part-done when a run stops.
fn in_run_order(threads: usize, n: usize, job: impl Fn(usize) + Sync) -> anyhow::Result<()> {
    if threads == 1 {
        (0..n).for_each(job);
        return Ok(());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    pool.scope(|s| {
        for _ in 0..threads {
            s.spawn(|_| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                job(i);
            });
        }
    });
    Ok(())
}

/// Jobs to run at once: `--threads`, else the kind's choice, else one per core; and no more
/// than fit in memory together (the largest job counts for each).
fn jobs_at_once<K: Kind>(
    kind: &K,
    opts: &RunOptions,
    todo: &[&Planned<K::Job>],
) -> anyhow::Result<usize> {
    let mut threads = opts
        .threads
        .or(kind.default_threads())
        .unwrap_or_else(host_threads)
        .max(1);
    let largest = todo.iter().filter_map(|p| kind.memory_bytes(&p.job)).max();
    if let (Some(job), Some(have)) = (largest, crate::provenance::host_memory()?) {
        let fit = (have / job.max(1)).max(1) as usize;
        if threads > fit {
            eprintln!(
                "note: running {fit} job(s) at once, not {threads}: the largest job needs about {} \
                 and this machine has {}",
                crate::provenance::gib(job),
                crate::provenance::gib(have)
            );
            threads = fit;
        }
    }
    Ok(threads)
}

/// Run one job and write its sealed record; the error (a failed job, a panic, an unwritable
/// record) in words, or `None`.
fn run_one<K: Kind>(
    info: &ExperimentInfo,
    kind: &K,
    dirs: &Dirs,
    prov: &RunProvenance,
    progress: &Progress,
    p: &Planned<K::Job>,
) -> Option<String> {
    let t0 = Instant::now();
    let ctx = JobContext {
        id: &p.id,
        dirs,
        progress: &progress.multi,
    };
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kind.run_job(&p.job, &ctx)));
    match outcome {
        Ok(Ok(record)) => {
            let env = Envelope {
                format: store::FORMAT,
                id: p.id.clone(),
                experiment: info.name.clone(),
                kind: info.kind.clone(),
                label: p.label.clone(),
                job: &p.job,
                record,
                provenance: prov.for_job(t0.elapsed().as_secs_f64()),
                checksum: None,
            };
            env.sealed()
                .and_then(|env| store::write_json(&dirs.record(&p.id), &env))
                .err()
                .map(|e| format!("{e:#}"))
        }
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(panic) => Some(panic_message(panic.as_ref())),
    }
}

/// Take the run lock of an experiment (and shard): `results/X/.hora-run-<all|i-of-N>.lock`,
/// an OS file lock, so two `hora run` on the same work refuse instead of doing it twice.
/// Different shards lock different files and run side by side, as on a cluster.
fn lock_run(
    info: &ExperimentInfo,
    dirs: &Dirs,
    shard: Option<Shard>,
) -> anyhow::Result<std::fs::File> {
    let which = shard.map_or("all".to_string(), |s| format!("{}-of-{}", s.index, s.count));
    std::fs::create_dir_all(&dirs.experiment)
        .with_context(|| format!("cannot create {}", dirs.experiment.display()))?;
    let path = dirs.experiment.join(format!(".hora-run-{which}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the run lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(crate::error::LabError::Usage(format!(
            "another `hora run {}` is already running{} on {} (it holds {}); wait for it to \
             finish, or split the work with --shard i/N",
            info.name,
            shard.map(|s| format!(" shard {s}")).unwrap_or_default(),
            dirs.experiment.display(),
            path.display()
        ))
        .into()),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::anyhow!("cannot lock {}: {e}", path.display()))
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("panicked: {msg}")
}

#[derive(Debug, Default)]
pub struct MetricReport {
    pub files: Vec<PathBuf>,
    pub records: usize,
    pub missing: usize,
    pub corrupt: Vec<(PathBuf, String)>,
}

/// Compute the metric tables of a profile from its raw records (never refitting); a corrupt
/// record is named on stderr and skipped.
pub fn metric<K: Kind>(
    info: &ExperimentInfo,
    kind: &K,
    dirs: &Dirs,
) -> anyhow::Result<MetricReport> {
    // Reading commands write only their outputs: the plan stays in memory.
    let plan = plan::build(info, kind, &dirs.profile)?;
    let stored: Vec<Stored<K::Job, K::Record>> = plan
        .jobs
        .par_iter()
        .map(|p| store::read(&dirs.record(&p.id), &p.id))
        .collect();
    let mut prov = ProvenanceSummary {
        experiment: info.name.clone(),
        profile: dirs.profile.clone(),
        experiment_file: crate::provenance::repo_path(&info.path),
        experiment_sha256: info.sha256.clone(),
        jobs: plan.jobs.len(),
        ..Default::default()
    };
    let mut report = MetricReport::default();
    let mut done = Vec::new();
    for (p, s) in plan.jobs.iter().zip(stored) {
        match s {
            Stored::Valid(env) => {
                prov.add(&env.provenance);
                // The planned job, not the stored copy, is what the metrics describe; the id
                // (a hash of the job) already ties the two together.
                done.push(Done {
                    id: &p.id,
                    job: &p.job,
                    record: env.record,
                });
            }
            Stored::Missing => report.missing += 1,
            Stored::Corrupt(why) => {
                let path = dirs.record(&p.id);
                eprintln!(
                    "skipping corrupt record {} ({}): {why}",
                    path.display(),
                    p.label
                );
                report.corrupt.push((path, why));
            }
        }
    }
    report.records = done.len();
    prov.records = done.len();
    prov.missing = report.missing;
    prov.corrupt = report.corrupt.len();
    if done.is_empty() {
        bail!(
            "{} / {}: none of the {} jobs has a valid record yet; run `hora run {}{}` first",
            info.name,
            dirs.profile,
            plan.jobs.len(),
            info.name,
            dirs.flags
        );
    }
    if report.missing + report.corrupt.len() > 0 {
        eprintln!(
            "note: metrics of {} / {} cover {} of {} jobs ({} missing, {} corrupt)",
            info.name,
            dirs.profile,
            done.len(),
            plan.jobs.len(),
            report.missing,
            report.corrupt.len()
        );
    }
    report.files = kind.metrics(&dirs.profile, &done, dirs)?;
    if dirs.out.is_some() {
        // In a folder of its own, the tables travel with the plan they cover.
        store::write_json(&dirs.manifest(), &plan.manifest()?)?;
        report.files.push(dirs.manifest());
    }
    let prov_path = dirs.file("provenance.json");
    store::write_json(&prov_path, &prov)?;
    report.files.push(prov_path);
    Ok(report)
}

/// Figures and summary from the metric tables of a profile.
pub fn report<K: Kind>(
    info: &ExperimentInfo,
    kind: &K,
    dirs: &Dirs,
) -> anyhow::Result<Vec<PathBuf>> {
    let path = dirs.file("provenance.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no metrics for {} / {} yet ({} is missing): run `hora metric {}{}` first",
            info.name,
            dirs.profile,
            path.display(),
            info.name,
            dirs.flags
        )
    })?;
    let prov: ProvenanceSummary =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    let report = kind.report(&dirs.profile, dirs)?;
    let mut text = format!("# {} ({} profile)\n\n", info.name, dirs.profile);
    if !info.description.trim().is_empty() {
        text += &format!("{}\n\n", info.description.trim());
    }
    if prov.records < prov.jobs {
        // A profile still running (or left unfinished) must not read as a result.
        text += &format!(
            "> **Incomplete: {} of {} jobs have a record** ({} missing, {} corrupt). Every number \
             below covers only those; the profile is not finished.\n\n",
            prov.records, prov.jobs, prov.missing, prov.corrupt
        );
    }
    text += &report.summary;
    text += &prov.markdown();
    let summary = dirs.file("summary.md");
    store::write_atomic(&summary, text.as_bytes())
        .with_context(|| format!("cannot write {}", summary.display()))?;
    let mut files = report.figures;
    files.push(summary);
    Ok(files)
}

#[derive(Debug, Default)]
pub struct MergeReport {
    pub jobs: usize,
    pub valid: usize,
    /// Records copied in from `--from` directories.
    pub imported: usize,
    /// (id, label) of jobs with no record.
    pub missing: Vec<(String, String)>,
    /// (id, label, why) of jobs whose record is corrupt; they count as missing.
    pub corrupt: Vec<(String, String, String)>,
}

impl MergeReport {
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// Check that every job of the plan has a valid record, first copying valid records of missing
/// jobs from `from` (raw directories gathered from other machines).
pub fn merge<K: Kind>(
    info: &ExperimentInfo,
    kind: &K,
    dirs: &Dirs,
    from: &[PathBuf],
) -> anyhow::Result<MergeReport> {
    let plan = plan::build(info, kind, &dirs.profile)?;
    let mut report = MergeReport {
        jobs: plan.jobs.len(),
        ..Default::default()
    };
    for p in &plan.jobs {
        let path = dirs.record(&p.id);
        let mut state = store::read::<K::Job, K::Record>(&path, &p.id);
        if !matches!(state, Stored::Valid(_)) {
            if let Some(src) = from
                .iter()
                .map(|d| d.join(format!("{}.json", p.id)))
                .find(|src| store::is_valid::<K::Job, K::Record>(src, &p.id))
            {
                let bytes = std::fs::read(&src)
                    .with_context(|| format!("cannot read {}", src.display()))?;
                store::write_atomic(&path, &bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                report.imported += 1;
                state = store::read(&path, &p.id);
            }
        }
        match state {
            Stored::Valid(_) => report.valid += 1,
            Stored::Missing => report.missing.push((p.id.clone(), p.label.clone())),
            Stored::Corrupt(why) => report.corrupt.push((p.id.clone(), p.label.clone(), why)),
        }
    }
    Ok(report)
}

/// (jobs with a valid record, jobs) of a profile, writing nothing.
pub fn status<K: Kind>(
    info: &ExperimentInfo,
    kind: &K,
    results: &Path,
    profile: &str,
) -> anyhow::Result<(usize, usize)> {
    let dirs = Dirs::new(results, &info.name, profile);
    let plan = plan::build(info, kind, profile)?;
    let done = plan
        .jobs
        .par_iter()
        .filter(|p| store::is_valid::<K::Job, K::Record>(&dirs.record(&p.id), &p.id))
        .count();
    Ok((done, plan.jobs.len()))
}

/// What one raw record file is, read as its experiment's kind.
#[derive(Clone, Debug)]
pub struct RecordCheck {
    /// The file's stem (the id it claims).
    pub id: String,
    pub path: PathBuf,
    /// Whether some profile of the experiment plans this job.
    pub planned: bool,
    /// `Err(why)`: the record is corrupt (it does not parse, names another job, its job does not
    /// hash to its id, or its checksum does not match).
    pub valid: Result<(), String>,
    /// The record's `format` (1 when absent).
    pub format: u64,
    /// Whether the record carries a checksum (checked when `valid` is `Ok`).
    pub sealed: bool,
    /// The record's provenance, as stored.
    pub provenance: serde_json::Value,
}

/// A profile judged by a rule written in its experiment file (`[decision]`).
pub struct Judged {
    /// The experiment file, as the repository names it.
    pub file: String,
    pub profile: String,
    /// The text that marks the rule in the file.
    pub marker: &'static str,
    /// The ids of the profile's jobs.
    pub ids: std::collections::BTreeSet<String>,
}

/// Read every `raw/*.json` of an experiment as its kind's records.
pub fn audit_records<K: Kind>(
    info: &crate::experiment::ExperimentInfo,
    kind: &K,
    results: &Path,
) -> anyhow::Result<Vec<RecordCheck>> {
    let mut planned = std::collections::BTreeSet::new();
    for profile in kind.profiles() {
        for p in plan::build(info, kind, &profile)?.jobs {
            planned.insert(p.id);
        }
    }
    let raw = Dirs::new(results, &info.name, "-").raw();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&raw) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => anyhow::bail!("cannot list {}: {e}", raw.display()),
    };
    files.sort();
    Ok(files
        .par_iter()
        .map(|path| {
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let value: serde_json::Value = std::fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(serde_json::Value::Null);
            let valid = match store::read::<K::Job, K::Record>(path, &id) {
                Stored::Valid(_) => Ok(()),
                Stored::Corrupt(why) => Err(why),
                Stored::Missing => Err("vanished while being read".into()),
            };
            RecordCheck {
                planned: planned.contains(&id),
                format: value.get("format").and_then(|f| f.as_u64()).unwrap_or(1),
                sealed: value.get("checksum").is_some_and(|c| c.is_string()),
                provenance: value
                    .get("provenance")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null),
                id,
                path: path.clone(),
                valid,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::{Records, Report, Written};

    /// A toy kind: job `i` of eight, ranked in reverse, each noting when it started.
    struct Order {
        started: Mutex<Vec<u32>>,
    }

    impl Kind for Order {
        const NAME: &'static str = "order";
        type Flags = crate::kind::NoFlags;
        type Commands = crate::kind::NoCommands;
        type Job = u32;
        type Record = u32;
        fn parse(
            _: &ExperimentInfo,
            _: toml::Table,
            _: &crate::kind::NoFlags,
        ) -> Result<Self, crate::error::LabError> {
            unreachable!("built directly")
        }
        fn profiles(&self) -> Vec<String> {
            vec!["quick".into()]
        }
        fn jobs(&self, _: &str) -> Result<Vec<u32>, crate::error::LabError> {
            Ok((0..8).collect())
        }
        fn label(&self, job: &u32) -> String {
            job.to_string()
        }
        fn run_rank(&self, job: &u32) -> f64 {
            -(*job as f64)
        }
        fn run_job(&self, job: &u32, _: &JobContext<'_>) -> anyhow::Result<u32> {
            self.started.lock().unwrap().push(*job);
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(*job)
        }
        fn metrics(&self, _: &str, _: &Records<'_, Self>, _: &Dirs) -> Written {
            Ok(Vec::new())
        }
        fn report(&self, _: &str, _: &Dirs) -> anyhow::Result<Report> {
            unreachable!()
        }
    }

    /// With two workers the jobs still start in rank order (up to the two workers' race for
    /// the next one): a parallel iterator split the list in halves and started job 3 beside 7.
    #[test]
    fn jobs_start_in_rank_order_on_any_number_of_threads() {
        for threads in [1, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let info = ExperimentInfo {
                name: "order".into(),
                path: dir.path().join("order.toml"),
                sha256: String::new(),
                kind: "order".into(),
                description: String::new(),
            };
            let kind = Order {
                started: Mutex::new(Vec::new()),
            };
            let dirs = Dirs::new(dir.path(), "order", "quick");
            let opts = RunOptions {
                threads: Some(threads),
                shard: None,
                dry_run: false,
            };
            let report = run(&info, &kind, &dirs, &opts).unwrap();
            assert_eq!(report.ran, 8);
            let started = kind.started.into_inner().unwrap();
            let rank_order: Vec<u32> = (0..8).rev().collect();
            for (k, job) in started.iter().enumerate() {
                let at = rank_order.iter().position(|j| j == job).unwrap();
                assert!(
                    at.abs_diff(k) < threads,
                    "{threads} threads: job {job} started {k}th, its rank is {at}: {started:?}"
                );
            }
        }
    }
}
