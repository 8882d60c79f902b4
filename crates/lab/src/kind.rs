//! The one trait between the plumbing and the science: what an experiment kind must say.
use crate::error::LabError;
use crate::experiment::ExperimentInfo;
use crate::layout::Dirs;
use indicatif::MultiProgress;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;

/// What a running job may use besides its own description.
pub struct JobContext<'a> {
    /// The job's content-hashed id (its record is `dirs.record(id)`).
    pub id: &'a str,
    pub dirs: &'a Dirs,
    /// Where a job may add its own progress bar (below the sweep's bar).
    pub progress: &'a MultiProgress,
}

/// A valid raw record of a job of the plan, handed to [`Kind::metrics`] in plan order.
pub struct Done<'a, J, R> {
    pub id: &'a str,
    pub job: &'a J,
    pub record: R,
}

/// A kind's own command-line flags: global flags of `hora` (declare them `global = true`),
/// parsed by clap from the same command line and handed to [`Kind::parse`] and to the kind's
/// subcommands. A `clap::Args` struct marked `#[group(skip)]` (kinds would otherwise share a
/// group name) and with no doc comment of its own (clap would make it the about text of
/// `hora`). [`NoFlags`] for a kind without any.
pub trait KindFlags:
    clap::Args + clap::FromArgMatches + Default + Clone + Send + Sync + 'static
{
    /// The flags a suggested command (an error's hint, a Slurm script) repeats so that it means
    /// what this one did.
    fn forward(&self) -> Vec<Forward> {
        Vec::new()
    }
    /// The environment variables the kind reads, checked as its flags are, before any command
    /// starts (an error names the variable). None by default.
    fn check_environment() -> Result<(), LabError> {
        Ok(())
    }
}

/// One flag to repeat: a path (made absolute where the command runs elsewhere), any other
/// value, or a switch.
#[derive(Clone, Debug, PartialEq)]
pub enum Forward {
    Path(&'static str, std::path::PathBuf),
    /// Neither a path nor a switch (no kind of the project has one yet; the toy kind's test
    /// does).
    #[cfg_attr(not(test), allow(dead_code))]
    Value(&'static str, String),
    Switch(&'static str),
}

// No flags of its own. (Not a doc comment: clap would make it the about text of `hora`.)
#[derive(clap::Args, Clone, Debug, Default)]
#[group(skip)]
pub struct NoFlags {}

impl KindFlags for NoFlags {}

/// What a kind's own subcommand may use besides its arguments and its kind's flags.
pub struct CommandEnv<'a> {
    /// `results/` (after `--results`).
    pub results: &'a std::path::Path,
    /// `--dry-run`: say what would be done, write nothing.
    pub dry_run: bool,
}

/// A kind's own subcommands of `hora` (`hora export`, ...): a clap subcommand enum that runs
/// itself. `Ok(false)` means "finished, but the answer is no" (exit 1). [`NoCommands`] for a
/// kind without any.
pub trait KindCommands<F>: clap::Subcommand {
    fn run(self, flags: &F, env: &CommandEnv<'_>) -> anyhow::Result<bool>;
}

// No subcommands of its own. (Not a doc comment: clap would make an enum's doc comment the
// about text of the command it is added to, `hora` itself.)
#[derive(clap::Subcommand, Debug)]
pub enum NoCommands {}

impl<F> KindCommands<F> for NoCommands {
    fn run(self, _: &F, _: &CommandEnv<'_>) -> anyhow::Result<bool> {
        match self {}
    }
}

pub trait Kind: Sync + Sized {
    /// The `kind = "..."` of its experiment files (registered in `kinds::KINDS`).
    const NAME: &'static str;
    /// The kind's own command-line flags ([`NoFlags`] for none).
    type Flags: KindFlags;
    /// The kind's own subcommands ([`NoCommands`] for none).
    type Commands: KindCommands<Self::Flags>;
    /// One unit of work; its canonical JSON is hashed into the job id, so it must hold
    /// everything that determines the result. Its serialised form is a versioned job key: a
    /// field added later must be skipped while it holds its default (DESIGN.md, "Job identity").
    type Job: Serialize + DeserializeOwned + Send + Sync;
    /// The raw result of one job, stored as JSON.
    type Record: Serialize + DeserializeOwned + Send + Sync;

    /// Parse and check an experiment file of this kind: `body` is the file without its header
    /// (`name`, `kind`, `description`, already checked into `info`).
    fn parse(
        info: &ExperimentInfo,
        body: toml::Table,
        flags: &Self::Flags,
    ) -> Result<Self, LabError>;
    /// Profiles the file defines, in file order.
    fn profiles(&self) -> Vec<String>;
    /// Every job of a profile, in a fixed order (the order of the manifest and of the metrics).
    fn jobs(&self, profile: &str) -> Result<Vec<Self::Job>, LabError>;
    /// A short human-readable name of a job.
    fn label(&self, job: &Self::Job) -> String;
    /// The relative cost of a job (its share of a run's ETA); equal by default.
    fn cost(&self, _job: &Self::Job) -> f64 {
        1.0
    }
    /// Where a job comes in the order a run takes its jobs: ascending, ties in plan order (0 for
    /// every job by default: plan order). It changes nothing but the order, so a profile that
    /// lands over several sessions can fill whole blocks of comparable jobs first.
    fn run_rank(&self, _job: &Self::Job) -> f64 {
        0.0
    }
    /// An upper estimate of the memory one job needs, in bytes (`None`: not estimated). A job
    /// above the host's memory is refused when planned; a run starts no more jobs at once than
    /// fit together.
    fn memory_bytes(&self, _job: &Self::Job) -> Option<u64> {
        None
    }
    /// Jobs that run at once unless `--threads` says otherwise (`None`: one per core).
    fn default_threads(&self) -> Option<usize> {
        None
    }
    /// Columns of this kind's tables that older records computed over fewer inputs than a
    /// fresh run does: `hora reproduce` reports them as filled in, not as differences
    /// ([`crate::reproduce::LogCoverage`]). None by default.
    fn log_coverage(&self) -> &'static [crate::reproduce::LogCoverage] {
        &[]
    }
    /// The profile a decision rule written in the experiment file judges, and the text that
    /// marks the rule in the file (`hora verify` checks that the commit adding it precedes every
    /// record of that profile). None by default.
    fn judged_profile(&self) -> Option<(String, &'static str)> {
        None
    }
    /// Checks before any job of a run starts (assets present, ...); errors stop the run.
    fn prepare(&self, _dirs: &Dirs) -> anyhow::Result<()> {
        Ok(())
    }
    fn run_job(&self, job: &Self::Job, ctx: &JobContext<'_>) -> anyhow::Result<Self::Record>;
    /// Write the metric tables of a profile from its valid records; returns the files written.
    /// (Write each table with `store::write_table`.)
    fn metrics(&self, profile: &str, done: &Records<'_, Self>, dirs: &Dirs) -> Written;
    /// Draw the figures of a profile from its metric tables and compose the kind's part of
    /// `summary.md`; the pipeline adds the title, description and provenance and writes it.
    fn report(&self, profile: &str, dirs: &Dirs) -> anyhow::Result<Report>;
}

/// A kind's tests: parse an experiment file's text as kind `K` with its default flags (the file
/// is `t.toml`; `name` and `kind`, when present, are the header and left out as the driver
/// does).
#[cfg(test)]
pub fn parse_text<K: Kind>(text: &str) -> Result<K, LabError> {
    let info = ExperimentInfo {
        name: "t".into(),
        path: "t.toml".into(),
        sha256: String::new(),
        kind: K::NAME.into(),
        description: String::new(),
    };
    let mut body: toml::Table = toml::from_str(text).expect("the test's TOML parses");
    body.remove("name");
    body.remove("kind");
    K::parse(&info, body, &K::Flags::default())
}

/// The valid records of a profile, as [`Kind::metrics`] receives them.
pub type Records<'a, K> = [Done<'a, <K as Kind>::Job, <K as Kind>::Record>];

/// The files a stage wrote.
pub type Written = anyhow::Result<Vec<PathBuf>>;

/// What [`Kind::report`] drew.
pub struct Report {
    /// Figure files written.
    pub figures: Vec<PathBuf>,
    /// The kind's part of `summary.md`: tables, notes and figure links, in Markdown.
    pub summary: String,
}

/// The profile `name` of an experiment's `profiles`, or an error naming the ones there are.
pub fn named_profile<'a, P>(
    experiment: &str,
    profiles: &'a std::collections::BTreeMap<String, P>,
    name: &str,
) -> Result<&'a P, crate::error::LabError> {
    profiles.get(name).ok_or_else(|| {
        crate::error::LabError::Usage(format!(
            "unknown profile `{name}` of experiment `{experiment}` (available: {})",
            profiles.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

/// `quick`, then `paper`, then any other profile alphabetically.
pub fn profile_order(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = names.into_iter().collect();
    let rank = |n: &str| match n {
        "quick" => 0,
        "paper" => 1,
        _ => 2,
    };
    v.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    v
}
