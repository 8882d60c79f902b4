//! Inputs and responses.
use super::model::predict;
use super::Expert;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// `n` inputs `Uniform[-1, 1]^d`, row-major.
pub fn sample_inputs(d: usize, n: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..n * d).map(|_| rng.random_range(-1.0..=1.0)).collect()
}

/// `n` samples `(x, y = f*(x) + σ ε)` from `seed` alone: the inputs first, then the noise.
pub fn sample_data(
    expert: Expert,
    d: usize,
    truth: &[f64],
    sigma: f64,
    n: usize,
    seed: u64,
) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = sample_inputs(d, n, &mut rng);
    let mut y = predict(expert, d, truth, &x);
    y.iter_mut().for_each(|v| {
        let e: f64 = StandardNormal.sample(&mut rng);
        *v += sigma * e
    });
    (x, y)
}
