//! Rate fits (THEORY.md §5): the OLS slope of log(loss) on log(n), with a 95% interval from a
//! bootstrap over replicates, for the mean and the median; and the empirical sample complexity.
use crate::stats::{mean, median, ols};
use crate::stats::{percentile_95, Bootstrap};
use serde::{Deserialize, Serialize};

/// A fitted power law `loss ≈ exp(intercept) · n^slope`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateFit {
    /// Slope of log(mean loss) on log n.
    pub slope: f64,
    pub intercept: f64,
    /// 95% bootstrap interval of `slope`.
    pub slope_lo: f64,
    pub slope_hi: f64,
    /// Slope of log(median loss) on log n, and its interval.
    pub median_slope: f64,
    pub median_intercept: f64,
    pub median_slope_lo: f64,
    pub median_slope_hi: f64,
    /// Grid points used (those with at least one finite, positive loss).
    pub points: usize,
    pub bootstrap: usize,
}

fn slope_of(lx: &[f64], groups: &[Vec<f64>], stat: fn(&[f64]) -> f64) -> Option<(f64, f64)> {
    let ly: Vec<f64> = groups.iter().map(|g| stat(g).ln()).collect();
    ols(lx, &ly)
}

/// Fit `log loss = a + b log n` for the mean and the median over replicates.
///
/// `losses[k]` holds the replicate losses at `ns[k]`; non-finite and non-positive losses are
/// dropped (a log cannot take them), and a grid point with none left is dropped. The interval is
/// the 2.5–97.5 percentile range of the slope over `n_boot` resamples of the replicates inside
/// each grid point. Returns `None` with fewer than two usable grid points.
pub fn fit_rate(ns: &[f64], losses: &[Vec<f64>], n_boot: usize, seed: u64) -> Option<RateFit> {
    let mut lx = Vec::new();
    let mut groups: Vec<Vec<f64>> = Vec::new();
    for (n, g) in ns.iter().zip(losses) {
        let g: Vec<f64> = g
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        if !g.is_empty() && *n > 0.0 {
            lx.push(n.ln());
            groups.push(g);
        }
    }
    let (slope, intercept) = slope_of(&lx, &groups, mean)?;
    let (median_slope, median_intercept) = slope_of(&lx, &groups, median)?;
    let mut boot_mean = Vec::with_capacity(n_boot);
    let mut boot_median = Vec::with_capacity(n_boot);
    Bootstrap::new(n_boot, seed).for_each(&groups, |resampled| {
        if let Some((b, _)) = slope_of(&lx, resampled, mean) {
            boot_mean.push(b);
        }
        if let Some((b, _)) = slope_of(&lx, resampled, median) {
            boot_median.push(b);
        }
    });
    let interval = |v: Vec<f64>, point: f64| percentile_95(v).unwrap_or((point, point));
    let (slope_lo, slope_hi) = interval(boot_mean, slope);
    let (median_slope_lo, median_slope_hi) = interval(boot_median, median_slope);
    Some(RateFit {
        slope,
        intercept,
        slope_lo,
        slope_hi,
        median_slope,
        median_intercept,
        median_slope_lo,
        median_slope_hi,
        points: lx.len(),
        bootstrap: n_boot,
    })
}

/// The n needed to bring the mean loss below a target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleComplexity {
    pub target: f64,
    /// Smallest grid n whose mean loss is below the target.
    pub on_grid: Option<f64>,
    /// The n at which the fitted power law crosses the target (only for a negative slope).
    pub extrapolated: Option<f64>,
}

pub fn sample_complexity(
    ns: &[f64],
    mean_losses: &[f64],
    fit: Option<&RateFit>,
    target: f64,
) -> SampleComplexity {
    let on_grid = ns
        .iter()
        .zip(mean_losses)
        .filter(|(_, l)| l.is_finite() && **l < target)
        .map(|(n, _)| *n)
        .fold(None, |acc: Option<f64>, n| {
            Some(acc.map_or(n, |a| a.min(n)))
        });
    let extrapolated = fit
        .filter(|f| f.slope < 0.0)
        .map(|f| ((target.ln() - f.intercept) / f.slope).exp())
        .filter(|n| n.is_finite());
    SampleComplexity {
        target,
        on_grid,
        extrapolated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_an_exact_power_law() {
        let ns = [100.0, 1000.0, 10000.0];
        let losses: Vec<Vec<f64>> = ns
            .iter()
            .map(|n: &f64| vec![3.0 * n.powf(-0.5); 4])
            .collect();
        let f = fit_rate(&ns, &losses, 200, 1).unwrap();
        assert!((f.slope + 0.5).abs() < 1e-12);
        assert!((f.intercept - 3f64.ln()).abs() < 1e-12);
        assert!((f.slope_lo + 0.5).abs() < 1e-12 && (f.slope_hi + 0.5).abs() < 1e-12);
        let sc = sample_complexity(&ns, &[0.3, 0.0949, 0.03], Some(&f), 0.1);
        assert_eq!(sc.on_grid, Some(1000.0));
        assert!((sc.extrapolated.unwrap() - 900.0).abs() < 1e-6);
    }

    #[test]
    fn interval_covers_the_slope_under_noise() {
        let ns = [100.0, 300.0, 1000.0, 3000.0];
        let losses: Vec<Vec<f64>> = ns
            .iter()
            .map(|n: &f64| {
                (0..8)
                    .map(|k| n.powf(-0.5) * (1.0 + 0.2 * ((k as f64) - 3.5) / 3.5))
                    .collect()
            })
            .collect();
        let f = fit_rate(&ns, &losses, 500, 7).unwrap();
        assert!(f.slope_lo <= f.slope && f.slope <= f.slope_hi);
        assert!(f.slope_lo < -0.4 && f.slope_hi > -0.6);
    }

    #[test]
    fn too_few_points_is_none() {
        assert!(fit_rate(&[100.0], &[vec![1.0]], 10, 0).is_none());
        assert!(fit_rate(&[100.0, 200.0], &[vec![1.0], vec![f64::NAN]], 10, 0).is_none());
    }
}
