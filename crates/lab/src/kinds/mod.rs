//! The registry of experiment kinds: the one list [`KINDS`] and, per kind, one folder here.
//!
//! Adding a kind `foo` takes:
//! 1. `kinds/foo/mod.rs`: a type implementing [`Kind`] (its `NAME`, its flags and subcommands,
//!    how it parses its file, its jobs, how one job runs, its metric tables and report), split
//!    into files as `rates/` and `finetune/` are (`metrics.rs` for tables, `report.rs` for figures
//!    and summary), and a `pub mod foo;` line here;
//! 2. one line in [`KINDS`]: `entry::<foo::FooKind>()`;
//! 3. an experiment file `experiments/<name>.toml` with `kind = "foo"`.
//!
//! Nothing else names a kind: the command line adds each kind's flags ([`Kind::Flags`]) and
//! subcommands ([`Kind::Commands`]) from this list, and the pipeline and the Slurm path reach a
//! kind only through the [`Experiment`] trait object that [`load_in`] returns. The test
//! `toy::tests::a_toy_kind_plugs_in_through_its_entry_alone` (`kinds/toy.rs`) adds a kind with
//! a flag and a subcommand that way.
pub mod controls;
pub(crate) mod curves;
pub mod finetune;
pub mod identifiability;
pub mod rates;
#[cfg(test)]
mod toy;

use crate::error::LabError;
use crate::experiment::{self, ExperimentInfo};
use crate::kind::{CommandEnv, Forward, Kind, KindCommands, KindFlags};
use crate::layout::Dirs;
use crate::pipeline::{self, MergeReport, MetricReport, RunOptions, RunReport};
use std::path::{Path, PathBuf};

/// Every kind an experiment file may name, in the order `--help` and errors list them.
pub const KINDS: &[KindEntry] = &[
    entry::<rates::RatesKind>(),
    entry::<finetune::FinetuneKind>(),
    entry::<identifiability::IdentifiabilityKind>(),
    entry::<controls::ControlsKind>(),
];

/// Parse an experiment file's body (the file without its header) as one kind, with the kind's
/// flags read from the command line's matches.
type LoadFn =
    fn(ExperimentInfo, toml::Table, &clap::ArgMatches) -> Result<Box<dyn Experiment>, LabError>;

/// A kind's name, how to load an experiment of it, and what it adds to the command line.
#[derive(Clone, Copy)]
pub struct KindEntry {
    pub name: &'static str,
    load: LoadFn,
    /// Add the kind's flags and subcommands to `hora`'s command.
    pub(crate) augment: fn(clap::Command) -> clap::Command,
    /// Check the environment variables the kind reads ([`KindFlags::check_environment`]).
    pub(crate) check_environment: fn() -> Result<(), LabError>,
    /// Run the kind's subcommand, when the matches name one of its own (`None` otherwise).
    pub(crate) command: fn(&clap::ArgMatches, &CommandEnv<'_>) -> Option<anyhow::Result<bool>>,
}

pub(crate) const fn entry<K: Kind + 'static>() -> KindEntry {
    KindEntry {
        name: K::NAME,
        load: load_as::<K>,
        augment: augment::<K>,
        check_environment: K::Flags::check_environment,
        command: command::<K>,
    }
}

fn flags_of<K: Kind>(matches: &clap::ArgMatches) -> Result<K::Flags, LabError> {
    <K::Flags as clap::FromArgMatches>::from_arg_matches(matches)
        .map_err(|e| LabError::Usage(format!("{} flags: {e}", K::NAME)))
}

fn load_as<K: Kind + 'static>(
    info: ExperimentInfo,
    body: toml::Table,
    matches: &clap::ArgMatches,
) -> Result<Box<dyn Experiment>, LabError> {
    let flags = flags_of::<K>(matches)?;
    let kind = K::parse(&info, body, &flags)?;
    Ok(Box::new(Loaded { info, kind, flags }))
}

fn augment<K: Kind>(cmd: clap::Command) -> clap::Command {
    use clap::{Args, Subcommand};
    K::Commands::augment_subcommands(K::Flags::augment_args(cmd))
}

fn command<K: Kind>(
    matches: &clap::ArgMatches,
    env: &CommandEnv<'_>,
) -> Option<anyhow::Result<bool>> {
    use clap::{FromArgMatches, Subcommand};
    let (name, _) = matches.subcommand()?;
    if !K::Commands::has_subcommand(name) {
        return None;
    }
    let run = || -> anyhow::Result<bool> {
        let flags = flags_of::<K>(matches)?;
        let cmd = K::Commands::from_arg_matches(matches)
            .map_err(|e| LabError::Usage(format!("`hora {name}`: {e}")))?;
        cmd.run(&flags, env)
    };
    Some(run())
}

pub(crate) fn names_in(registry: &[KindEntry]) -> Vec<&'static str> {
    registry.iter().map(|k| k.name).collect()
}

/// Read, parse and check the experiment `name` of `dir` as the kind its file names (among those
/// of `registry`), with that kind's flags from `matches` (the command line's).
pub(crate) fn load_in(
    registry: &[KindEntry],
    dir: &Path,
    name: &str,
    matches: &clap::ArgMatches,
) -> Result<Box<dyn Experiment>, LabError> {
    let (info, body) = experiment::read(dir, name, &names_in(registry))?;
    let entry = registry
        .iter()
        .find(|e| e.name == info.kind)
        .expect("experiment::read accepts registered kinds only");
    (entry.load)(info, body, matches)
}

/// An experiment of some kind, with the pipeline's stages: what the command line calls.
pub trait Experiment {
    fn info(&self) -> &ExperimentInfo;
    /// Profiles the file defines (quick, paper, then the rest).
    fn profiles(&self) -> Vec<String>;
    /// Jobs of a profile (an unknown profile is an error naming the known ones).
    fn job_count(&self, profile: &str) -> Result<usize, LabError>;
    /// Write the manifest (unless `dry_run`); returns the number of jobs.
    fn plan(&self, dirs: &Dirs, dry_run: bool) -> anyhow::Result<usize>;
    fn run(&self, dirs: &Dirs, opts: &RunOptions) -> anyhow::Result<RunReport>;
    fn metric(&self, dirs: &Dirs) -> anyhow::Result<MetricReport>;
    fn report(&self, dirs: &Dirs) -> anyhow::Result<Vec<PathBuf>>;
    fn merge(&self, dirs: &Dirs, from: &[PathBuf]) -> anyhow::Result<MergeReport>;
    /// (jobs with a valid record, jobs) of a profile, writing nothing.
    fn status(&self, results: &Path, profile: &str) -> anyhow::Result<(usize, usize)>;
    /// Every raw record file of the experiment, read as this kind's records (`hora verify`).
    fn audit_records(&self, results: &Path) -> anyhow::Result<Vec<pipeline::RecordCheck>>;
    /// The kind's columns that `hora reproduce` may find filled in ([`Kind::log_coverage`]).
    fn log_coverage(&self) -> &'static [crate::reproduce::LogCoverage];
    /// A decision rule's judged profile ([`Kind::judged_profile`]): its name, the rule's marker
    /// in the file, and the ids of the profile's jobs.
    fn judged(&self) -> anyhow::Result<Option<crate::pipeline::Judged>>;
    /// The kind's flags that a suggested command repeats ([`KindFlags::forward`]).
    fn forward(&self) -> Vec<Forward>;
}

struct Loaded<K: Kind> {
    info: ExperimentInfo,
    kind: K,
    flags: K::Flags,
}

impl<K: Kind> Experiment for Loaded<K> {
    fn info(&self) -> &ExperimentInfo {
        &self.info
    }
    fn profiles(&self) -> Vec<String> {
        self.kind.profiles()
    }
    fn job_count(&self, profile: &str) -> Result<usize, LabError> {
        Ok(self.kind.jobs(profile)?.len())
    }
    fn plan(&self, dirs: &Dirs, dry_run: bool) -> anyhow::Result<usize> {
        Ok(pipeline::plan(&self.info, &self.kind, dirs, dry_run)?
            .jobs
            .len())
    }
    fn run(&self, dirs: &Dirs, opts: &RunOptions) -> anyhow::Result<RunReport> {
        pipeline::run(&self.info, &self.kind, dirs, opts)
    }
    fn metric(&self, dirs: &Dirs) -> anyhow::Result<MetricReport> {
        pipeline::metric(&self.info, &self.kind, dirs)
    }
    fn report(&self, dirs: &Dirs) -> anyhow::Result<Vec<PathBuf>> {
        pipeline::report(&self.info, &self.kind, dirs)
    }
    fn merge(&self, dirs: &Dirs, from: &[PathBuf]) -> anyhow::Result<MergeReport> {
        pipeline::merge(&self.info, &self.kind, dirs, from)
    }
    fn status(&self, results: &Path, profile: &str) -> anyhow::Result<(usize, usize)> {
        pipeline::status(&self.info, &self.kind, results, profile)
    }
    fn audit_records(&self, results: &Path) -> anyhow::Result<Vec<pipeline::RecordCheck>> {
        pipeline::audit_records(&self.info, &self.kind, results)
    }
    fn log_coverage(&self) -> &'static [crate::reproduce::LogCoverage] {
        self.kind.log_coverage()
    }
    fn judged(&self) -> anyhow::Result<Option<crate::pipeline::Judged>> {
        let Some((profile, marker)) = self.kind.judged_profile() else {
            return Ok(None);
        };
        let ids = crate::plan::build(&self.info, &self.kind, &profile)?
            .jobs
            .into_iter()
            .map(|p| p.id)
            .collect();
        Ok(Some(crate::pipeline::Judged {
            file: crate::provenance::repo_path(&self.info.path),
            profile,
            marker,
            ids,
        }))
    }
    fn forward(&self) -> Vec<Forward> {
        self.flags.forward()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_unique() {
        let mut n = names_in(KINDS);
        n.sort();
        n.dedup();
        assert_eq!(n.len(), KINDS.len());
    }
}
