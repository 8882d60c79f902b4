//! The workspace's summary statistics, one of each: mean, median, sample standard deviation,
//! quantiles, least squares, and the one seeded percentile [`Bootstrap`] behind every interval
//! and band the driver reports (rate slopes and mean bands of the `rates` kind; the `finetune`
//! kind takes its means and standard deviations from here too).
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let k = s.len();
    if k % 2 == 1 {
        s[k / 2]
    } else {
        0.5 * (s[k / 2 - 1] + s[k / 2])
    }
}

/// Sample standard deviation (n − 1 in the denominator); 0 for fewer than two values.
pub fn sd(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Linear-interpolated quantile of sorted data.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// OLS of `y` on `x`: (slope, intercept). `None` with fewer than two distinct x.
pub fn ols(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = x.len() as f64;
    if x.len() < 2 || x.len() != y.len() {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

/// The 2.5–97.5 percentile range of bootstrap values; `None` when there are none.
pub fn percentile_95(mut values: Vec<f64>) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    Some((quantile(&values, 0.025), quantile(&values, 0.975)))
}

/// A seeded, stratified bootstrap: each group (the replicates at one grid point) is resampled
/// with replacement on its own, groups in order, values in order, from one ChaCha8 stream. The
/// same seed gives the same resamples on every platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    pub resamples: usize,
    pub seed: u64,
}

impl Bootstrap {
    pub fn new(resamples: usize, seed: u64) -> Self {
        Bootstrap { resamples, seed }
    }

    /// Call `visit` on each of the `resamples` resamples of `groups`.
    pub fn for_each(&self, groups: &[Vec<f64>], mut visit: impl FnMut(&[Vec<f64>])) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut resampled: Vec<Vec<f64>> = groups.iter().map(|g| vec![0.0; g.len()]).collect();
        for _ in 0..self.resamples {
            for (g, r) in groups.iter().zip(resampled.iter_mut()) {
                for x in r.iter_mut() {
                    *x = g[rng.random_range(0..g.len())];
                }
            }
            visit(&resampled);
        }
    }

    /// 95% percentile-bootstrap band of the mean of `values` (positive whenever the values
    /// are, so it can be drawn on log axes, unlike mean ± 1.96 se). A single value, or no
    /// resamples, gives the mean itself at both ends.
    pub fn mean_band(&self, values: &[f64]) -> (f64, f64) {
        let m = mean(values);
        if values.len() < 2 || self.resamples == 0 {
            return (m, m);
        }
        let mut means = Vec::with_capacity(self.resamples);
        self.for_each(&[values.to_vec()], |r| means.push(mean(&r[0])));
        percentile_95(means).unwrap_or((m, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_statistics_match_hand_values() {
        let v = [1.0, 2.0, 4.0, 9.0];
        assert_eq!(mean(&v), 4.0);
        assert_eq!(median(&v), 3.0);
        assert!((sd(&v) - (38.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(sd(&[5.0]), 0.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(ols(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]), Some((2.0, 1.0)));
        assert_eq!(ols(&[1.0, 1.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn the_bootstrap_is_seeded_and_its_band_brackets_the_mean() {
        let v: Vec<f64> = (1..=20).map(|k| (k as f64).sqrt()).collect();
        let b = Bootstrap::new(2000, 11);
        let (lo, hi) = b.mean_band(&v);
        assert_eq!((lo, hi), b.mean_band(&v));
        assert!(lo < mean(&v) && mean(&v) < hi && lo > v[0] && hi < v[19]);
        assert_ne!(Bootstrap::new(2000, 12).mean_band(&v), (lo, hi));
        assert_eq!(Bootstrap::new(0, 11).mean_band(&v), (mean(&v), mean(&v)));
        // The band's width is about 2 × 1.96 standard errors of the mean.
        let se = sd(&v) / (v.len() as f64).sqrt();
        assert!((((hi - lo) / (2.0 * 1.96 * se)) - 1.0).abs() < 0.15);
    }
}
