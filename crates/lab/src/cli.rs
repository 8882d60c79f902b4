//! The command line of `hora`: parse, find the experiment, dispatch to the pipeline stages.
use crate::error::LabError;
use crate::experiment;
use crate::kind::{CommandEnv, Forward};
use crate::kinds::{self, Experiment, KindEntry};
use crate::layout::Dirs;
use crate::pipeline::RunOptions;
use crate::plan::Shard;
use crate::slurm::{self, SlurmOptions};
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::{Path, PathBuf};

/// The experiment `hora` runs with no arguments (the README's main job).
pub const DEFAULT_EXPERIMENT: &str = "rates-overspecified";

#[derive(Parser, Debug)]
#[command(
    name = "hora",
    version,
    about = "Plan, run, measure and plot the HoRA experiments (experiments/<name>.toml -> results/<name>/)",
    after_help = "With no command, runs `reproduce rates-overspecified` (the quick profile, refitted from scratch and compared with the committed tables). `hora <experiment>` is `hora run-all <experiment>`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Profile of the experiment file (grid size): quick or paper.
    #[arg(long, global = true, default_value = "quick")]
    pub profile: String,
    /// Jobs run at once (default: the kind's: one per core for rates, one for finetune).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Say what would run; write nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Results directory (default: results/ next to experiments/).
    #[arg(long, global = true)]
    pub results: Option<PathBuf>,
    /// Directory of experiment files (default: experiments/ in the current directory or above).
    #[arg(long, global = true)]
    pub experiments: Option<PathBuf>,
    /// Write the profile's outputs (manifest, tables, figures, summary) to this folder instead of
    /// results/<experiment>/<profile>/ (to re-analyse a read-only archive of results).
    #[arg(long, global = true)]
    pub out: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write the manifest: one job per method x setting x n x replicate, with content-hashed ids.
    Plan { experiment: String },
    /// Run the jobs that have no record yet (resumable; --shard i/N for a cluster).
    Run {
        experiment: String,
        /// Take every N-th job starting at i (0 <= i < N); default from SLURM_ARRAY_TASK_ID/COUNT.
        #[arg(long)]
        shard: Option<String>,
    },
    /// Compute the metric tables from the raw records (never refits).
    Metric { experiment: String },
    /// Draw the figures and summary.md from the metric tables.
    Plot { experiment: String },
    /// plan, run, metric and plot.
    RunAll { experiment: String },
    /// Rerun a profile from scratch in a scratch folder and compare its tables with the committed
    /// ones: byte-identical, or the largest relative difference per column and whether each
    /// fresh slope (and mean) lies inside its committed interval. Exit 1 when it does not.
    /// Resumable: the scratch folder is kept, one per code revision.
    Reproduce {
        experiment: String,
        /// Scratch folder (default: target/reproduce/<git revision>/ at the workspace root).
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// List the experiments and how many of their jobs are done.
    List,
    /// Print a submit script (run it with bash): a job array of `hora run --shard`, then a
    /// job that waits for it and merges, computes the metrics and plots.
    Slurm {
        experiment: String,
        /// Array tasks (default: up to 32, never more than jobs).
        #[arg(long, default_value_t = 32)]
        tasks: usize,
        /// CPUs of one task (also its jobs at once); at most what one node has.
        #[arg(long, default_value_t = crate::slurm::DEFAULT_CPUS)]
        cpus_per_task: usize,
        /// Wall-time limit of one task (Slurm syntax: 04:00:00, 1-12, 90, ...).
        #[arg(long, default_value = "04:00:00")]
        time: String,
        #[arg(long)]
        partition: Option<String>,
        /// Memory of one task (sbatch --mem: 4G, 500M, ...).
        #[arg(long)]
        mem: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        qos: Option<String>,
        /// Any other sbatch option, passed to both submissions (repeatable):
        /// --sbatch-arg=--constraint=avx2
        #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
        sbatch_arg: Vec<String>,
    },
    /// Check that every committed number is traceable: every raw record of the experiments
    /// (all when none is named) is valid, sealed by its checksum, made at a revision of this
    /// repository's history from a clean tree (or one whose only change was a manifest), and
    /// every committed metric table equals `hora metric` on the records. Exit 1 on any failure.
    Verify {
        /// Experiments to verify (default: every experiment file).
        #[arg(value_name = "EXPERIMENT")]
        names: Vec<String>,
        /// Seal the valid records of formats 1 and 2 that have no checksum (adds that one field
        /// to each file, no other byte), then verify.
        #[arg(long)]
        seal: bool,
        /// Check the records and tables only, not the git history (for an export of the
        /// repository without its .git; the report says the history was not checked).
        #[arg(long)]
        skip_history: bool,
    },
    /// The paper's figures (PDF with the font embedded, and 300-dpi PNG, at one or two columns'
    /// width) and tables (LaTeX with booktabs, and Markdown), from the committed tables of the
    /// paper profiles, into results/paper/ (or --out). Names choose some of them.
    Paper {
        /// Figures or tables to write (default: all).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Check that every job of the manifest has a valid record; list the missing ones.
    Merge {
        experiment: String,
        /// Raw-record directories from other machines to copy missing records from.
        #[arg(long)]
        from: Vec<PathBuf>,
    },
}

/// `hora`'s command: the generic commands and flags of [`Cli`], then every registered kind's
/// own flags and subcommands.
pub fn command() -> clap::Command {
    command_in(kinds::KINDS)
}

pub(crate) fn command_in(registry: &[KindEntry]) -> clap::Command {
    registry
        .iter()
        .fold(Cli::command(), |cmd, k| (k.augment)(cmd))
}

/// `hora [flags] X ...` is `hora [flags] run-all X ...` when X is no subcommand (of `hora` or of
/// a kind).
pub fn normalise_args(args: Vec<String>) -> Vec<String> {
    normalise_in(&command(), args)
}

pub(crate) fn normalise_in(cmd: &clap::Command, mut args: Vec<String>) -> Vec<String> {
    let subcommands: Vec<&str> = cmd
        .get_subcommands()
        .flat_map(|c| std::iter::once(c.get_name()).chain(c.get_all_aliases()))
        .chain(["help"])
        .collect();
    // Flags that take a value (the next argument unless written `--flag=value`).
    let value_flags: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_action().takes_values())
        .flat_map(|a| {
            a.get_long()
                .into_iter()
                .chain(a.get_all_aliases().into_iter().flatten())
                .map(|l| format!("--{l}"))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if a.starts_with('-') {
            i += if value_flags.contains(a) { 2 } else { 1 };
            continue;
        }
        if !subcommands.contains(&a.as_str()) {
            args.insert(i, "run-all".into());
        }
        break;
    }
    args
}

/// Where experiments/ and results/ are: the flags, else the nearest directory at or above the
/// current one that holds `experiments/` (so `hora` works from any folder of the workspace).
pub fn locate(global: &Global) -> (PathBuf, PathBuf, PathBuf) {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let root = cwd
        .ancestors()
        .find(|d| d.join("experiments").is_dir())
        .unwrap_or(&cwd)
        .to_path_buf();
    let experiments = global
        .experiments
        .clone()
        .unwrap_or_else(|| root.join("experiments"));
    let results = global
        .results
        .clone()
        .unwrap_or_else(|| root.join("results"));
    (root, experiments, results)
}

/// Run a command line matched by [`command`]; `Ok(false)` means "finished, but the answer is
/// no" (exit 1).
pub fn execute(matches: ArgMatches) -> anyhow::Result<bool> {
    execute_in(kinds::KINDS, matches)
}

/// [`execute`] with the kinds of `registry` (a test adds a kind this way).
pub(crate) fn execute_in(registry: &[KindEntry], matches: ArgMatches) -> anyhow::Result<bool> {
    let usage = |e: clap::Error| LabError::Usage(e.to_string());
    let g = Global::from_arg_matches(&matches).map_err(usage)?;
    if g.threads == Some(0) {
        return Err(LabError::Usage("--threads must be at least 1".into()).into());
    }
    crate::provenance::check_environment()?;
    for k in registry {
        (k.check_environment)()?;
    }
    let (root, experiments, results) = locate(&g);
    let env = CommandEnv {
        results: &results,
        dry_run: g.dry_run,
    };
    if let Some(done) = registry.iter().find_map(|k| (k.command)(&matches, &env)) {
        return done;
    }
    let cli = Cli::from_arg_matches(&matches).map_err(usage)?;
    let command = cli.command.unwrap_or(Command::Reproduce {
        experiment: DEFAULT_EXPERIMENT.into(),
        into: None,
    });
    let load = |name: &str| kinds::load_in(registry, &experiments, name, &matches);
    let name = match &command {
        Command::List => return list(&experiments, &results, &load),
        Command::Verify {
            names,
            seal,
            skip_history,
        } => {
            return verify(
                &root,
                &experiments,
                &results,
                &load,
                names,
                *seal,
                *skip_history,
            )
        }
        Command::Paper { names } => {
            let out = g.out.clone().unwrap_or_else(|| results.join("paper"));
            let w = crate::paper::write(&results, &experiments, &out, names)?;
            print_files("paper figures and tables", &w.files);
            for p in &w.problems {
                eprintln!("figure check: {p}");
            }
            return Ok(w.problems.is_empty());
        }
        Command::Plan { experiment }
        | Command::Run { experiment, .. }
        | Command::Metric { experiment }
        | Command::Plot { experiment }
        | Command::RunAll { experiment }
        | Command::Reproduce { experiment, .. }
        | Command::Slurm { experiment, .. }
        | Command::Merge { experiment, .. } => experiment.clone(),
    };
    let loaded = load(&name)?;
    let shard = match &command {
        Command::Run { shard: Some(s), .. } => Some(Shard::parse(s)?),
        Command::Run { shard: None, .. } => Shard::from_env()?,
        _ => None,
    };
    let ctx = Ctx {
        root,
        experiments,
        results,
        global: g,
        shard,
    };
    stage(&command, loaded.as_ref(), &ctx)
}

/// The scratch folder of `reproduce` when `--into` is not given: one per code revision (and per
/// uncommitted change), so an interrupted reproduction resumes, and a changed build starts afresh.
fn default_scratch(root: &Path) -> PathBuf {
    let git = crate::provenance::git_state(root);
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let name = match (git.revision.as_str(), git.dirty, &git.diff_sha256) {
        ("unknown", _, _) => "unversioned".to_string(),
        (rev, Some(true), Some(diff)) => format!("{}-dirty-{}", short(rev), short(diff)),
        (rev, _, _) => short(rev),
    };
    root.join("target").join("reproduce").join(name)
}

fn reproduce(
    exp: &dyn Experiment,
    ctx: &Ctx,
    committed: &Dirs,
    into: Option<&Path>,
    run_opts: &RunOptions,
) -> anyhow::Result<bool> {
    let g = &ctx.global;
    if g.out.is_some() {
        return Err(LabError::Usage(
            "--out does not apply to reproduce: its fresh outputs go to the scratch folder (--into)"
                .into(),
        )
        .into());
    }
    let info = exp.info();
    let committed_dir = committed.out();
    // Checked before the long run, so a profile with nothing committed fails at once.
    crate::reproduce::committed_tables(
        &committed_dir,
        &format!(" (run `hora {}{}` first)", info.name, committed.flags),
    )?;
    let scratch = into.map_or_else(|| default_scratch(&ctx.root), Path::to_path_buf);
    let mut fresh = Dirs::new(&scratch, &info.name, &g.profile);
    fresh.flags = format!("{} --into {}", committed.flags, scratch.display());
    println!(
        "reproducing {} / {} from scratch in {} (committed tables: {})",
        info.name,
        g.profile,
        fresh.experiment.display(),
        committed_dir.display()
    );
    let run = exp.run(&fresh, run_opts)?;
    if g.dry_run {
        return Ok(true);
    }
    exp.metric(&fresh)?;
    exp.report(&fresh)?;
    let cmp = crate::reproduce::compare_dirs(&committed_dir, &fresh.out(), exp.log_coverage())?;
    println!(
        "{} jobs ({} fitted now, {} already in the scratch folder); fresh tables in {}",
        run.planned,
        run.ran,
        run.already_done,
        fresh.out().display()
    );
    print!("{}", cmp.report());
    if cmp.identical() {
        println!("reproduced: every table is byte-identical to the committed one");
        Ok(true)
    } else if cmp.identical_but_fuller() {
        println!(
            "reproduced: every table is byte-identical to the committed one, but for start-log \
             columns the committed records were written too early to fill (see above)"
        );
        Ok(true)
    } else if cmp.within_intervals() {
        println!(
            "reproduced within the committed intervals: the bytes differ (see the largest \
             relative differences above), every fresh slope and mean lies inside its committed interval"
        );
        Ok(true)
    } else {
        println!("NOT reproduced: see the differences above");
        Ok(false)
    }
}

struct Ctx {
    root: PathBuf,
    experiments: PathBuf,
    results: PathBuf,
    global: Global,
    shard: Option<Shard>,
}

/// On a dry run, say what `what` would have done and return true; else false.
fn would(dry_run: bool, what: &str, info: &crate::experiment::ExperimentInfo, dirs: &Dirs) -> bool {
    if dry_run {
        println!(
            "dry run: would {what} of {} / {} into {}",
            info.name,
            dirs.profile,
            dirs.out().display()
        );
    }
    dry_run
}

/// `run-all`: run, compute the metrics, draw the report, and say where each landed.
fn run_all(exp: &dyn Experiment, dirs: &Dirs, run_opts: &RunOptions) -> anyhow::Result<bool> {
    let info = exp.info();
    let run = exp.run(dirs, run_opts)?;
    if run_opts.dry_run {
        return Ok(true);
    }
    let m = exp.metric(dirs)?;
    let files = exp.report(dirs)?;
    let figure = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "png"));
    println!(
        "{} / {}: {} jobs ({} run now, {} already done), {} records used",
        info.name, dirs.profile, run.planned, run.ran, run.already_done, m.records
    );
    if let Some(f) = figure {
        println!("figure:  {}", f.display());
    }
    println!("summary: {}", dirs.file("summary.md").display());
    println!("tables:  {}", dirs.out().display());
    Ok(true)
}

fn stage(command: &Command, exp: &dyn Experiment, ctx: &Ctx) -> anyhow::Result<bool> {
    let g = &ctx.global;
    let info = exp.info();
    // Checked before anything is written, so a typo in --profile leaves no folder behind.
    let jobs = exp.job_count(&g.profile)?;
    let mut dirs = Dirs::new(&ctx.results, &info.name, &g.profile);
    dirs.out = g.out.clone();
    dirs.flags = flags_hint(g, &exp.forward());
    let run_opts = RunOptions {
        threads: g.threads,
        shard: ctx.shard,
        dry_run: g.dry_run,
    };
    match command {
        Command::Plan { .. } => {
            let planned = exp.plan(&dirs, g.dry_run)?;
            let what = if g.dry_run {
                " (dry run: nothing written)".to_string()
            } else {
                format!(", manifest {}", dirs.manifest().display())
            };
            println!("{} / {}: {planned} jobs{what}", info.name, g.profile);
            Ok(true)
        }
        Command::Run { .. } => {
            exp.run(&dirs, &run_opts)?;
            Ok(true)
        }
        Command::Metric { .. } => {
            if !would(g.dry_run, "compute the metrics", info, &dirs) {
                print_files("metrics", &exp.metric(&dirs)?.files);
            }
            Ok(true)
        }
        Command::Plot { .. } => {
            if !would(g.dry_run, "draw the figures", info, &dirs) {
                print_files("figures and summary", &exp.report(&dirs)?);
            }
            Ok(true)
        }
        Command::RunAll { .. } => run_all(exp, &dirs, &run_opts),
        Command::Reproduce { into, .. } => reproduce(exp, ctx, &dirs, into.as_deref(), &run_opts),
        Command::Merge { from, .. } => merge(exp, &dirs, g, from),
        Command::Slurm { .. } => slurm_script(command, exp, ctx, jobs),
        Command::List | Command::Verify { .. } | Command::Paper { .. } => {
            unreachable!("handled before an experiment is loaded")
        }
    }
}

/// `hora merge X`: which jobs of the profile lack a valid record (after importing `from`).
fn merge(exp: &dyn Experiment, dirs: &Dirs, g: &Global, from: &[PathBuf]) -> anyhow::Result<bool> {
    let info = exp.info();
    let r = exp.merge(dirs, from)?;
    for (id, label) in &r.missing {
        println!("missing  {id}  {label}");
    }
    for (id, label, why) in &r.corrupt {
        println!("corrupt  {id}  {label}  ({why})");
    }
    let imported = if r.imported > 0 {
        format!(", {} imported", r.imported)
    } else {
        String::new()
    };
    println!(
        "{} / {}: {} of {} jobs have a valid record{imported}; {} missing, {} corrupt",
        info.name,
        g.profile,
        r.valid,
        r.jobs,
        r.missing.len(),
        r.corrupt.len()
    );
    if !r.complete() {
        eprintln!(
            "incomplete: rerun `hora run {}{}` to fill the gaps",
            info.name, dirs.flags
        );
    }
    Ok(r.complete())
}

/// `hora slurm X`: a submit script for a Slurm job array over the profile's `jobs` jobs.
fn slurm_script(
    command: &Command,
    exp: &dyn Experiment,
    ctx: &Ctx,
    jobs: usize,
) -> anyhow::Result<bool> {
    let Command::Slurm {
        tasks,
        cpus_per_task,
        time,
        partition,
        mem,
        account,
        qos,
        sbatch_arg,
        ..
    } = command
    else {
        unreachable!("called for `hora slurm` only")
    };
    let (g, info) = (&ctx.global, exp.info());
    let hora = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "hora".into());
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let o = SlurmOptions {
        tasks: *tasks,
        cpus_per_task: *cpus_per_task,
        time: time.clone(),
        partition: partition.clone(),
        mem: mem.clone(),
        account: account.clone(),
        qos: qos.clone(),
        extra: sbatch_arg.clone(),
        hora,
        // The jobs run as this command would: the kind's flags, paths made absolute.
        hora_flags: forwarded(&exp.forward(), &abs),
    };
    slurm::check(&o)?;
    if *tasks > jobs {
        eprintln!("note: {jobs} jobs, so {jobs} array tasks (not {tasks})");
    }
    eprintln!(
        "note: each task asks for {cpus_per_task} CPUs; a task that asks more than a node \
         has pends forever (Reason=PartitionConfig): see `sinfo -o '%n %c'`"
    );
    print!(
        "{}",
        slurm::script(
            &info.name,
            &g.profile,
            jobs,
            &abs(&ctx.root),
            &abs(&ctx.experiments),
            &abs(&ctx.results),
            &o
        )
    );
    Ok(true)
}

/// The flags a hint repeats so that the suggested command means what the user's did: the
/// generic ones, then the kind's ([`crate::kind::KindFlags::forward`]).
fn flags_hint(g: &Global, kind: &[Forward]) -> String {
    let mut s = format!(" --profile {}", slurm::sh_quote(&g.profile));
    for (flag, v) in [
        ("--experiments", &g.experiments),
        ("--results", &g.results),
        ("--out", &g.out),
    ] {
        if let Some(v) = v {
            s += &format!(" {flag} {}", slurm::sh_quote(&v.display().to_string()));
        }
    }
    s + &forwarded(kind, &|p| p.to_path_buf())
}

/// A kind's forwarded flags as command-line text, each path through `path`.
fn forwarded(flags: &[Forward], path: &dyn Fn(&Path) -> PathBuf) -> String {
    flags
        .iter()
        .map(|f| match f {
            Forward::Path(flag, v) => {
                format!(
                    " {flag} {}",
                    slurm::sh_quote(&path(v).display().to_string())
                )
            }
            Forward::Value(flag, v) => format!(" {flag} {}", slurm::sh_quote(v)),
            Forward::Switch(flag) => format!(" {flag}"),
        })
        .collect()
}

/// Load an experiment by name with this command line's flags.
type Load<'a> = dyn Fn(&str) -> Result<Box<dyn Experiment>, LabError> + 'a;

fn print_files(what: &str, files: &[PathBuf]) {
    println!("{what}:");
    for f in files {
        println!("  {}", f.display());
    }
}

fn list(experiments: &Path, results: &Path, load: &Load<'_>) -> anyhow::Result<bool> {
    let names = experiment::available(experiments);
    if names.is_empty() {
        println!("no experiments in {}", experiments.display());
        return Ok(true);
    }
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    for name in names {
        let line = match load(&name) {
            Err(e) => format!("invalid: {e}"),
            Ok(exp) => format!("{:<9} {}", exp.info().kind, statuses(exp.as_ref(), results)),
        };
        println!("{name:<width$}  {line}");
    }
    Ok(true)
}

/// `hora verify [X...] [--seal]`: the archive checked as a whole (`crate::verify`).
fn verify(
    root: &Path,
    experiments: &Path,
    results: &Path,
    load: &Load<'_>,
    names: &[String],
    seal: bool,
    skip_history: bool,
) -> anyhow::Result<bool> {
    use crate::verify::{self, History, Tally, Verification};
    let all = experiment::available(experiments);
    let chosen: Vec<String> = if names.is_empty() {
        all.clone()
    } else {
        names.to_vec()
    };
    let mut v = Verification::default();
    let history = match History::open(root) {
        _ if skip_history => {
            v.history = Some("--skip-history was given".into());
            None
        }
        Ok(h) => Some(h),
        Err(why) => {
            v.history = Some(why.clone());
            v.findings.push(verify::Finding {
                experiment: "-".into(),
                subject: "-".into(),
                check: "history",
                detail: why,
                note: false,
            });
            None
        }
    };
    let scratch = tempfile::tempdir()?;
    for name in &chosen {
        let exp = load(name)?;
        let mut records = exp.audit_records(results)?;
        if seal {
            let n = verify::seal(&records)?;
            if n > 0 {
                eprintln!("{name}: sealed {n} records with their checksum");
                records = exp.audit_records(results)?;
            }
        }
        let mut tally = Tally::default();
        verify::check_records(
            name,
            &records,
            history.as_ref(),
            &mut tally,
            &mut v.findings,
        );
        verify::check_tables(
            exp.as_ref(),
            results,
            scratch.path(),
            &mut tally,
            &mut v.findings,
        )?;
        if let (Some(h), Some(judged)) = (history.as_ref(), exp.judged()?) {
            verify::check_rule_first(name, &judged, &records, h, &mut v.findings);
        }
        eprintln!(
            "{name}: {} records, {}/{} tables identical",
            tally.records, tally.tables_identical, tally.tables
        );
        v.tallies.insert(name.clone(), tally);
    }
    if names.is_empty() {
        v.findings.extend(verify::unclaimed_folders(results, &all));
    }
    print!("{}", v.report());
    if v.passed() {
        println!("verified: every record and every committed table checks out");
    } else {
        println!("NOT verified: see the failures above");
    }
    Ok(v.passed())
}

fn statuses(exp: &dyn Experiment, results: &Path) -> String {
    exp.profiles()
        .iter()
        .map(|p| match exp.status(results, p) {
            Ok((done, total)) => format!("{p} {done}/{total}"),
            Err(e) => format!("{p} ({e})"),
        })
        .collect::<Vec<_>>()
        .join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// clap checks its definitions (unique flag names and aliases) only in debug builds and
    /// only for the subcommand being parsed; this checks every subcommand at once.
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn a_bare_experiment_name_means_run_all() {
        assert_eq!(normalise_args(v("hora x")), v("hora run-all x"));
        assert_eq!(
            normalise_args(v("hora --profile paper x --threads 2")),
            v("hora --profile paper run-all x --threads 2")
        );
        assert_eq!(
            normalise_args(v("hora --dry-run --results=r x")),
            v("hora --dry-run --results=r run-all x")
        );
        assert_eq!(normalise_args(v("hora run x")), v("hora run x"));
        assert_eq!(
            normalise_args(v("hora --profile quick")),
            v("hora --profile quick")
        );
    }
}
