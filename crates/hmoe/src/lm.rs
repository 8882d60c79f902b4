//! The linear algebra of the Levenberg–Marquardt steps (the estimator's `Solver::Lm` in
//! `fit.rs`, the identifiability probe's search in `probe.rs`): the damped normal
//! equations with Marquardt's diagonal scaling, solved by a Cholesky factorisation written here.
//!
//! Why no LAPACK or faer: the systems are `p × p` with `p` the number of free parameters (tens to
//! a few hundred in every experiment), formed once per iteration from a Gauss–Newton matrix whose
//! accumulation over the samples costs far more than the `p³/3` of the factorisation; a plain
//! Cholesky in a fixed loop order is exact enough for a positive definite damped matrix, gives
//! the same bits on every machine, and adds no dependency (a system LAPACK cannot be built
//! offline, DESIGN.md).
use ndarray::Array2;

/// Solve `a x = b` for a symmetric positive definite `a` (Cholesky, lower triangle read); `None`
/// if `a` is not positive definite to working precision.
pub fn cholesky_solve(a: &Array2<f64>, b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[[i, i]] = s.sqrt();
            } else {
                l[[i, j]] = s / l[[j, j]];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[[i, k]] * y[k]).sum();
        y[i] = (b[i] - s) / l[[i, i]];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[[k, i]] * x[k]).sum();
        x[i] = (y[i] - s) / l[[i, i]];
    }
    Some(x)
}

/// The damped Gauss–Newton step: the solution of `(JᵀJ + μ D) δ = rhs` with Marquardt's scaling
/// `D = diag(JᵀJ) + 10⁻¹² · max diag(JᵀJ)` (the floor keeps a parameter the data do not see from
/// making the system singular). `None` when the damped matrix is not positive definite to working
/// precision: the caller raises `μ`.
pub fn damped_step(jtj: &Array2<f64>, rhs: &[f64], mu: f64) -> Option<Vec<f64>> {
    let top = (0..jtj.nrows()).map(|i| jtj[[i, i]]).fold(0.0, f64::max);
    let mut a = jtj.clone();
    for i in 0..a.nrows() {
        a[[i, i]] += mu * (jtj[[i, i]] + 1e-12 * top.max(1e-300));
    }
    cholesky_solve(&a, rhs)
}
