//! Where an experiment's files live under the results directory.
//!
//! Raw records are content-addressed and shared by every profile (`results/X/raw/<id>.json`), so
//! a paper run reuses the quick run's fits that it contains; everything derived from them is per
//! profile (`results/X/<profile>/`: manifest, metrics, figures, summary), or in the folder given
//! with `--out` (so a read-only archive of results can be re-analysed elsewhere).
use std::path::{Path, PathBuf};

/// What names a job's adapter folder in `raw/`: `<id>.adapter`.
pub const ADAPTER_SUFFIX: &str = ".adapter";

#[derive(Clone, Debug)]
pub struct Dirs {
    /// `results/<experiment>`.
    pub experiment: PathBuf,
    pub profile: String,
    /// `--out`: where the profile's outputs go instead of `results/<experiment>/<profile>`.
    pub out: Option<PathBuf>,
    /// The flags a hint must repeat for the user's command to mean the same thing
    /// (` --profile paper --results r`), as given.
    pub flags: String,
}

impl Dirs {
    pub fn new(results: &Path, experiment: &str, profile: &str) -> Self {
        Dirs {
            experiment: results.join(experiment),
            profile: profile.to_string(),
            out: None,
            flags: format!(" --profile {profile}"),
        }
    }
    pub fn raw(&self) -> PathBuf {
        self.experiment.join("raw")
    }
    pub fn record(&self, id: &str) -> PathBuf {
        self.raw().join(format!("{id}.json"))
    }
    /// The trained adapter of job `id`, a folder beside its record (finetune only).
    pub fn adapter(&self, id: &str) -> PathBuf {
        self.raw().join(format!("{id}{ADAPTER_SUFFIX}"))
    }
    /// Derived outputs of one profile.
    pub fn out(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| self.experiment.join(&self.profile))
    }
    pub fn manifest(&self) -> PathBuf {
        self.out().join("manifest.json")
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.out().join(name)
    }
}
