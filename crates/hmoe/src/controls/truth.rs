//! Truths: drawn, and embedded in an over-specified family.
use super::model::experts_of;
use super::{slots, stride};
use crate::record::derive_seed;
use crate::truth::truncated;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The true θ (`k_true` experts) drawn from `truth_seed`: `β, a ~ N(0, 1)` and `b ~ N(0, 0.5²)`,
/// each truncated at two standard deviations, `β0 ~ Uniform[-1/2, 1/2]`; expert after expert,
/// in θ's order. Every `|θ_j| ≤ 2`.
pub fn draw_truth(d: usize, k_true: usize, truth_seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
        "controls-truth-params",
        &[&truth_seed.to_string()],
    ));
    let mut theta = vec![0.0; k_true * stride(d)];
    for j in 0..k_true {
        let o = slots(d, j);
        for i in 0..d {
            theta[o.beta + i] = truncated(&mut rng, 1.0);
        }
        theta[o.beta0] = rng.random_range(-0.5..=0.5);
        for i in 0..d {
            theta[o.a + i] = truncated(&mut rng, 1.0);
        }
        theta[o.b] = truncated(&mut rng, 0.5);
    }
    theta
}

/// The truth in a family of `k_fit ≥ k_true` experts: experts `0..k_true` are the true ones,
/// expert `k_true + e` is a copy of true expert `copies[e]`, and every expert of a group of `c`
/// copies of true expert `j` gets `β0 = β0*_j − ln c`, so that `f_θ = f*` exactly.
pub fn embed(truth: &[f64], d: usize, copies: &[usize]) -> Vec<f64> {
    let k_true = experts_of(truth, d);
    let p = stride(d);
    let mut theta = truth.to_vec();
    let mut count = vec![1usize; k_true];
    for &j in copies {
        assert!(j < k_true, "a copy of true expert {j} of {k_true}");
        theta.extend_from_slice(&truth[j * p..(j + 1) * p]);
        count[j] += 1;
    }
    let owner: Vec<usize> = (0..k_true).chain(copies.iter().copied()).collect();
    for (i, &j) in owner.iter().enumerate() {
        theta[slots(d, i).beta0] = truth[slots(d, j).beta0] - (count[j] as f64).ln();
    }
    theta
}
