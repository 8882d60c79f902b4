//! Flat sets in closed form (THEORY.md §5a, issue 26 item 4).
//!
//! Over-specified `lora` has the flat set of `tests/flat_set.rs`: two atoms of a cell with the
//! true gate, their values split either side of the true one. The generator families have one of
//! their own when the token dimension leaves room, built here.
//!
//! **The null-space split (identity generators).** With `φ = identity`, an atom's gate factor is
//! `AQ = Ā·GAQ` and its value factor `AV = Ā·GAV`, from one seed `Ā`. If some unit row `n` is
//! orthogonal to every A-seed row a generator serves (the `S·r` rows of one head's seeds in
//! `replora`, of the shared seeds in `hora`), replace that generator's `GAQ` by `(I − nᵀn)·GAQ`:
//! every seed's gate factor is unchanged (each seed is orthogonal to `n`), and from then on a
//! seed moved along `n` keeps its gate while its value factor moves by `t·n·GAV`. Move atom 0 of
//! every cell by `+t·n` and atom 1 by `−t·n` (equal weights, as the truth embedded with `m`
//! atoms has them): the two values sit either side of the true one and average back to it
//! exactly, in every head at once (the shift is the same for all heads that share the seed), so
//! `f_θ = f*` on every input while the Voronoi loss grows in proportion to `|t|`.
//!
//! Such an `n` exists exactly when those rows do not span `R^d`: for `r = 1` and two slots,
//! at `d = q ≥ 3`, not at the default `d = q = 2`, nor at `r = 2` or `S = 3` with `d = 2`, nor at
//! `d = 4, r = 4`. With `tanh` generators the value factor `tanh((Ā + t·n)·GAV)` is not affine in
//! `t`, the two halves no longer average back, and this construction does not apply (their
//! flat sets are the ones the exact search finds, `tests/exact.rs`).
use crate::method::{Activation, Family};
use crate::param::parametrisation;
use crate::Method;
use crate::ModelConfig;

/// A unit vector orthogonal to every row in `rows` (each of length `d`), or `None` when they
/// span `R^d` (to a relative tolerance of 1e-9).
pub fn orthogonal_complement_vector(rows: &[Vec<f64>], d: usize) -> Option<Vec<f64>> {
    // Modified Gram–Schmidt on the rows, then the unit vector whose residual is largest.
    let mut basis: Vec<Vec<f64>> = Vec::new();
    let scale = rows
        .iter()
        .map(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt())
        .fold(0.0, f64::max)
        .max(1.0);
    let project_out = |v: &mut Vec<f64>, basis: &[Vec<f64>]| {
        for b in basis {
            let dot: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
            v.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
        }
    };
    for row in rows {
        let mut v = row.clone();
        project_out(&mut v, &basis);
        project_out(&mut v, &basis);
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-9 * scale {
            basis.push(v.into_iter().map(|x| x / norm).collect());
        }
    }
    if basis.len() >= d {
        return None;
    }
    let mut best: Option<(f64, Vec<f64>)> = None;
    for j in 0..d {
        let mut e = vec![0.0; d];
        e[j] = 1.0;
        project_out(&mut e, &basis);
        project_out(&mut e, &basis);
        let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        if best.as_ref().is_none_or(|(n, _)| norm > *n) {
            best = Some((norm, e.into_iter().map(|x| x / norm).collect()));
        }
    }
    best.map(|(_, n)| n)
}

/// The null-space split of `theta_star` at displacement `t` (module docs): a point of the
/// over-specified `method` family (`cfg.atoms ≥ 2` atoms per slot, in its own layout) with the
/// same function as `theta_star` and a Voronoi loss growing with `|t|`. `theta_star` is a truth
/// embedded in the family (every true atom copied into the cell's atoms with equal weights, as
/// `probe::HmoeProbe` embeds it). `None` where the construction does not apply: `lora`, `tanh`
/// generators, one atom per slot, or seed rows that span `R^d`.
pub fn null_space_split(
    method: Method,
    cfg: &ModelConfig,
    theta_star: &[f64],
    t: f64,
) -> Option<Vec<f64>> {
    if method.activation != Activation::Identity || cfg.atoms < 2 {
        return None;
    }
    let param = parametrisation(method, cfg, cfg.atoms);
    let generated = param.as_generated()?;
    if theta_star.len() != param.dim() {
        return None;
    }
    let mut can = generated.to_canonical(theta_star);
    let (d, r, m) = (cfg.d, cfg.r, cfg.atoms);
    let heads = can.generators.len();
    let per_head = can.a.len() / heads;
    // Heads that share a generator: all of them in hora, each alone in replora.
    let groups: Vec<Vec<usize>> = if method.family == Family::Hora {
        vec![(0..heads).collect()]
    } else {
        (0..heads).map(|h| vec![h]).collect()
    };
    for group in groups {
        let rows: Vec<Vec<f64>> = group
            .iter()
            .flat_map(|&h| can.a[h * per_head..(h + 1) * per_head].iter())
            .flat_map(|a| a.chunks(d).map(<[f64]>::to_vec))
            .collect();
        debug_assert!(rows.len() == group.len() * per_head * r);
        let n = orthogonal_complement_vector(&rows, d)?;
        for &h in &group {
            // GAQ (d×d, row-major, applied as Ā·GAQ) ← (I − nᵀn)·GAQ.
            let g = &mut can.generators[h];
            let gaq = &mut g[..d * d];
            for j in 0..d {
                let dot: f64 = (0..d).map(|k| n[k] * gaq[k * d + j]).sum();
                for i in 0..d {
                    gaq[i * d + j] -= n[i] * dot;
                }
            }
            // Atom 0 of every cell along +n, atom 1 along −n (first seed row).
            for (k, a) in can.a[h * per_head..(h + 1) * per_head]
                .iter_mut()
                .enumerate()
            {
                let shift = match k % m {
                    0 => t,
                    1 => -t,
                    _ => 0.0,
                };
                a[..d].iter_mut().zip(&n).for_each(|(x, y)| *x += shift * y);
            }
        }
    }
    generated.from_canonical(&can)
}
