//! The registry of experiment kinds: the one list [`KINDS`] and, per kind, one folder here.
//!
//! Adding a kind `foo` takes:
//! 1. `kinds/foo/mod.rs`: a type implementing [`Kind`] (its `NAME`, how it parses its file,
//!    its jobs, how one job runs, its metric tables and report), split into files as
//!    `rates/` and `finetune/` are (`metrics.rs` for tables, `report.rs` for figures and summary);
//! 2. one line in [`KINDS`]: `entry::<foo::FooKind>()`;
//! 3. an experiment file `experiments/<name>.toml` with `kind = "foo"`.
//!
//! Nothing else names a kind: the command line, the pipeline and the Slurm path reach a kind
//! only through the [`Experiment`] trait object that [`load`] returns.
pub mod controls;
pub(crate) mod curves;
pub mod finetune;
pub mod identifiability;
pub mod rates;

use crate::error::LabError;
use crate::experiment::{self, ExperimentInfo, KindOptions};
use crate::kind::Kind;
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

/// Parse an experiment file's body (the file without its header) as one kind.
type LoadFn =
    fn(ExperimentInfo, toml::Table, &KindOptions) -> Result<Box<dyn Experiment>, LabError>;

/// A kind's name and how to load an experiment of it.
pub struct KindEntry {
    pub name: &'static str,
    load: LoadFn,
}

const fn entry<K: Kind + 'static>() -> KindEntry {
    KindEntry {
        name: K::NAME,
        load: load_as::<K>,
    }
}

fn load_as<K: Kind + 'static>(
    info: ExperimentInfo,
    body: toml::Table,
    opts: &KindOptions,
) -> Result<Box<dyn Experiment>, LabError> {
    let kind = K::parse(&info, body, opts)?;
    Ok(Box::new(Loaded { info, kind }))
}

/// Names of the registered kinds.
pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}

/// Read, parse and check the experiment `name` of `dir` as the kind its file names.
pub fn load(dir: &Path, name: &str, opts: &KindOptions) -> Result<Box<dyn Experiment>, LabError> {
    let (info, body) = experiment::read(dir, name, &names())?;
    let entry = KINDS
        .iter()
        .find(|e| e.name == info.kind)
        .expect("experiment::read accepts registered kinds only");
    (entry.load)(info, body, opts)
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
}

struct Loaded<K> {
    info: ExperimentInfo,
    kind: K,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_unique() {
        let mut n = names();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), KINDS.len());
    }
}
