//! The rate curves shared by the kinds that fit a model at a grid of sample sizes (`rates`, the
//! HMoE families; `controls`, the classic softmax-gated MoE): the profile (the grid and its
//! replicates), the `[report]` settings with their check, the curve and estimator rows with the
//! bootstrap bands and intervals both derive the same way, and the estimator section of the
//! summary. Each kind keeps only what differs: its identifying columns, its model and its
//! records. Not a kind itself (nothing registers it in `KINDS`).
use serde::Deserialize;

pub(crate) mod metrics;
pub(crate) mod report;

pub use metrics::{CurveRow, EstimatorRow};

/// A grid of sample sizes and a number of replicates.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub ns: Vec<usize>,
    pub replicates: u32,
}

/// The largest sample size a profile may ask for (the data of one fit must fit in memory; the
/// memory estimate refuses what the host cannot hold).
pub const MAX_N: usize = 100_000_000;

/// At least one profile, each with a grid of sizes in 2..=[`MAX_N`] and 1..=10000 replicates;
/// the message names the profile and the key.
pub fn check_profiles(
    profiles: &std::collections::BTreeMap<String, Profile>,
) -> Result<(), String> {
    if profiles.is_empty() {
        return Err("no `[profiles.<name>]`: at least one is needed (quick, paper)".into());
    }
    for (name, p) in profiles {
        let at = format!("[profiles.{name}]");
        if p.ns.is_empty() {
            return Err(format!("{at}: `ns` is empty"));
        }
        if let Some(n) = p.ns.iter().find(|n| **n < 2 || **n > MAX_N) {
            return Err(format!(
                "{at}: invalid value for `ns`: {n} (allowed: 2..={MAX_N})"
            ));
        }
        if p.replicates == 0 || p.replicates > 10_000 {
            return Err(format!(
                "{at}: invalid value for `replicates`: {} (allowed: 1..=10000)",
                p.replicates
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// The target ε of the sample complexity (THEORY.md §5).
    pub target_loss: f64,
    /// Bootstrap resamples for the slope intervals and the mean bands.
    pub bootstrap: usize,
    /// Also write `timing.csv` (wall-clock seconds per fit, by setting, method and n) and draw
    /// `seconds.png`. Times depend on the machine and its load, so `hora reproduce` reports
    /// them but never counts them as a mismatch.
    pub timing: bool,
    /// `estimator.csv`: starts whose objective is within this relative tolerance of the best
    /// are the fit's near-best set, whose spread of Voronoi losses is the flat-set width.
    pub flat_tolerance: f64,
    /// `estimator.csv`: a fitted atom whose weight is below this fraction of its cell's true
    /// weight counts as dead.
    pub dead_weight: f64,
}

impl ReportConfig {
    /// Every value in its range; the message names the key. Shared by every kind that writes
    /// the rate curves' tables (`rates`, `controls`), so none reads a value unchecked.
    pub fn check(&self) -> Result<(), String> {
        if !(self.target_loss.is_finite() && self.target_loss > 0.0) {
            return Err(format!(
                "[report]: invalid value for `target_loss`: {} (allowed: a finite value > 0)",
                self.target_loss
            ));
        }
        for (key, v) in [
            ("flat_tolerance", self.flat_tolerance),
            ("dead_weight", self.dead_weight),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1.0) {
                return Err(format!(
                    "[report]: invalid value for `{key}`: {v} (allowed: 0 < value < 1)"
                ));
            }
        }
        if self.bootstrap > 100_000 {
            return Err(format!(
                "[report]: invalid value for `bootstrap`: {} (allowed: 0..=100000)",
                self.bootstrap
            ));
        }
        Ok(())
    }
}

/// Records written before starts were logged (issue 11) leave these columns of `estimator.csv`
/// (the rates and controls kinds') empty, or computed over fewer fits; a fresh run logs every
/// start. So where a row's committed count is below the fresh one, these cells rest on logs the
/// committed records lack: `hora reproduce` reports them as filled in, not compared. Every other
/// cell of the row still is.
pub const ESTIMATOR_LOG_COVERAGE: &[crate::reproduce::LogCoverage] =
    &[crate::reproduce::LogCoverage {
        file: "estimator.csv",
        count: "logged_fits",
        columns: &[
            "logged_fits",
            "near_best_mean",
            "flat_width_median",
            "flat_wide_fraction",
            "best_from_prior_fraction",
        ],
    }];

#[cfg(test)]
mod tests {
    use serde_json::Value;

    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Typed {
        Rates(Box<hmoe::FitRecord>),
        Controls(Box<hmoe::controls::ControlRecord>),
    }

    /// Every committed record of the two fitted families reads as its record type and writes
    /// back to the same JSON: the fit outcome the two families now share
    /// (`hmoe::FitOutcome`, inline) left the stored layout where it was.
    #[test]
    fn committed_fit_records_reserialise_unchanged() {
        let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
        let mut counts = [0usize; 2];
        for exp in std::fs::read_dir(&results).unwrap().flatten() {
            let Ok(files) = std::fs::read_dir(exp.path().join("raw")) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let stored = &v["record"];
                let back = match v["kind"].as_str() {
                    Some("rates") => {
                        counts[0] += 1;
                        let r: hmoe::FitRecord = serde_json::from_value(stored.clone())
                            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                        Typed::Rates(Box::new(r))
                    }
                    Some("controls") => {
                        counts[1] += 1;
                        let r: hmoe::controls::ControlRecord =
                            serde_json::from_value(stored.clone())
                                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                        Typed::Controls(Box::new(r))
                    }
                    _ => continue,
                };
                let back_typed = back;
                let back = serde_json::to_value(&back_typed).unwrap();
                assert_eq!(&back, stored, "{}: the record moved", path.display());
                // And in the same order: the file's record keys (indented 4) against a fresh
                // serialisation's (indented 2).
                let order = |text: &str, indent: &str| {
                    let mut keys: Vec<(usize, &str)> = stored
                        .as_object()
                        .unwrap()
                        .keys()
                        .map(|k| {
                            (
                                text.find(&format!("\n{indent}\"{k}\": ")).unwrap(),
                                k.as_str(),
                            )
                        })
                        .collect();
                    keys.sort();
                    keys.into_iter().map(|(_, k)| k).collect::<Vec<_>>()
                };
                let file = std::fs::read_to_string(&path).unwrap();
                let fresh = serde_json::to_string_pretty(&back_typed).unwrap();
                assert_eq!(
                    order(&file, "    "),
                    order(&fresh, "  "),
                    "{}",
                    path.display()
                );
            }
        }
        assert!(counts[0] > 1000 && counts[1] > 100, "{counts:?}");
    }
}
