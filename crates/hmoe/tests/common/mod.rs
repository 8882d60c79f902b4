//! What the probe's tests (`probe.rs`) and the exact search's (`exact.rs`) share: the families
//! and their truths, a point near the truth, the largest |value|, and the search settings.
use hmoe::probe::{Probe, SearchConfig, StartKind};

/// Each fitted family with the truth family whose generator it contains.
pub const FAMILIES: [(&str, &str); 5] = [
    ("lora", "hora-tanh"),
    ("replora-tanh", "hora-tanh"),
    ("hora-tanh", "hora-tanh"),
    ("replora-identity", "hora-identity"),
    ("hora-identity", "hora-identity"),
];

/// A point near the truth, moved along a fixed pattern.
pub fn near(p: &dyn Probe, size: f64) -> Vec<f64> {
    p.truth()
        .iter()
        .enumerate()
        .map(|(j, t)| t + size * (((j * 7) % 5) as f64 - 2.0) / 2.0)
        .collect()
}

pub fn max_abs(v: impl IntoIterator<Item = f64>) -> f64 {
    v.into_iter().fold(0.0, |a, x| a.max(x.abs()))
}

/// The search at `epsilon` from `starts`, with the settings both tests use.
pub fn config(epsilon: f64, starts: Vec<(StartKind, usize)>) -> SearchConfig {
    SearchConfig {
        epsilon,
        starts,
        hold: 50.0,
        round_iters: 10,
        max_rounds: 100,
        rel_tol: 0.01,
        window: 5,
        smooth: 0.1,
        seed: 5,
    }
}
