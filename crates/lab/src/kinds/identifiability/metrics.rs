//! `ratios.csv` of a single-point identifiability file: per job, the search's best start and
//! how the others did.
use super::{ProbeJob, ProbeRecord};
use serde::{Deserialize, Serialize};

/// Values below this are drawn at it (a flat set's `R` is rounding, about `10⁻¹⁶/ε`).
pub(super) const PLOT_FLOOR: f64 = 1e-17;

/// The best start of a job, and how the others did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RatioRow {
    pub family: String,
    pub setting: String,
    pub epsilon: f64,
    pub boxed: bool,
    pub starts: usize,
    pub skipped: usize,
    /// The smallest final `R` over the starts (none when every start was skipped).
    pub best_ratio: Option<f64>,
    pub best_start: String,
    /// The best start was still falling when its rounds ran out: `best_ratio` is an upper bound.
    pub upper_bound: bool,
    /// `D / ε` at the best point (how well the penalty held `D`).
    pub loss_over_epsilon: Option<f64>,
    /// `‖f_θ − f*‖` at the best point.
    pub misfit: Option<f64>,
    /// The median over starts of the final `R`.
    pub median_ratio: Option<f64>,
    /// Starts whose final `R` is within a factor 2 of the best.
    pub near_best: usize,
    /// The fitted atom that moved most at the best point (largest `w (‖ΔQ‖² + ‖ΔV‖²)`), its
    /// weight, and its gate and value distances to its true atom.
    pub moved_atom: Option<usize>,
    pub moved_weight: Option<f64>,
    pub moved_gate: Option<f64>,
    pub moved_value: Option<f64>,
    pub iterations: Option<u64>,
    pub seconds: f64,
}

impl RatioRow {
    pub(super) fn of(job: &ProbeJob, rec: &ProbeRecord) -> RatioRow {
        let s = &rec.search;
        let best = s.best();
        let mut ratios: Vec<f64> = s.results.iter().map(|r| r.ratio).collect();
        ratios.sort_by(f64::total_cmp);
        let moved = best.and_then(|b| {
            b.atoms
                .iter()
                .enumerate()
                .max_by(|x, y| {
                    let w = |a: &hmoe::probe::AtomState| {
                        a.weight * (a.gate * a.gate + a.value * a.value)
                    };
                    w(x.1).total_cmp(&w(y.1))
                })
                .map(|(k, a)| (k, *a))
        });
        RatioRow {
            family: job.family.clone(),
            setting: job.setting.clone(),
            epsilon: job.epsilon,
            boxed: job.bound.is_some(),
            starts: s.results.len(),
            skipped: s.skipped.len(),
            best_ratio: best.map(|b| b.ratio),
            best_start: best
                .map(|b| format!("{:?} {}", b.kind, b.index).to_lowercase())
                .unwrap_or_default(),
            upper_bound: best.is_some_and(|b| b.upper_bound),
            loss_over_epsilon: best.map(|b| b.loss / job.epsilon),
            misfit: best.map(|b| b.misfit),
            median_ratio: (!ratios.is_empty()).then(|| hmoe::stats::median(&ratios)),
            near_best: best.map_or(0, |b| {
                s.results
                    .iter()
                    .filter(|r| r.ratio <= 2.0 * b.ratio)
                    .count()
            }),
            moved_atom: moved.map(|m| m.0),
            moved_weight: moved.map(|m| m.1.weight),
            moved_gate: moved.map(|m| m.1.gate),
            moved_value: moved.map(|m| m.1.value),
            iterations: best.and_then(|b| b.rounds.last()).map(|r| r.iterations),
            seconds: rec.seconds,
        }
    }
}
