//! Sampling of inputs `X ~ Uniform[-1, 1]^{(S+1)d}` and responses `Y = f*(X) + ε`.
use crate::atoms::Atoms;
use crate::config::DataConfig;
use crate::model::Model;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// `n` inputs, rows `(u, v_1, …, v_S)`.
pub fn sample_inputs(model: &Model, n: usize, rng: &mut impl Rng) -> Array2<f64> {
    let w = (model.cfg.slots + 1) * model.cfg.d;
    Array2::from_shape_simple_fn((n, w), || rng.random_range(-1.0..=1.0))
}

/// `n` samples `(X, Y)` from the truth, drawn from `seed` alone.
pub fn sample_data(
    model: &Model,
    truth: &Atoms,
    data: &DataConfig,
    n: usize,
    seed: u64,
) -> (Array2<f64>, Array2<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = sample_inputs(model, n, &mut rng);
    let mut y = model.predict_reference(truth, x.view());
    let sigma = data.sigma;
    y.mapv_inplace(|v| {
        let e: f64 = StandardNormal.sample(&mut rng);
        v + sigma * e
    });
    (x, y)
}
