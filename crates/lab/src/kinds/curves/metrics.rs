//! The rows both rate-curve kinds write: `curves.csv` (mean and 95% band per n, [`Curves`]) and
//! `estimator.csv` (how the estimator behaved, [`estimator_row`] from each fit's [`FitAudit`]).
use hmoe::rates::fit_rate;
use hmoe::record::derive_seed;
use hmoe::stats::{mean, median, Bootstrap};
use hmoe::RateFit;
use serde::{Deserialize, Serialize};

/// How the estimator behaved on the fits of one method at one n (issue 11): its starts, how
/// wide the set of near-best starts is in Voronoi loss, dead atoms, and which term drives the
/// loss. The flat-set columns are empty for records written before starts were logged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EstimatorRow {
    pub setting: String,
    pub method: String,
    pub n: usize,
    pub fits: usize,
    pub starts_mean: f64,
    pub converged_fraction: f64,
    /// Fits whose record logs every start.
    pub logged_fits: usize,
    /// Mean number of starts within `flat_tolerance` (relative) of the best objective.
    pub near_best_mean: Option<f64>,
    /// Median over fits of (largest − smallest) Voronoi loss among the near-best starts.
    pub flat_width_median: Option<f64>,
    /// Fraction of fits whose flat-set width is at least the kept estimate's loss: there the
    /// "estimator" is the optimiser's choice within a set.
    pub flat_wide_fraction: Option<f64>,
    /// Fraction of fits whose kept start began at a draw from the prior.
    pub best_from_prior_fraction: Option<f64>,
    /// Mean dead atoms per fit, and the fraction of fits with a parameter on the box.
    pub dead_atoms_mean: f64,
    pub on_box_fraction: f64,
    /// Mean Voronoi loss and its terms over the fits (`mass + spread_live + spread_dead`).
    pub voronoi_mean: f64,
    pub mass_mean: f64,
    pub spread_live_mean: f64,
    pub spread_dead_mean: f64,
}

/// Mean of one loss over the replicates at one n, with a 95% bootstrap band of the mean.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurveRow {
    pub setting: String,
    pub method: String,
    /// `voronoi` or `regression`.
    pub loss: String,
    pub n: usize,
    pub replicates: usize,
    pub mean: f64,
    pub mean_lo: f64,
    pub mean_hi: f64,
    pub median: f64,
}

/// Replicate losses by grid point: `(n, losses of the fits at n)`, grid points in order.
pub(crate) type Groups = [(f64, Vec<f64>)];

/// One curve (a setting × method of an experiment) and the seeds of its bootstraps; shared with
/// the `controls` kind so that both derive their bands and intervals the same way.
pub(crate) struct Curves<'a> {
    pub experiment: &'a str,
    pub setting: &'a str,
    pub method: &'a str,
    pub bootstrap: usize,
}

impl Curves<'_> {
    /// Mean, 95% bootstrap band of the mean, and median of one loss at every grid point.
    pub fn rows(&self, loss: &str, groups: &Groups) -> Vec<CurveRow> {
        groups
            .iter()
            .map(|(n, values)| {
                let seed = derive_seed(
                    "mean-band",
                    &[
                        self.experiment,
                        self.setting,
                        self.method,
                        loss,
                        &n.to_string(),
                    ],
                );
                let (lo, hi) = Bootstrap::new(self.bootstrap, seed).mean_band(values);
                CurveRow {
                    setting: self.setting.to_string(),
                    method: self.method.to_string(),
                    loss: loss.into(),
                    n: *n as usize,
                    replicates: values.len(),
                    mean: mean(values),
                    mean_lo: lo,
                    mean_hi: hi,
                    median: median(values),
                }
            })
            .collect()
    }

    /// The grid, the mean loss at each point, and the fitted rate of one loss.
    pub fn rate(&self, groups: &Groups, loss: &str) -> (Vec<f64>, Vec<f64>, Option<RateFit>) {
        let (ns, ls): (Vec<f64>, Vec<Vec<f64>>) = groups.iter().cloned().unzip();
        let seed = derive_seed(
            "rate-bootstrap",
            &[self.experiment, self.setting, self.method, loss],
        );
        (
            ns.clone(),
            ls.iter().map(|v| mean(v)).collect::<Vec<f64>>(),
            fit_rate(&ns, &ls, self.bootstrap, seed),
        )
    }
}

/// The estimator's behaviour per setting × method × n.
pub const ESTIMATOR_TABLE: &str = "estimator.csv";

/// One fit's share of [`EstimatorRow`].
pub(crate) struct FitAudit {
    pub starts: usize,
    pub converged: bool,
    /// (near-best starts, flat-set width, kept loss, kept start from the prior), when logged.
    pub flat: Option<(usize, f64, f64, bool)>,
    pub parts: hmoe::VoronoiParts,
    pub on_box: bool,
}

/// The flat-set share of a [`FitAudit`] of a fit that logged its starts: (near-best starts, the
/// spread of their Voronoi losses, the kept estimate's loss, whether the kept start began at a
/// prior draw). `losses[i]` is start `i`'s loss; `kept` the kept estimate's objective and θ.
pub(crate) fn flat_set(
    log: &[hmoe::StartLog],
    losses: &[f64],
    kept: (f64, &[f64]),
    d_kept: f64,
    tol: f64,
) -> (usize, f64, f64, bool) {
    let (objective, theta) = kept;
    let near: Vec<f64> = log
        .iter()
        .zip(losses)
        .filter(|(s, _)| s.objective <= objective + tol * objective.abs())
        .map(|(_, l)| *l)
        .collect();
    let lo = near.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = near.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let from_prior = log
        .iter()
        .find(|s| s.objective == objective && s.theta == theta)
        .is_some_and(|s| s.origin == hmoe::StartOrigin::Prior);
    (near.len(), hi - lo, d_kept, from_prior)
}

/// The [`EstimatorRow`] of the fits of one setting × method at one n (`a` not empty).
pub(crate) fn estimator_row(
    setting: &str,
    method: &str,
    n: usize,
    a: &[&FitAudit],
) -> EstimatorRow {
    let k = a.len() as f64;
    let avg = |f: &dyn Fn(&FitAudit) -> f64| a.iter().map(|x| f(x)).sum::<f64>() / k;
    let flat: Vec<(usize, f64, f64, bool)> = a.iter().filter_map(|x| x.flat).collect();
    let fl = flat.len() as f64;
    // The flat-set columns only where starts were logged (lazily: no median of nothing).
    let some = |f: &dyn Fn() -> f64| (!flat.is_empty()).then(f);
    EstimatorRow {
        setting: setting.to_string(),
        method: method.to_string(),
        n,
        fits: a.len(),
        starts_mean: avg(&|x| x.starts as f64),
        converged_fraction: avg(&|x| f64::from(u8::from(x.converged))),
        logged_fits: flat.len(),
        near_best_mean: some(&|| flat.iter().map(|f| f.0 as f64).sum::<f64>() / fl),
        flat_width_median: some(&|| median(&flat.iter().map(|f| f.1).collect::<Vec<_>>())),
        flat_wide_fraction: some(&|| flat.iter().filter(|f| f.1 >= f.2).count() as f64 / fl),
        best_from_prior_fraction: some(&|| flat.iter().filter(|f| f.3).count() as f64 / fl),
        dead_atoms_mean: avg(&|x| x.parts.dead_atoms as f64),
        on_box_fraction: avg(&|x| f64::from(u8::from(x.on_box))),
        voronoi_mean: avg(&|x| x.parts.mass + x.parts.spread_live + x.parts.spread_dead),
        mass_mean: avg(&|x| x.parts.mass),
        spread_live_mean: avg(&|x| x.parts.spread_live),
        spread_dead_mean: avg(&|x| x.parts.spread_dead),
    }
}
