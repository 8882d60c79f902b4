//! The rows both rate-curve kinds write: the shared columns of `metrics.csv` ([`FitColumns`],
//! after each family's own), `curves.csv` (mean and 95% band per n, [`Curves`]), the rate
//! statistics of `rates.csv` ([`RateStats`], after each family's own columns) and
//! `estimator.csv` (how the estimator behaved, [`estimator_row`] from each fit's [`FitAudit`]).
//! A family says what differs through [`Fitted`].
use crate::kind::Done;
use crate::layout::Dirs;
use hmoe::rates::{fit_rate, sample_complexity};
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

/// A fitted model family as the rate-curve tables see it (`rates`: the HMoE families;
/// `controls`: the softmax-gated MoE): its curves, where a job sits on them, its records'
/// outcome and losses, and the columns that identify a fit and a curve. Everything else of
/// `metrics.csv`, `curves.csv`, `rates.csv` and `estimator.csv` is [`write_tables`]'.
pub(crate) trait Fitted: Sync {
    type Job: Sync;
    type Record: Sync;
    /// The columns of a fit's `metrics.csv` row before [`FitColumns`] (its id first).
    type Ids: Serialize + Send;
    /// The columns after them (an empty struct when there are none).
    type Tail: Serialize + Send;
    /// The columns of a curve's `rates.csv` row before [`RateStats`].
    type CurveIds: Serialize;
    /// The experiment's name (it seeds the bootstraps) and its `[report]` settings.
    fn experiment(&self) -> &str;
    fn report(&self) -> &super::ReportConfig;
    /// The curves in table order: (setting, method, the curve's `rates.csv` columns).
    fn curves(&self) -> Vec<(String, String, Self::CurveIds)>;
    /// Where a job sits: its curve (setting, method), its sample size and replicate.
    fn place(job: &Self::Job) -> (String, String, usize, u32);
    /// The box every fitted parameter lies in.
    fn bound(job: &Self::Job) -> f64;
    fn outcome(record: &Self::Record) -> &hmoe::FitOutcome;
    /// The estimate's parameters.
    fn theta(record: &Self::Record) -> &[f64];
    fn losses(&self, record: &Self::Record) -> hmoe::Result<hmoe::Losses>;
    /// For the estimator's audit: the Voronoi loss's parts, every logged start's loss (in the
    /// order run), and the kept estimate's loss.
    fn audit_losses(&self, record: &Self::Record) -> (hmoe::VoronoiParts, Vec<f64>, f64);
    fn ids(&self, done: &Done<'_, Self::Job, Self::Record>) -> (Self::Ids, Self::Tail);
}

/// One row of `metrics.csv`: the family's columns, the shared ones, the family's tail.
pub(crate) type FitRow<F> = (<F as Fitted>::Ids, FitColumns, <F as Fitted>::Tail);

/// A curve: (setting, method).
type CurveKey = (String, String);

/// A record's curve, its sample size, and its audit.
type Audited = (CurveKey, usize, FitAudit);

/// The columns of `metrics.csv` every family writes (no timings: metrics repeat byte for byte
/// across reruns).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitColumns {
    pub n: usize,
    pub replicate: u32,
    pub voronoi: f64,
    pub regression: f64,
    pub objective: f64,
    pub objective_at_truth: f64,
    pub grad_norm: f64,
    pub iterations: u64,
    pub converged: bool,
    pub starts: usize,
    /// `ok` or `guard_failed`.
    pub status: String,
}

impl FitColumns {
    /// Whether the fit passed the truth-objective guard (only those are averaged into a loss).
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }
}

/// The `metrics.csv` rows of every record whose losses compute, in record order, each with its
/// curve (setting, method); a record whose losses do not is skipped with a message naming its
/// file.
fn fit_rows<F: Fitted>(
    family: &F,
    done: &[Done<'_, F::Job, F::Record>],
    dirs: &Dirs,
) -> Vec<(CurveKey, FitRow<F>)> {
    use rayon::prelude::*;
    let computed: Vec<Option<(CurveKey, FitRow<F>)>> = done
        .par_iter()
        .map(|d| match family.losses(&d.record) {
            Ok(l) => {
                let o = F::outcome(&d.record);
                let (setting, method, n, replicate) = F::place(d.job);
                let (ids, tail) = family.ids(d);
                let fit = FitColumns {
                    n,
                    replicate,
                    voronoi: l.voronoi,
                    regression: l.regression,
                    objective: o.objective,
                    objective_at_truth: o.objective_at_truth,
                    grad_norm: o.grad_norm,
                    iterations: o.iterations,
                    converged: o.converged,
                    starts: o.starts,
                    status: match o.status {
                        hmoe::FitStatus::Ok => "ok".into(),
                        hmoe::FitStatus::GuardFailed => "guard_failed".into(),
                    },
                };
                Some(((setting, method), (ids, fit, tail)))
            }
            Err(e) => {
                eprintln!("skipping record {}: {e}", dirs.record(d.id).display());
                None
            }
        })
        .collect();
    computed.into_iter().flatten().collect()
}

/// Write `metrics.csv`, `curves.csv`, `rates.csv` and `estimator.csv` of a profile (grid
/// `ns`); returns the files and the metric rows (for a family's further tables).
pub(crate) fn write_tables<F: Fitted>(
    family: &F,
    ns: &[usize],
    done: &[Done<'_, F::Job, F::Record>],
    dirs: &Dirs,
) -> anyhow::Result<(Vec<std::path::PathBuf>, Vec<FitRow<F>>)> {
    use crate::store::write_table;
    let placed = fit_rows(family, done, dirs);
    let report = family.report();
    let mut curves = Vec::new();
    let mut rates: Vec<RateRow<F::CurveIds>> = Vec::new();
    let mut audits = Vec::new();
    // Each record placed once, not once per curve and grid point.
    let audited: Vec<Audited> = {
        use rayon::prelude::*;
        done.par_iter()
            .map(|d| {
                let (setting, method, n, _) = F::place(d.job);
                ((setting, method), n, audit(family, d))
            })
            .collect()
    };
    for (setting, method, ids) in family.curves() {
        let key = (setting.clone(), method.clone());
        let mine: Vec<&FitColumns> = placed
            .iter()
            .filter(|(curve, _)| *curve == key)
            .map(|(_, (_, fit, _))| fit)
            .collect();
        let at = Curves {
            experiment: family.experiment(),
            setting: &setting,
            method: &method,
            bootstrap: report.bootstrap,
        };
        let (c, stats) = at.tables(ns, &mine, report.target_loss);
        curves.extend(c);
        rates.push((ids, stats));
        for &n in ns {
            let a: Vec<&FitAudit> = audited
                .iter()
                .filter(|(curve, dn, _)| *curve == key && *dn == n)
                .map(|(_, _, a)| a)
                .collect();
            if !a.is_empty() {
                audits.push(estimator_row(&setting, &method, n, &a));
            }
        }
    }
    let rows: Vec<FitRow<F>> = placed.into_iter().map(|(_, row)| row).collect();
    let files = vec![
        write_table(dirs, "metrics.csv", &rows)?,
        write_table(dirs, "curves.csv", &curves)?,
        write_table(dirs, "rates.csv", &rates)?,
        write_table(dirs, ESTIMATOR_TABLE, &audits)?,
    ];
    Ok((files, rows))
}

/// One fit's share of its [`EstimatorRow`].
fn audit<F: Fitted>(family: &F, d: &Done<'_, F::Job, F::Record>) -> FitAudit {
    let (r, o, report) = (&d.record, F::outcome(&d.record), family.report());
    let (parts, losses, kept) = family.audit_losses(r);
    let flat = (!o.starts_log.is_empty()).then(|| {
        flat_set(
            &o.starts_log,
            &losses,
            (o.objective, F::theta(r)),
            kept,
            report.flat_tolerance,
        )
    });
    FitAudit {
        starts: o.starts,
        converged: o.converged,
        flat,
        parts,
        on_box: o.max_abs_param >= F::bound(d.job) * (1.0 - 1e-12),
    }
}

/// The rate of one curve in `rates.csv`, after the family's identifying columns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RateStats {
    pub fits: usize,
    /// Grid points with at least one usable loss.
    pub points: usize,
    pub slope: Option<f64>,
    pub slope_lo: Option<f64>,
    pub slope_hi: Option<f64>,
    pub intercept: Option<f64>,
    pub median_slope: Option<f64>,
    pub median_slope_lo: Option<f64>,
    pub median_slope_hi: Option<f64>,
    pub median_intercept: Option<f64>,
    pub regression_slope: Option<f64>,
    pub regression_slope_lo: Option<f64>,
    pub regression_slope_hi: Option<f64>,
    pub regression_intercept: Option<f64>,
    pub converged_fraction: f64,
    pub guard_pass_fraction: f64,
    pub guard_failures: usize,
    pub target_loss: f64,
    /// Smallest grid n whose mean Voronoi loss is below the target.
    pub n_at_target: Option<f64>,
    /// Where the fitted power law crosses the target.
    pub n_at_target_extrapolated: Option<f64>,
}

/// One row of `rates.csv`: the family's identifying columns, then the shared statistics.
pub(crate) type RateRow<I> = (I, RateStats);

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

    /// The `curves.csv` rows (both losses) and the rate statistics of this curve, from its fits
    /// (`fits`: every fit of the curve, guard failures included) on the grid `ns`.
    pub fn tables(
        &self,
        ns: &[usize],
        fits: &[&FitColumns],
        target_loss: f64,
    ) -> (Vec<CurveRow>, RateStats) {
        let by_n = |f: fn(&FitColumns) -> f64| -> Vec<(f64, Vec<f64>)> {
            ns.iter()
                .map(|&n| {
                    (
                        n as f64,
                        // A fit that failed the truth-objective guard did not optimise: it is
                        // counted in `guard_failures`, never averaged into a loss.
                        fits.iter()
                            .filter(|r| r.n == n && r.ok())
                            .map(|r| f(r))
                            .collect::<Vec<f64>>(),
                    )
                })
                .filter(|(_, v)| !v.is_empty())
                .collect()
        };
        let (voronoi, regression) = (by_n(|r| r.voronoi), by_n(|r| r.regression));
        let mut curves = self.rows("voronoi", &voronoi);
        curves.extend(self.rows("regression", &regression));
        let (grid, means, vf) = self.rate(&voronoi, "voronoi");
        let (_, _, rf) = self.rate(&regression, "regression");
        let sc = sample_complexity(&grid, &means, vf.as_ref(), target_loss);
        let count = fits.len();
        let frac = |k: usize| {
            if count == 0 {
                0.0
            } else {
                k as f64 / count as f64
            }
        };
        let guard_failures = fits.iter().filter(|r| !r.ok()).count();
        let stats = RateStats {
            fits: count,
            points: vf.as_ref().map_or(grid.len(), |f| f.points),
            slope: vf.as_ref().map(|f| f.slope),
            slope_lo: vf.as_ref().map(|f| f.slope_lo),
            slope_hi: vf.as_ref().map(|f| f.slope_hi),
            intercept: vf.as_ref().map(|f| f.intercept),
            median_slope: vf.as_ref().map(|f| f.median_slope),
            median_slope_lo: vf.as_ref().map(|f| f.median_slope_lo),
            median_slope_hi: vf.as_ref().map(|f| f.median_slope_hi),
            median_intercept: vf.as_ref().map(|f| f.median_intercept),
            regression_slope: rf.as_ref().map(|f| f.slope),
            regression_slope_lo: rf.as_ref().map(|f| f.slope_lo),
            regression_slope_hi: rf.as_ref().map(|f| f.slope_hi),
            regression_intercept: rf.as_ref().map(|f| f.intercept),
            converged_fraction: frac(fits.iter().filter(|r| r.converged).count()),
            guard_pass_fraction: frac(count - guard_failures),
            guard_failures,
            target_loss,
            n_at_target: sc.on_grid,
            n_at_target_extrapolated: sc.extrapolated,
        };
        (curves, stats)
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
