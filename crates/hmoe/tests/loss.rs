//! Properties of the Voronoi loss (THEORY.md §4) and of the regression error.
use hmoe::param::parametrisation;
use hmoe::truth::Truth;
use hmoe::{regression_error, voronoi_loss, Atoms, Method, ModelConfig};

fn truth() -> Truth {
    Truth::draw(
        &ModelConfig::default(),
        &hmoe::TruthPrior::default(),
        "hora-tanh".parse().unwrap(),
        3,
    )
}

#[test]
fn loss_at_the_truth_is_zero() {
    let t = truth();
    assert_eq!(voronoi_loss(&t.atoms, &t.atoms, 2.0), 0.0);
    assert_eq!(regression_error(&t.model, &t.atoms, &t.atoms, 1000, 1), 0.0);
}

/// The truth split into `m` identical atoms of weight `exp(c*)/m`.
fn split(t: &Atoms, m: usize) -> Atoms {
    let mut a = Atoms::zeros(t.heads, t.slots, m, t.d, t.q);
    for h in 0..t.heads {
        for s in 0..t.slots {
            let k = t.index(h, s, 0);
            for i in 0..m {
                let j = a.index(h, s, i);
                a.dq_mut(j).copy_from_slice(t.dq(k));
                a.dv_mut(j).copy_from_slice(t.dv(k));
                a.c[j] = t.c[k] - (m as f64).ln();
            }
        }
    }
    a
}

#[test]
fn an_exact_split_of_the_truth_has_zero_loss_and_the_same_function() {
    let t = truth();
    let a = split(&t.atoms, 2);
    assert!(voronoi_loss(&a, &t.atoms, 2.0) < 1e-12);
    assert!(regression_error(&t.model, &a, &t.atoms, 1000, 1) < 1e-12);
}

#[test]
fn loss_is_invariant_to_the_order_of_atoms_in_a_cell() {
    let t = truth();
    let mut a = split(&t.atoms, 2);
    // Perturb the two atoms of every cell differently, then swap them.
    for k in 0..a.count() {
        a.c[k] += 0.1 * (k as f64 % 3.0) - 0.05;
        for (j, x) in a.dq_mut(k).iter_mut().enumerate() {
            *x += 0.01 * ((k * 7 + j) % 5) as f64;
        }
        for (j, x) in a.dv_mut(k).iter_mut().enumerate() {
            *x -= 0.02 * ((k * 3 + j) % 4) as f64;
        }
    }
    let mut b = a.clone();
    for h in 0..a.heads {
        for s in 0..a.slots {
            let (i0, i1) = (a.index(h, s, 0), a.index(h, s, 1));
            b.c.swap(i0, i1);
            let (q0, q1) = (a.dq(i0).to_vec(), a.dq(i1).to_vec());
            b.dq_mut(i0).copy_from_slice(&q1);
            b.dq_mut(i1).copy_from_slice(&q0);
            let (v0, v1) = (a.dv(i0).to_vec(), a.dv(i1).to_vec());
            b.dv_mut(i0).copy_from_slice(&v1);
            b.dv_mut(i1).copy_from_slice(&v0);
        }
    }
    let (la, lb) = (
        voronoi_loss(&a, &t.atoms, 2.0),
        voronoi_loss(&b, &t.atoms, 2.0),
    );
    assert!(la > 1e-3);
    assert_eq!(la, lb);
}

#[test]
fn loss_is_invariant_to_rescaling_the_low_rank_factors() {
    // BA = (BS)(S⁻¹A): rescale the rank-one factors of a lora estimate by s and 1/s.
    let cfg = ModelConfig::default();
    let t = truth();
    let p = parametrisation(Method::LORA, &cfg, 1);
    let theta: Vec<f64> = (0..p.dim())
        .map(|j| 0.3 * ((j as f64) * 0.7).sin())
        .collect();
    let mut a = p.new_atoms();
    p.atoms(&theta, &mut a);
    // lora layout per atom: AQ (r×d), BQ (d×r), AV (r×d), BV (q×r), c; here r = 1, d = q = 2.
    let mut scaled = theta.clone();
    let block = 2 + 2 + 2 + 2 + 1;
    for atom in 0..p.dim() / block {
        let o = atom * block;
        for j in 0..2 {
            scaled[o + j] *= 2.5; // AQ · S⁻¹ with S = 1/2.5
            scaled[o + 2 + j] /= 2.5; // BQ · S
            scaled[o + 4 + j] *= -0.4; // AV
            scaled[o + 6 + j] /= -0.4; // BV
        }
    }
    let mut b = p.new_atoms();
    p.atoms(&scaled, &mut b);
    let (la, lb) = (
        voronoi_loss(&a, &t.atoms, 2.0),
        voronoi_loss(&b, &t.atoms, 2.0),
    );
    assert!(la > 1e-3);
    assert!((la - lb).abs() < 1e-12 * la, "{la} vs {lb}");
    assert_ne!(theta, scaled);
}

#[test]
fn loss_grows_with_the_distance_to_the_truth() {
    let t = truth();
    let mut prev = 0.0;
    for eps in [1e-3, 1e-2, 1e-1] {
        let mut a = t.atoms.clone();
        a.dq.iter_mut().for_each(|x| *x += eps);
        let l = voronoi_loss(&a, &t.atoms, 2.0);
        assert!(l > prev);
        prev = l;
    }
}

#[test]
fn voronoi_parts_add_up_to_the_loss_and_find_the_dead_atoms() {
    let t = truth();
    let mut a = split(&t.atoms, 2);
    // Move every atom, and all but switch off the second atom of head 0, slot 1.
    for (k, v) in a.dq.iter_mut().enumerate() {
        *v += 0.01 * (k as f64 + 1.0);
    }
    for (k, v) in a.dv.iter_mut().enumerate() {
        *v -= 0.02 * (k as f64 % 3.0);
    }
    let dead = a.index(0, 1, 1);
    a.c[dead] = t.atoms.c[t.atoms.index(0, 1, 0)] - 10.0;
    a.dv_mut(dead).iter_mut().for_each(|v| *v = 3.5);
    let d = voronoi_loss(&a, &t.atoms, 2.0);
    let p = hmoe::voronoi_parts(&a, &t.atoms, 2.0, 0.01);
    assert_eq!(p.dead_atoms, 1);
    assert!(
        p.mass > 0.0 && p.spread_live > 0.0 && p.spread_dead > 0.0,
        "{p:?}"
    );
    let sum = p.mass + p.spread_live + p.spread_dead;
    assert!((sum - d).abs() <= 1e-12 * d, "{sum} vs {d}");
    // The dead atom's spread is its weight times its distance: tiny weight, large distance.
    let w = a.c[dead].exp();
    assert!(p.spread_dead > w && p.spread_dead < 100.0 * w, "{p:?}");
    // At the truth split evenly, nothing is dead and every term is zero but rounding.
    let p0 = hmoe::voronoi_parts(&split(&t.atoms, 2), &t.atoms, 2.0, 0.01);
    assert_eq!(p0.dead_atoms, 0);
    assert!(p0.mass < 1e-15 && p0.spread_live == 0.0 && p0.spread_dead == 0.0);
}
