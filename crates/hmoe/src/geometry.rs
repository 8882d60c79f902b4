//! Local geometry of a family at a point (issue 11): the Jacobian of `f` in the parameters and
//! the Gauss–Newton matrix `JᵀJ/n`, which under Gaussian noise is the Fisher information (up to
//! `1/σ²`). Its spectrum says how many directions the data cannot see to first order: a zero
//! eigenvalue is a direction along which `f` does not move at first order, so the least-squares
//! estimator is not locally `√n`-consistent along it.
//!
//! The eigenvalues come from a cyclic Jacobi sweep, written here: the matrices are small
//! (p ≤ a few dozen), Jacobi is accurate for small eigenvalues relative to the largest, and it
//! needs no LAPACK (DESIGN.md: no system libraries).
use crate::atoms::Atoms;
use crate::model::Model;
use crate::param::Parametrisation;
use ndarray::{s, Array2, ArrayView2};
use rayon::prelude::*;

/// `∂atoms/∂θ` (`A × p`, atoms flattened as `dq`, `dv`, `c`), one pullback per atom coordinate.
pub fn atoms_jacobian(param: &dyn Parametrisation, theta: &[f64]) -> Array2<f64> {
    let mut unit = param.new_atoms();
    let a = unit.dq.len() + unit.dv.len() + unit.c.len();
    let mut m = Array2::zeros((a, theta.len()));
    let mut row = vec![0.0; theta.len()];
    for i in 0..a {
        unit.fill_zero();
        *flat_mut(&mut unit, i) = 1.0;
        row.iter_mut().for_each(|v| *v = 0.0);
        param.pullback(theta, &unit, &mut row);
        for (j, v) in row.iter().enumerate() {
            m[[i, j]] = *v;
        }
    }
    m
}

fn flat_mut(a: &mut Atoms, i: usize) -> &mut f64 {
    let (nq, nv) = (a.dq.len(), a.dv.len());
    if i < nq {
        &mut a.dq[i]
    } else if i < nq + nv {
        &mut a.dv[i - nq]
    } else {
        &mut a.c[i - nq - nv]
    }
}

/// Samples per block of [`gauss_newton`]: the atom Jacobian it holds is `GN_CHUNK·q × A`, never
/// `n·q × A`.
pub const GN_CHUNK: usize = 2048;

/// The Gauss–Newton matrix `(1/n) Σ_k J_kᵀ J_k` in θ at `theta`, over the inputs `x`, where
/// `J_k = ∂f(X_k)/∂θ` (`q × p`).
///
/// Accumulated in the atoms, block by block: each block of [`GN_CHUNK`] samples forms its atom
/// Jacobian (reference forward pass) and adds its `JᵀJ` (`A × A`); the sum, in block order, is
/// then pulled back once through `∂atoms/∂θ` (`MᵀGM`). Memory is `O(GN_CHUNK·q·A + A²)` whatever
/// `n`; blocks run on the caller's rayon pool, eight at a time, and are summed in index order,
/// so the bits do not depend on the thread count.
pub fn gauss_newton(
    model: &Model,
    param: &dyn Parametrisation,
    theta: &[f64],
    x: ArrayView2<f64>,
) -> Array2<f64> {
    let mut atoms = param.new_atoms();
    param.atoms(theta, &mut atoms);
    let a = atoms.dq.len() + atoms.dv.len() + atoms.c.len();
    let n = x.nrows();
    let starts: Vec<usize> = (0..n).step_by(GN_CHUNK).collect();
    let mut ga = Array2::<f64>::zeros((a, a));
    for batch in starts.chunks(8) {
        let parts: Vec<Array2<f64>> = batch
            .par_iter()
            .map(|&lo| {
                let xs = x.slice(s![lo..(lo + GN_CHUNK).min(n), ..]);
                let ja = model.jacobian_reference(&atoms, xs);
                ja.t().dot(&ja)
            })
            .collect();
        for p in parts {
            ga += &p;
        }
    }
    let ga = ga / n as f64;
    let m = atoms_jacobian(param, theta);
    m.t().dot(&ga).dot(&m)
}

/// Eigenvalues of a symmetric matrix, ascending (cyclic Jacobi rotations until every
/// off-diagonal entry is below `1e-15` of the Frobenius norm, at most 100 sweeps).
pub fn symmetric_eigenvalues(a: &Array2<f64>) -> Vec<f64> {
    let n = a.nrows();
    assert_eq!(n, a.ncols(), "a square matrix");
    let mut a = a.clone();
    let norm = a.iter().map(|v| v * v).sum::<f64>().sqrt();
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |j| *j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[[i, j]] * a[[i, j]])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * norm || norm == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[[p, q]];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[[k, p]], a[[k, q]]);
                    a[[k, p]] = c * akp - s * akq;
                    a[[k, q]] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[[p, k]], a[[q, k]]);
                    a[[p, k]] = c * apk - s * aqk;
                    a[[q, k]] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut e: Vec<f64> = (0..n).map(|i| a[[i, i]]).collect();
    e.sort_by(|x, y| x.total_cmp(y));
    e
}

/// What a spectrum says: its size, the eigenvalues below `rel · largest` (the directions the
/// data do not see at first order), and the smallest one above that threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrum {
    pub dim: usize,
    pub largest: f64,
    pub null: usize,
    pub smallest_nonzero: Option<f64>,
}

pub fn spectrum(eigenvalues: &[f64], rel: f64) -> Spectrum {
    let largest = eigenvalues.iter().copied().fold(0.0, f64::max);
    let cut = rel * largest;
    Spectrum {
        dim: eigenvalues.len(),
        largest,
        null: eigenvalues.iter().filter(|e| **e < cut).count(),
        smallest_nonzero: eigenvalues.iter().copied().find(|e| *e >= cut),
    }
}
