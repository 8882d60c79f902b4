//! The phase diagram of identifiability (issue 26): a file that crosses its families with
//! `[[sizes]]`, draws several `truths` and evaluates every search on a `heldout` sample gets,
//! instead of the single-point `ratios.csv`, one row per job (`phase-ratios.csv`) and one
//! verdict per (size, family, setting) (`phase.csv`), decided by the rule below.
//!
//! **The rule** (committed on 2026-12-03 with `experiments/identifiability-phase.toml`, before
//! any record of that experiment existed). A job's reported point is the search's best start
//! (smallest `R` on the search sample). For one truth of a (size, family, setting), over the
//! profile's `ε`:
//! - its point at one `ε` is **confirmed** when the held-out misfit and the search misfit are
//!   both at rounding level (≤ [`ROUNDING_MISFIT`]), or when held-out `R` is within a factor
//!   [`AGREE_FACTOR`] of search `R`;
//! - the truth is **flat** when the held-out misfit is at rounding level at every `ε`: `f = f*`
//!   on fresh inputs while `D = ε` (a numerically exact flat set; a construction is still owed);
//! - otherwise **unconfirmed** when some `ε`'s point is not confirmed (the search fitted its
//!   sample, not the function);
//! - otherwise **falling** when the best start was still falling at the smallest `ε` (an upper
//!   bound), or when held-out `R` falls with `ε` at a log-log slope of at least
//!   [`FALLING_SLOPE`] (least squares of `ln R` on `ln ε`): parameter interaction, or a flat set
//!   the search has not reached;
//! - otherwise **bounded**, with held-out `R` at the smallest `ε` as its value.
//!
//! A cell takes the class of at least [`MAJORITY`] of its truths (rounded up), else **mixed**.
//!
//! **The exact search** (`conditions = "algebraic"`, `hmoe::exact`; added with
//! `experiments/identifiability-exact.toml`, before any record of it). Its search drives the
//! algebraic conditions for `f = f*` to zero instead of a sample's misfit, so its "search `R`"
//! is that residual over `D`, not comparable with held-out `R`. The same rule applies with two
//! changes: a point is **confirmed** unless its residual is at rounding level while its
//! held-out misfit is not (conditions met but `f ≠ f*`: the conditions would be wrong), and
//! **falling** reads the slope and the upper bound of the residual's `R`. **flat** is unchanged
//! and means a constructed member: the exact search returned a point with `f = f*` on fresh
//! inputs at every `ε`. **bounded** means the exact search settled away from a member.
use super::{HeldOut, ProbeJob, ProbeRecord};
use crate::kind::Records;
use crate::markdown;
use crate::plot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A misfit `‖f_θ − f*‖` at or below this is zero to rounding (the committed flat sets reach
/// 4e-17 to 6e-17; the bounded families' best points 1e-7 to 1e-4).
pub const ROUNDING_MISFIT: f64 = 1e-10;
/// Held-out and search `R` agree when within this factor of each other.
pub const AGREE_FACTOR: f64 = 2.0;
/// `R ∝ ε^s` with `s` at least this is falling (a factor 3.2 over two decades of `ε`).
pub const FALLING_SLOPE: f64 = 0.25;
/// The share of a cell's truths that must share a class for the cell to take it.
pub const MAJORITY: f64 = 0.8;

/// One job: its search's best start, and that start on the held-out sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseRatioRow {
    pub size: String,
    pub family: String,
    pub setting: String,
    pub truth: usize,
    pub epsilon: f64,
    pub boxed: bool,
    /// Free parameters of the family at this size.
    pub dim: usize,
    pub starts: usize,
    pub skipped: usize,
    pub best_start: String,
    pub best_ratio: Option<f64>,
    pub upper_bound: bool,
    pub misfit: Option<f64>,
    pub loss_over_epsilon: Option<f64>,
    pub heldout_inputs: usize,
    pub heldout_ratio: Option<f64>,
    pub heldout_misfit: Option<f64>,
    /// The rule's "confirmed" for this point.
    pub confirmed: bool,
    /// The search ran on the algebraic conditions (the exact search; left out of the table
    /// when false, as every phase-profile row is).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub algebraic: bool,
    pub iterations: Option<u64>,
    pub seconds: f64,
}

impl PhaseRatioRow {
    pub fn of(job: &ProbeJob, rec: &ProbeRecord) -> PhaseRatioRow {
        let s = &rec.search;
        let best = s
            .results
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.ratio.total_cmp(&b.1.ratio));
        let held = |f: fn(&HeldOut) -> &Vec<f64>| {
            best.and_then(|(k, _)| rec.heldout.as_ref().and_then(|h| f(h).get(k).copied()))
        };
        let heldout_ratio = held(|h| &h.ratios);
        let heldout_misfit = held(|h| &h.misfits);
        let misfit = best.map(|(_, b)| b.misfit);
        let best_ratio = best.map(|(_, b)| b.ratio);
        let algebraic = job.probe.conditions == super::Conditions::Algebraic;
        PhaseRatioRow {
            size: job.size.clone(),
            family: job.family.clone(),
            setting: job.setting.clone(),
            truth: job.truth,
            epsilon: job.epsilon,
            boxed: job.bound.is_some(),
            dim: rec.dim,
            starts: s.results.len(),
            skipped: s.skipped.len(),
            best_start: best
                .map(|(_, b)| format!("{:?} {}", b.kind, b.index).to_lowercase())
                .unwrap_or_default(),
            best_ratio,
            upper_bound: best.is_some_and(|(_, b)| b.upper_bound),
            misfit,
            loss_over_epsilon: best.map(|(_, b)| b.loss / job.epsilon),
            heldout_inputs: rec.heldout.as_ref().map_or(0, |h| h.inputs),
            heldout_ratio,
            heldout_misfit,
            confirmed: if algebraic {
                confirmed_exact(misfit, heldout_misfit)
            } else {
                confirmed(misfit, heldout_misfit, best_ratio, heldout_ratio)
            },
            algebraic,
            iterations: best
                .and_then(|(_, b)| b.rounds.last())
                .map(|r| r.iterations),
            seconds: rec.seconds,
        }
    }
}

/// The rule's "confirmed": both misfits at rounding, or the two `R` within [`AGREE_FACTOR`].
pub fn confirmed(
    misfit: Option<f64>,
    heldout_misfit: Option<f64>,
    ratio: Option<f64>,
    heldout_ratio: Option<f64>,
) -> bool {
    match (misfit, heldout_misfit, ratio, heldout_ratio) {
        (Some(m), Some(hm), _, _) if m <= ROUNDING_MISFIT && hm <= ROUNDING_MISFIT => true,
        (_, _, Some(r), Some(hr)) if r > 0.0 && hr > 0.0 => {
            let q = hr / r;
            (1.0 / AGREE_FACTOR..=AGREE_FACTOR).contains(&q)
        }
        _ => false,
    }
}

/// The exact search's "confirmed": not (conditions met to rounding while f ≠ f* on the held-out
/// inputs).
pub fn confirmed_exact(residual: Option<f64>, heldout_misfit: Option<f64>) -> bool {
    !(residual.is_some_and(|m| m <= ROUNDING_MISFIT)
        && heldout_misfit.is_none_or(|m| m > ROUNDING_MISFIT))
}

/// The class of one truth of a cell under the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Flat,
    Unconfirmed,
    Falling,
    Bounded,
    Mixed,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Flat => "flat",
            Phase::Unconfirmed => "unconfirmed",
            Phase::Falling => "falling",
            Phase::Bounded => "bounded",
            Phase::Mixed => "mixed",
        }
    }
}

/// Least-squares slope of `ln y` on `ln x` (`None` with fewer than two distinct `x` or a
/// non-positive value).
pub fn log_slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.iter().any(|(x, y)| !(*x > 0.0 && *y > 0.0)) {
        return None;
    }
    let (lx, ly): (Vec<f64>, Vec<f64>) = points.iter().map(|(x, y)| (x.ln(), y.ln())).unzip();
    hmoe::stats::ols(&lx, &ly).map(|(slope, _)| slope)
}

/// One truth's class and its numbers: `(phase, slope of held-out R on ε, held-out R at the
/// smallest ε)`. `rows` are that truth's jobs, one per `ε`.
pub fn classify(rows: &[&PhaseRatioRow]) -> (Phase, Option<f64>, Option<f64>) {
    let mut rows: Vec<&PhaseRatioRow> = rows.to_vec();
    rows.sort_by(|a, b| a.epsilon.total_cmp(&b.epsilon));
    let smallest = rows.first();
    let at_smallest = smallest.and_then(|r| r.heldout_ratio);
    // The exact search's R is its residual's (what it drives to zero); the sampled one's is
    // held-out R.
    let points: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| {
            let ratio = if r.algebraic {
                r.best_ratio
            } else {
                r.heldout_ratio
            };
            ratio.map(|h| (r.epsilon, h))
        })
        .collect();
    let slope = if points.len() == rows.len() {
        log_slope(&points)
    } else {
        None
    };
    let phase = if !rows.is_empty()
        && rows
            .iter()
            .all(|r| r.heldout_misfit.is_some_and(|m| m <= ROUNDING_MISFIT))
    {
        Phase::Flat
    } else if rows.iter().any(|r| !r.confirmed) || rows.is_empty() {
        Phase::Unconfirmed
    } else if smallest.is_some_and(|r| r.upper_bound) || slope.is_some_and(|s| s >= FALLING_SLOPE) {
        Phase::Falling
    } else {
        Phase::Bounded
    };
    (phase, slope, at_smallest)
}

/// One cell of the phase diagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseRow {
    pub size: String,
    pub family: String,
    pub setting: String,
    pub dim: usize,
    /// Truths with every `ε` of the profile recorded.
    pub truths: usize,
    pub flat: usize,
    pub unconfirmed: usize,
    pub falling: usize,
    pub bounded: usize,
    pub phase: Phase,
    /// Over the truths: the median slope of `ln R_heldout` on `ln ε`, and the smallest,
    /// median and largest held-out `R` at the smallest `ε`.
    pub median_slope: Option<f64>,
    pub min_heldout_ratio: Option<f64>,
    pub median_heldout_ratio: Option<f64>,
    pub max_heldout_ratio: Option<f64>,
}

fn median(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| hmoe::stats::median(v))
}

/// The cells, in the order their first rows come; a truth counts only with all `epsilons`.
pub fn cells(rows: &[PhaseRatioRow], epsilons: usize) -> Vec<PhaseRow> {
    let mut order: Vec<(String, String, String)> = Vec::new();
    let mut by_truth: BTreeMap<(String, String, String), BTreeMap<usize, Vec<&PhaseRatioRow>>> =
        BTreeMap::new();
    for r in rows {
        let key = (r.size.clone(), r.family.clone(), r.setting.clone());
        if !by_truth.contains_key(&key) {
            order.push(key.clone());
        }
        by_truth
            .entry(key)
            .or_default()
            .entry(r.truth)
            .or_default()
            .push(r);
    }
    order
        .into_iter()
        .map(|key| {
            let truths: Vec<&Vec<&PhaseRatioRow>> = by_truth[&key]
                .values()
                .filter(|v| v.len() == epsilons)
                .collect();
            let classes: Vec<(Phase, Option<f64>, Option<f64>)> =
                truths.iter().map(|v| classify(v)).collect();
            let count = |p: Phase| classes.iter().filter(|c| c.0 == p).count();
            let need = (MAJORITY * classes.len() as f64).ceil() as usize;
            let phase = [
                Phase::Flat,
                Phase::Unconfirmed,
                Phase::Falling,
                Phase::Bounded,
            ]
            .into_iter()
            .find(|p| !classes.is_empty() && count(*p) >= need.max(1))
            .unwrap_or(Phase::Mixed);
            let slopes: Vec<f64> = classes.iter().filter_map(|c| c.1).collect();
            let held: Vec<f64> = classes.iter().filter_map(|c| c.2).collect();
            let dim = truths.first().and_then(|v| v.first()).map_or(0, |r| r.dim);
            PhaseRow {
                size: key.0,
                family: key.1,
                setting: key.2,
                dim,
                truths: classes.len(),
                flat: count(Phase::Flat),
                unconfirmed: count(Phase::Unconfirmed),
                falling: count(Phase::Falling),
                bounded: count(Phase::Bounded),
                phase,
                median_slope: median(&slopes),
                min_heldout_ratio: held.iter().copied().min_by(f64::total_cmp),
                median_heldout_ratio: median(&held),
                max_heldout_ratio: held.iter().copied().max_by(f64::total_cmp),
            }
        })
        .collect()
}

/// The rows of every finished job.
pub fn ratio_rows(done: &Records<'_, super::IdentifiabilityKind>) -> Vec<PhaseRatioRow> {
    done.iter()
        .map(|d| PhaseRatioRow::of(d.job, &d.record))
        .collect()
}

/// The phase tables of the summary: per setting, sizes down and families across, each cell
/// its phase, the count of truths behind it and the median held-out `R` at the smallest `ε`.
///
/// `algebraic`: the searches ran on the algebraic conditions (the exact search), whose rule
/// the closing paragraph states instead.
pub fn summary(cells: &[PhaseRow], sizes: &[String], families: &[&str], algebraic: bool) -> String {
    let mut out = String::new();
    let settings: Vec<&str> = {
        let mut s: Vec<&str> = Vec::new();
        for c in cells {
            if !s.contains(&c.setting.as_str()) {
                s.push(&c.setting);
            }
        }
        s
    };
    for setting in settings {
        let header: Vec<String> = std::iter::once("size".to_string())
            .chain(families.iter().map(|f| f.to_string()))
            .collect();
        let body: Vec<Vec<String>> = sizes
            .iter()
            .filter_map(|size| {
                let row: Vec<String> = families
                    .iter()
                    .map(|f| {
                        cells
                            .iter()
                            .find(|c| c.setting == setting && c.size == *size && c.family == *f)
                            .map_or(String::new(), |c| {
                                let r = c
                                    .median_heldout_ratio
                                    .map_or(String::new(), |r| format!(", R {}", plot::number(r)));
                                format!("{} ({}{r})", c.phase.name(), cell_counts(c))
                            })
                    })
                    .collect();
                row.iter()
                    .any(|c| !c.is_empty())
                    .then(|| std::iter::once(size.clone()).chain(row).collect())
            })
            .collect();
        if body.is_empty() {
            continue;
        }
        out.push_str(&format!("\n### {setting}: phase by size and family\n\n"));
        out.push_str(&markdown::table(&header, body));
    }
    let rule = if algebraic {
        format!(
            "The rule of the exact search (crates/lab/src/kinds/identifiability/phase.rs): `flat` = \
             a constructed member, held-out misfit ≤ {ROUNDING_MISFIT:e} at every ε; \
             `unconfirmed` = the conditions met to rounding but not f = f* on the held-out inputs \
             at some ε; `falling` = the conditions' residual R still falling at the smallest ε, \
             or falling as ε^s with s ≥ {FALLING_SLOPE}; `bounded` = the exact search settled \
             away from a member. `phase.csv` has every count, slope and R; `phase-ratios.csv` \
             every job."
        )
    } else {
        format!(
            "The rule (crates/lab/src/kinds/identifiability/\
             phase.rs): `flat` = held-out misfit ≤ {ROUNDING_MISFIT:e} at every ε; `unconfirmed` = \
             held-out and search R differ by more than {AGREE_FACTOR}× at some ε; `falling` = still \
             falling at the smallest ε, or R ∝ ε^s with s ≥ {FALLING_SLOPE}; `bounded` = the rest. \
             `phase.csv` has every count, slope and R; `phase-ratios.csv` every job."
        )
    };
    out.push_str(&format!(
        "\nEach cell: the phase its truths share (at least {:.0}% of them, else `mixed`), how \
         many of its truths are in that phase out of those with every ε recorded (for `mixed`, \
         how many are in each class), and the median held-out R at the smallest ε. {rule}\n",
        MAJORITY * 100.0
    ));
    out
}

/// What each size has cost so far: jobs with a record, the free parameters of its families, and
/// the median and total seconds of a job (one core each), so that the rest of a profile that
/// runs over several sessions can be planned.
pub fn cost_table(rows: &[PhaseRatioRow], sizes: &[String]) -> String {
    let body: Vec<Vec<String>> = sizes
        .iter()
        .filter_map(|size| {
            let of: Vec<&PhaseRatioRow> = rows.iter().filter(|r| &r.size == size).collect();
            if of.is_empty() {
                return None;
            }
            let secs: Vec<f64> = of.iter().map(|r| r.seconds).collect();
            let total: f64 = secs.iter().sum();
            let dims = (
                of.iter().map(|r| r.dim).min().unwrap_or(0),
                of.iter().map(|r| r.dim).max().unwrap_or(0),
            );
            Some(vec![
                size.clone(),
                of.len().to_string(),
                format!("{}–{}", dims.0, dims.1),
                format!("{:.1}", median(&secs).unwrap_or(f64::NAN)),
                format!("{total:.0}"),
            ])
        })
        .collect();
    if body.is_empty() {
        return String::new();
    }
    let header = [
        "size",
        "jobs recorded",
        "parameters",
        "median s a job",
        "total s",
    ];
    format!("\n### Cost by size\n\n{}\n", markdown::table(&header, body))
}

/// The phase diagram as a figure (`phase.png`, `phase.svg`): sizes down, families across, each
/// cell coloured by its phase, with its count of truths and median held-out R at the smallest ε.
pub fn figure(
    cells: &[PhaseRow],
    sizes: &[String],
    families: &[&str],
    stem: &std::path::Path,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    use plotters::style::RGBColor;
    let colour = |p: Phase| match p {
        Phase::Flat => plot::PALETTE[0],
        Phase::Falling => RGBColor(230, 159, 0),
        Phase::Mixed => RGBColor(204, 121, 167),
        Phase::Unconfirmed => plot::GREY,
        Phase::Bounded => plot::PALETTE[1],
    };
    let rows: Vec<String> = sizes
        .iter()
        .filter(|s| cells.iter().any(|c| &c.size == *s))
        .cloned()
        .collect();
    let grid = plot::Grid {
        title: "Identifiability by size: the phase most truths share, truths in it, median \
                held-out R at the smallest ε"
            .into(),
        columns: families.iter().map(|f| f.to_string()).collect(),
        cells: rows
            .iter()
            .map(|size| {
                families
                    .iter()
                    .map(|f| {
                        cells
                            .iter()
                            .find(|c| &c.size == size && c.family == *f)
                            .map(|c| {
                                let mut lines = match c.phase {
                                    Phase::Mixed => vec!["mixed:".to_string(), cell_counts(c)],
                                    p => vec![format!("{} {}", p.name(), cell_counts(c))],
                                };
                                if let Some(r) = c.median_heldout_ratio {
                                    lines.push(format!("R {}", plot::number(r)));
                                }
                                (colour(c.phase), lines)
                            })
                    })
                    .collect()
            })
            .collect(),
        rows,
        legend: [
            Phase::Flat,
            Phase::Falling,
            Phase::Mixed,
            Phase::Unconfirmed,
            Phase::Bounded,
        ]
        .into_iter()
        .map(|p| (colour(p), p.name().to_string()))
        .collect(),
    };
    plot::save_grid(stem, &grid)
}

/// How many of the cell's truths are in its phase (`4/5`), or for `mixed` how many are in each
/// class (`flat 1, falling 3, bounded 1`).
fn cell_counts(c: &PhaseRow) -> String {
    let n = match c.phase {
        Phase::Flat => c.flat,
        Phase::Unconfirmed => c.unconfirmed,
        Phase::Falling => c.falling,
        Phase::Bounded => c.bounded,
        Phase::Mixed => {
            return [
                (Phase::Flat, c.flat),
                (Phase::Unconfirmed, c.unconfirmed),
                (Phase::Falling, c.falling),
                (Phase::Bounded, c.bounded),
            ]
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| format!("{} {n}", p.name()))
            .collect::<Vec<_>>()
            .join(", ")
        }
    };
    format!("{n}/{}", c.truths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(truth: usize, epsilon: f64, ratio: f64, held: f64, upper: bool) -> PhaseRatioRow {
        let misfit = ratio * epsilon;
        let heldout_misfit = held * epsilon;
        PhaseRatioRow {
            size: "size s".into(),
            family: "f".into(),
            setting: "overspecified".into(),
            truth,
            epsilon,
            boxed: true,
            dim: 10,
            starts: 4,
            skipped: 0,
            best_start: "random 0".into(),
            best_ratio: Some(ratio),
            upper_bound: upper,
            misfit: Some(misfit),
            loss_over_epsilon: Some(1.0),
            heldout_inputs: 20000,
            heldout_ratio: Some(held),
            heldout_misfit: Some(heldout_misfit),
            confirmed: confirmed(Some(misfit), Some(heldout_misfit), Some(ratio), Some(held)),
            algebraic: false,
            iterations: Some(10),
            seconds: 1.0,
        }
    }

    /// A row of the exact search: its residual's R, and held-out R at its point.
    fn exact_row(epsilon: f64, residual_ratio: f64, held: f64, upper: bool) -> PhaseRatioRow {
        let mut r = row(0, epsilon, residual_ratio, held, upper);
        r.algebraic = true;
        r.confirmed = confirmed_exact(r.misfit, r.heldout_misfit);
        r
    }

    /// The exact search's classes: a member (residual and held-out misfit at rounding) is flat;
    /// a residual that settles is bounded whatever held-out R says (the two are not compared);
    /// a residual at rounding with f ≠ f* on fresh inputs is unconfirmed; a falling residual
    /// falls.
    #[test]
    fn the_exact_search_is_read_by_its_own_residual() {
        let eps = [0.1, 0.01, 0.001];
        let class = |f: &dyn Fn(f64) -> PhaseRatioRow| {
            let rows: Vec<PhaseRatioRow> = eps.iter().map(|e| f(*e)).collect();
            let refs: Vec<&PhaseRatioRow> = rows.iter().collect();
            classify(&refs).0
        };
        assert_eq!(
            class(&|e| exact_row(e, 1e-16 / e, 3e-16 / e, false)),
            Phase::Flat
        );
        assert_eq!(class(&|e| exact_row(e, 0.2, 1e-3, false)), Phase::Bounded);
        assert_eq!(
            class(&|e| exact_row(e, 1e-16 / e, 1e-3, false)),
            Phase::Unconfirmed
        );
        assert_eq!(
            class(&|e| exact_row(e, e.sqrt(), 1e-3, false)),
            Phase::Falling
        );
        assert_eq!(
            class(&|e| exact_row(e, 0.2, 1e-3, e < 0.005)),
            Phase::Falling
        );
    }

    #[test]
    fn the_slope_of_a_power_law_is_its_exponent() {
        let pts: Vec<(f64, f64)> = [0.1f64, 0.01, 0.001]
            .iter()
            .map(|e| (*e, 3.0 * e * e.sqrt()))
            .collect();
        assert!((log_slope(&pts).unwrap() - 1.5).abs() < 1e-12);
        assert_eq!(log_slope(&[(0.1, 1.0)]), None);
        assert_eq!(log_slope(&[(0.1, 0.0), (0.01, 1.0)]), None);
    }

    #[test]
    fn each_class_of_the_rule() {
        let eps = [0.1, 0.01, 0.001];
        let class = |f: &dyn Fn(f64) -> PhaseRatioRow| {
            let rows: Vec<PhaseRatioRow> = eps.iter().map(|e| f(*e)).collect();
            let refs: Vec<&PhaseRatioRow> = rows.iter().collect();
            classify(&refs)
        };
        // A flat set: R = 1e-16/ε on both samples.
        assert_eq!(
            class(&|e| row(0, e, 1e-16 / e, 2e-16 / e, false)).0,
            Phase::Flat
        );
        // Bounded: R ≈ 3e-4 everywhere, held-out within a factor 2.
        let (p, s, r) = class(&|e| row(0, e, 3e-4, 3.3e-4 * (1.0 + e), false));
        assert_eq!(p, Phase::Bounded);
        assert!(s.unwrap().abs() < 0.05 && (r.unwrap() - 3.3e-4).abs() < 1e-6);
        // Falling as ε^0.5.
        assert_eq!(
            class(&|e| row(0, e, e.sqrt(), e.sqrt(), false)).0,
            Phase::Falling
        );
        // Settled values but still falling at the smallest ε.
        assert_eq!(
            class(&|e| row(0, e, 3e-4, 3e-4, e < 0.005)).0,
            Phase::Falling
        );
        // The search's small R does not survive fresh inputs.
        assert_eq!(
            class(&|e| row(0, e, 1e-9, 1e-5, false)).0,
            Phase::Unconfirmed
        );
    }

    #[test]
    fn a_cell_takes_the_class_of_four_truths_in_five_else_mixed() {
        // Truths in `falling` fall as ε; the others are bounded at 1e-3.
        let rows = |falling: &[usize]| -> Vec<PhaseRatioRow> {
            let mut rows = Vec::new();
            for t in 0..5 {
                for e in [0.1, 0.01] {
                    let r = if falling.contains(&t) { e } else { 1e-3 };
                    rows.push(row(t, e, r, r, false));
                }
            }
            rows
        };
        let c = cells(&rows(&[4]), 2);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].phase, c[0].bounded, c[0].falling, c[0].truths),
            (Phase::Bounded, 4, 1, 5)
        );
        assert_eq!(cells(&rows(&[3, 4]), 2)[0].phase, Phase::Mixed);
        // A truth missing an ε does not count: of the four left, 4 bounded is a phase, 3 of 4
        // (under 80%) is not.
        let without_3 = |mut rows: Vec<PhaseRatioRow>| {
            rows.retain(|r| !(r.truth == 3 && r.epsilon == 0.01));
            cells(&rows, 2).remove(0)
        };
        let c = without_3(rows(&[]));
        assert_eq!((c.phase, c.truths, c.bounded), (Phase::Bounded, 4, 4));
        let c = without_3(rows(&[4]));
        assert_eq!((c.phase, c.truths, c.falling), (Phase::Mixed, 4, 1));
    }

    /// The figure draws every cell's class and counts (a mixed cell with its composition) and
    /// leaves out sizes with no cell.
    #[test]
    fn the_phase_figure_names_every_cell() {
        let mut rows = Vec::new();
        for t in 0..5 {
            for e in [0.1, 0.01] {
                let r = if t >= 3 { e } else { 1e-3 };
                rows.push(row(t, e, r, r, false));
            }
        }
        let cells = cells(&rows, 2);
        assert_eq!(cells[0].phase, Phase::Mixed);
        let dir = tempfile::tempdir().unwrap();
        let sizes = vec!["size s".to_string(), "unrun".to_string()];
        let files = figure(&cells, &sizes, &["f", "g"], &dir.path().join("phase")).unwrap();
        assert_eq!(files.len(), 2);
        let svg = std::fs::read_to_string(dir.path().join("phase.svg")).unwrap();
        for text in ["mixed:", "falling 2, bounded 3", "R 0.001", "size s"] {
            assert!(svg.contains(text), "`{text}` not drawn");
        }
        assert!(!svg.contains("unrun"));
    }
}
