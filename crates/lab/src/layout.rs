//! Where an experiment's files live under the results directory.
//!
//! Raw records are content-addressed and shared by every profile (`results/X/raw/<id>.json`), so
//! a paper run reuses the quick run's fits that it contains; everything derived from them is per
//! profile (`results/X/<profile>/`: manifest, metrics, figures, summary).
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Dirs {
    /// `results/<experiment>`.
    pub experiment: PathBuf,
    pub profile: String,
}

impl Dirs {
    pub fn new(results: &Path, experiment: &str, profile: &str) -> Self {
        Dirs {
            experiment: results.join(experiment),
            profile: profile.to_string(),
        }
    }
    pub fn raw(&self) -> PathBuf {
        self.experiment.join("raw")
    }
    pub fn record(&self, id: &str) -> PathBuf {
        self.raw().join(format!("{id}.json"))
    }
    /// Derived outputs of one profile.
    pub fn out(&self) -> PathBuf {
        self.experiment.join(&self.profile)
    }
    pub fn manifest(&self) -> PathBuf {
        self.out().join("manifest.json")
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.out().join(name)
    }
}
