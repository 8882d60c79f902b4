//! What both rate-curve kinds draw and print: the loss curves with their fitted power laws and
//! reference slopes, slopes and sample sizes as text, and the estimator section of `summary.md`.
use super::metrics::{CurveRow, EstimatorRow};
use crate::plot::{self, Curve, GREY};
use plotters::prelude::RGBColor;

pub(crate) fn slope_text(slope: Option<f64>, lo: Option<f64>, hi: Option<f64>) -> String {
    match (slope, lo, hi) {
        (Some(s), Some(l), Some(h)) => format!("{} [{}, {}]", signed(s), signed(l), signed(h)),
        _ => "n/a".into(),
    }
}

/// Two decimals with a true minus sign.
fn signed(x: f64) -> String {
    format!("{x:.2}").replace('-', "−")
}

/// One curve of a loss panel: its rows of `curves.csv`, its legend label and colour, and its
/// fitted rate `(slope, lo, hi, intercept)`.
pub(crate) struct Line {
    pub setting: String,
    pub method: String,
    pub label: String,
    pub color: RGBColor,
    pub fit: (Option<f64>, Option<f64>, Option<f64>, Option<f64>),
}

/// The curves of a loss panel: per line the mean loss with its band and the fitted power law
/// (dashed), then reference slopes n^(−1/2) and n^(−1/4) from the lines' first points.
pub(crate) fn loss_curves(lines: &[Line], loss: &str, curves: &[CurveRow]) -> Vec<Curve> {
    let mut out = Vec::new();
    let mut first_means = Vec::new();
    let (mut nmin, mut nmax) = (f64::INFINITY, 0f64);
    for l in lines {
        let rows: Vec<&CurveRow> = curves
            .iter()
            .filter(|c| c.setting == l.setting && c.method == l.method && c.loss == loss)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let (slope, lo, hi, intercept) = l.fit;
        let mut c = Curve::new(
            format!("{}: slope {}", l.label, slope_text(slope, lo, hi)),
            l.color,
        );
        c.points = rows.iter().map(|r| (r.n as f64, r.mean)).collect();
        c.band = rows
            .iter()
            .map(|r| (r.n as f64, r.mean_lo, r.mean_hi))
            .collect();
        let (a, b) = (rows[0].n as f64, rows[rows.len() - 1].n as f64);
        nmin = nmin.min(a);
        nmax = nmax.max(b);
        first_means.push(rows[0].mean);
        out.push(c);
        if let (Some(sl), Some(ic)) = (slope, intercept) {
            let mut f = Curve::new("", l.color);
            f.points = [a, b]
                .iter()
                .map(|&n| (n, (ic + sl * n.ln()).exp()))
                .collect();
            f.dashed = true;
            f.markers = false;
            out.push(f);
        }
    }
    // Reference slopes start at the geometric mean of the curves' first points.
    let anchor = first_means
        .iter()
        .filter(|v| **v > 0.0)
        .map(|v| v.ln())
        .sum::<f64>()
        / first_means.len().max(1) as f64;
    if nmax > nmin && anchor.is_finite() {
        for (label, p, color) in [
            ("n^(−1/2)", -0.5, GREY),
            ("n^(−1/4)", -0.25, RGBColor(180, 180, 180)),
        ] {
            let mut r = Curve::new(label, color);
            r.points = [nmin, nmax]
                .iter()
                .map(|&n| (n, (anchor + p * (n / nmin).ln()).exp()))
                .collect();
            r.dashed = true;
            r.markers = false;
            out.push(r);
        }
    }
    out
}

impl super::metrics::RateStats {
    /// The Voronoi (`voronoi`) or regression-error rate: (slope, its interval, intercept).
    pub fn fit_of(&self, loss: &str) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
        if loss == "voronoi" {
            (self.slope, self.slope_lo, self.slope_hi, self.intercept)
        } else {
            (
                self.regression_slope,
                self.regression_slope_lo,
                self.regression_slope_hi,
                self.regression_intercept,
            )
        }
    }

    /// The cells of the summary's rate table after a family's own columns ([`rate_table`]).
    pub fn summary_cells(&self) -> Vec<String> {
        vec![
            self.fits.to_string(),
            slope_text(self.slope, self.slope_lo, self.slope_hi),
            slope_text(
                self.median_slope,
                self.median_slope_lo,
                self.median_slope_hi,
            ),
            slope_text(
                self.regression_slope,
                self.regression_slope_lo,
                self.regression_slope_hi,
            ),
            format!("{:.0}%", 100.0 * self.converged_fraction),
            self.guard_failures.to_string(),
            format!(
                "{} / {}",
                opt_n(self.n_at_target),
                opt_n(self.n_at_target_extrapolated)
            ),
        ]
    }
}

/// The summary's rate table: a family's own columns (`own` heads them, each row gives their
/// cells), then the shared ones of [`super::metrics::RateStats::summary_cells`].
pub(crate) fn rate_table<'a>(
    own: &[&str],
    target_loss: f64,
    rows: impl Iterator<Item = (Vec<String>, &'a super::metrics::RateStats)>,
) -> String {
    let shared = [
        "fits",
        "Voronoi slope [95% CI]",
        "median slope [95% CI]",
        "regression slope [95% CI]",
        "converged",
        "guard failures",
    ];
    let target = format!("n at ε = {target_loss} (grid / fitted)");
    let header: Vec<&str> = own
        .iter()
        .copied()
        .chain(shared)
        .chain([target.as_str()])
        .collect();
    crate::markdown::table(
        &header,
        rows.map(|(mine, r)| mine.into_iter().chain(r.summary_cells()).collect()),
    )
}

pub(crate) fn opt_n(x: Option<f64>) -> String {
    match x {
        Some(v) if v < 1e6 => format!("{}", v.round() as u64),
        Some(v) => format!("{v:.1e}"),
        None => "—".into(),
    }
}

/// The estimator section of `summary.md` (also the `controls` kind's).
pub(crate) fn estimator_markdown(r: &super::ReportConfig, rows: &[EstimatorRow]) -> String {
    let mut s = format!(
        "## The estimator\n\nPer fit: its starts; the near-best starts (objective within {:e} \
         relative of the best) and the spread of their Voronoi losses (the flat-set width; \
         \"wide\" when it is at least the kept estimate's loss, so the reported loss is the \
         optimiser's pick from a set); dead atoms (weight below {} of their cell's true weight); \
         a parameter on the box; and the mean Voronoi loss split into its mass term and the \
         spread of live and of dead atoms. Flat-set columns need records that log every start \
         (a dash otherwise). Table: `estimator.csv`.\n\n",
        r.flat_tolerance, r.dead_weight
    );
    let header = [
        "setting",
        "method",
        "n",
        "fits",
        "starts",
        "near-best",
        "flat width (median)",
        "wide",
        "best from prior",
        "dead atoms / fit",
        "on box",
        "mean D = mass + live + dead",
    ];
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("—".to_string(), f);
    let pct = |v: f64| format!("{:.0}%", 100.0 * v);
    let rows = rows.iter().map(|e| {
        vec![
            e.setting.clone(),
            e.method.clone(),
            e.n.to_string(),
            e.fits.to_string(),
            format!("{:.1}", e.starts_mean),
            opt(e.near_best_mean, &|v| format!("{v:.1}")),
            opt(e.flat_width_median, &plot::number),
            opt(e.flat_wide_fraction, &pct),
            opt(e.best_from_prior_fraction, &pct),
            format!("{:.2}", e.dead_atoms_mean),
            pct(e.on_box_fraction),
            format!(
                "{} = {} + {} + {}",
                plot::number(e.voronoi_mean),
                plot::number(e.mass_mean),
                plot::number(e.spread_live_mean),
                plot::number(e.spread_dead_mean)
            ),
        ]
    });
    s += &crate::markdown::table(&header, rows);
    s += "\n";
    s
}
