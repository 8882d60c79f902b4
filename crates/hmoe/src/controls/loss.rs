//! The Voronoi loss of §4 with cells in the joint distance of `(β, a, b)`.
use super::model::experts_of;
use super::slots;
use crate::loss::VoronoiParts;

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// `(‖β_i − β*_j‖, ‖(a_i, b_i) − (a*_j, b*_j)‖)`.
pub(super) fn gaps(theta: &[f64], truth: &[f64], d: usize, i: usize, j: usize) -> (f64, f64) {
    let (o, t) = (slots(d, i), slots(d, j));
    (
        dist(&theta[o.beta..o.beta + d], &truth[t.beta..t.beta + d]),
        dist(&theta[o.a..=o.b], &truth[t.a..=t.b]),
    )
}

/// The Voronoi cell of every fitted expert: the true expert nearest in the joint Euclidean
/// distance of `(β, a, b)` (the lowest index on a tie).
pub fn nearest_cells(theta: &[f64], truth: &[f64], d: usize) -> Vec<usize> {
    let (k, kt) = (experts_of(theta, d), experts_of(truth, d));
    (0..k)
        .map(|i| {
            let mut best = (f64::INFINITY, 0);
            for j in 0..kt {
                let (gb, gv) = gaps(theta, truth, d, i, j);
                let d2 = gb * gb + gv * gv;
                if d2 < best.0 {
                    best = (d2, j);
                }
            }
            best.1
        })
        .collect()
}

/// `D(θ, θ*)` (THEORY.md §4a) with the given cells (`cells[i]`: the true expert of fitted expert
/// `i`), and its (sub)gradient in θ: a norm at 0 and a mass term at its kink contribute 0.
/// With `smooth > 0` every unsquared `|x|` (mass terms, norms of a cell of one expert) is
/// rounded off to `√(x² + smooth²) − smooth`, as [`crate::loss::voronoi_loss_and_grad`] does
/// for the probe; `smooth = 0` is `D` itself, with unchanged arithmetic.
///
/// `D = Σ_j |Σ_{i∈cell j} exp(β0_i) − exp(β0*_j)|`
/// `  + Σ_{cells of one expert} exp(β0_i)(‖β_i − β*_j‖ + ‖(a_i,b_i) − (a*_j,b*_j)‖)`
/// `  + Σ_{cells of ≥ 2} Σ_i exp(β0_i)(‖β_i − β*_j‖^ρ + ‖(a_i,b_i) − (a*_j,b*_j)‖^ρ)`;
/// an empty cell contributes its full mass `exp(β0*_j)`.
pub fn voronoi_with_cells(
    theta: &[f64],
    truth: &[f64],
    d: usize,
    cells: &[usize],
    rho: f64,
    smooth: f64,
) -> (f64, Vec<f64>) {
    // |x| (rounded off at `smooth`) and its derivative over x.
    let soft = |x: f64| -> (f64, f64) {
        let r = (x * x + smooth * smooth).sqrt();
        (r - smooth, if r > 0.0 { 1.0 / r } else { 0.0 })
    };
    let kt = experts_of(truth, d);
    assert_eq!(
        cells.len(),
        experts_of(theta, d),
        "one cell per fitted expert"
    );
    let mut g = vec![0.0; theta.len()];
    let mut total = 0.0;
    for j in 0..kt {
        let t = slots(d, j);
        let members: Vec<usize> = (0..cells.len()).filter(|&i| cells[i] == j).collect();
        let single = members.len() == 1;
        let mut mass = 0.0;
        let mut spread = 0.0;
        for &i in &members {
            let o = slots(d, i);
            let w = theta[o.beta0].exp();
            mass += w;
            let (gb, gv) = gaps(theta, truth, d, i, j);
            // d/dx of ‖x − x*‖^p at x ≠ x*: p ‖·‖^(p−2) (x − x*); p = 1 for a single expert.
            let p = if single { 1.0 } else { rho };
            let rounded = single && smooth > 0.0;
            let term = if rounded {
                w * (soft(gb).0 + soft(gv).0)
            } else {
                w * (gb.powf(p) + gv.powf(p))
            };
            spread += term;
            g[o.beta0] += term;
            let scale = |n: f64| {
                if rounded {
                    w * soft(n).1
                } else if n > 0.0 {
                    w * p * n.powf(p - 2.0)
                } else {
                    0.0
                }
            };
            let (sb, sv) = (scale(gb), scale(gv));
            for c in 0..d {
                g[o.beta + c] += sb * (theta[o.beta + c] - truth[t.beta + c]);
                g[o.a + c] += sv * (theta[o.a + c] - truth[t.a + c]);
            }
            g[o.b] += sv * (theta[o.b] - truth[t.b]);
        }
        let diff = mass - truth[t.beta0].exp();
        if smooth > 0.0 {
            let (abs, slope) = soft(diff);
            for &i in &members {
                let o = slots(d, i);
                g[o.beta0] += slope * diff * theta[o.beta0].exp();
            }
            total += abs + spread;
            continue;
        }
        let sign = if diff > 0.0 {
            1.0
        } else if diff < 0.0 {
            -1.0
        } else {
            0.0
        };
        for &i in &members {
            let o = slots(d, i);
            g[o.beta0] += sign * theta[o.beta0].exp();
        }
        total += diff.abs() + spread;
    }
    (total, g)
}

/// `D(θ, θ*)` with the nearest-expert cells ([`nearest_cells`]).
pub fn voronoi_loss(theta: &[f64], truth: &[f64], d: usize, rho: f64) -> f64 {
    voronoi_with_cells(theta, truth, d, &nearest_cells(theta, truth, d), rho, 0.0).0
}

/// [`voronoi_loss`] split into its mass term and the spread of live and of dead experts (weight
/// below `dead_weight` times their cell's true weight), as `crate::loss::voronoi_parts`.
pub fn voronoi_parts(
    theta: &[f64],
    truth: &[f64],
    d: usize,
    rho: f64,
    dead_weight: f64,
) -> VoronoiParts {
    let cells = nearest_cells(theta, truth, d);
    let mut p = VoronoiParts::default();
    for j in 0..experts_of(truth, d) {
        let w_true = truth[slots(d, j).beta0].exp();
        let members: Vec<usize> = (0..cells.len()).filter(|&i| cells[i] == j).collect();
        let mut mass = 0.0;
        for &i in &members {
            let w = theta[slots(d, i).beta0].exp();
            mass += w;
            let alone = members.len() == 1;
            p.add_atom(
                (w, w_true),
                gaps(theta, truth, d, i, j),
                alone,
                rho,
                dead_weight,
            );
        }
        p.mass += (mass - w_true).abs();
    }
    p
}
