//! The identifiability probe (THEORY.md §5a): its pieces against finite differences, and the
//! search against the one answer known in closed form, `lora`'s exact flat set.
mod common;

use common::{config, max_abs, near, FAMILIES};
use hmoe::probe::{search, HmoeProbe, Part, Probe, StartKind};
use hmoe::{voronoi_loss, voronoi_loss_and_grad, Method, ModelConfig, TruthPrior};

fn probe(method: &str, truth: &str, atoms: usize) -> HmoeProbe {
    probe_with(method, truth, atoms, false)
}

fn probe_with(method: &str, truth: &str, atoms: usize, self_attention: bool) -> HmoeProbe {
    let cfg = ModelConfig {
        atoms,
        self_attention,
        ..ModelConfig::default()
    };
    let (m, t): (Method, Method) = (method.parse().unwrap(), truth.parse().unwrap());
    HmoeProbe::new(&cfg, &TruthPrior::default(), t, m, 11, 128, 12, 4.0, 2.0).unwrap()
}

#[test]
fn the_truth_has_zero_misfit_and_zero_loss() {
    for (m, t) in FAMILIES {
        for atoms in [1, 2] {
            let p = probe(m, t, atoms);
            let r = max_abs(p.residuals(p.truth()));
            let (d, _) = p.loss(p.truth(), 0.0);
            assert!(r < 1e-15 && d < 1e-12, "{m} m={atoms}: residual {r}, D {d}");
        }
    }
}

#[test]
fn analytic_jacobian_matches_central_differences() {
    /// The same family through the trait's default (finite-difference) Jacobian.
    struct Fd<'a>(&'a HmoeProbe);
    impl Probe for Fd<'_> {
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn truth(&self) -> &[f64] {
            self.0.truth()
        }
        fn bound(&self) -> f64 {
            self.0.bound()
        }
        fn residuals(&self, t: &[f64]) -> Vec<f64> {
            self.0.residuals(t)
        }
        fn loss(&self, t: &[f64], s: f64) -> (f64, Vec<f64>) {
            self.0.loss(t, s)
        }
        fn roles(&self) -> &[hmoe::probe::Role] {
            self.0.roles()
        }
        fn cells(&self) -> Vec<Vec<usize>> {
            self.0.cells()
        }
        fn atom_states(&self, t: &[f64]) -> Vec<hmoe::probe::AtomState> {
            self.0.atom_states(t)
        }
    }
    for (m, t) in FAMILIES {
        let p = probe(m, t, 2);
        let th = near(&p, 0.1);
        let (a, f) = (p.jacobian(&th), Fd(&p).jacobian(&th));
        let scale = max_abs(f.iter().copied());
        let diff = max_abs((&a - &f).iter().copied());
        assert!(diff < 1e-7 * scale, "{m}: {diff} against {scale}");
    }
}

#[test]
fn loss_gradient_matches_central_differences_and_the_loss() {
    for (m, t) in FAMILIES {
        for atoms in [1, 2] {
            let p = probe(m, t, atoms);
            let th = near(&p, 0.05);
            for smooth in [0.0, 1e-3] {
                let (d, g) = p.loss(&th, smooth);
                for j in 0..th.len() {
                    let h = 1e-6;
                    let (mut up, mut down) = (th.clone(), th.clone());
                    up[j] += h;
                    down[j] -= h;
                    let fd = (p.loss(&up, smooth).0 - p.loss(&down, smooth).0) / (2.0 * h);
                    assert!(
                        (fd - g[j]).abs() < 1e-6 * (1.0 + fd.abs()),
                        "{m} m={atoms} smooth={smooth} θ_{j}: {fd} vs {}",
                        g[j]
                    );
                }
                // Rounding off the kinks moves D by less than `smooth` per rounded term.
                let (d0, _) = p.loss(&th, 0.0);
                assert!(
                    d <= d0 && d0 - d <= 16.0 * smooth + 1e-15,
                    "{m}: {d} vs {d0}"
                );
            }
        }
    }
}

#[test]
fn the_self_attention_loss_compares_symmetric_gates_and_its_gradient_matches() {
    for (m, t) in [("lora", "hora-tanh"), ("hora-tanh", "hora-tanh")] {
        let p = probe_with(m, t, 2, true);
        assert!(p.loss(p.truth(), 0.0).0 < 1e-12);
        let th = near(&p, 0.05);
        let (_, g) = p.loss(&th, 1e-3);
        for j in 0..th.len() {
            let h = 1e-6;
            let (mut up, mut down) = (th.clone(), th.clone());
            up[j] += h;
            down[j] -= h;
            let fd = (p.loss(&up, 1e-3).0 - p.loss(&down, 1e-3).0) / (2.0 * h);
            assert!(
                (fd - g[j]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{m} θ_{j}: {fd} vs {}",
                g[j]
            );
        }
    }
    // lora's gate factors swapped (ΔQ → ΔQᵀ): a different gate, the same f and the same D.
    let p = probe_with("lora", "hora-tanh", 1, true);
    let mut th = p.truth().to_vec();
    // Block per atom: AQ (1×2), BQ (2×1), AV, BV, c; swapping AQ and BQᵀ transposes ΔQ.
    let block = 2 + 2 + 2 + 2 + 1;
    for k in 0..th.len() / block {
        let o = k * block;
        th.swap(o, o + 2);
        th.swap(o + 1, o + 3);
    }
    let r = max_abs(p.residuals(&th));
    assert!(r < 1e-14 && p.loss(&th, 0.0).0 < 1e-12, "{r}");
}

#[test]
fn loss_with_gradient_is_the_voronoi_loss() {
    let cfg = ModelConfig {
        atoms: 2,
        ..ModelConfig::default()
    };
    let truth = hmoe::truth::Truth::draw(
        &cfg,
        &TruthPrior::default(),
        "hora-tanh".parse().unwrap(),
        3,
    );
    let fitted = hmoe::param::parametrisation("lora".parse().unwrap(), &cfg, 2);
    let th: Vec<f64> = (0..fitted.dim())
        .map(|j| ((j * 13 % 7) as f64 - 3.0) / 5.0)
        .collect();
    let mut est = fitted.new_atoms();
    fitted.atoms(&th, &mut est);
    let mut grad = fitted.new_atoms();
    let a = voronoi_loss_and_grad(&est, &truth.atoms, 2.0, 0.0, &mut grad);
    let b = voronoi_loss(&est, &truth.atoms, 2.0);
    assert!((a - b).abs() <= 1e-14 * b, "{a} vs {b}");
}

#[test]
fn roles_name_the_part_each_parameter_moves() {
    let p = probe("lora", "hora-tanh", 2);
    // lora's block per atom: AQ (r×d), BQ (d×r), AV (r×d), BV (q×r), c.
    let parts: Vec<Part> = p.roles()[..9].iter().map(|r| r.part).collect();
    use Part::*;
    assert_eq!(
        parts,
        [Gate, Gate, Gate, Gate, Value, Value, Value, Value, Weight]
    );
    assert!(p.roles().iter().all(|r| r.atoms.len() == 1));
    // hora: the generators act on every atom; the seeds on Q and V together.
    let h = probe("hora-tanh", "hora-tanh", 2);
    let all = h.cells().iter().map(|c| c.len()).sum::<usize>();
    assert!(h
        .roles()
        .iter()
        .any(|r| r.part == Gate && r.atoms.len() == all));
    assert!(h
        .roles()
        .iter()
        .any(|r| r.part == Value && r.atoms.len() == all));
    assert!(h
        .roles()
        .iter()
        .any(|r| r.part == Both && r.atoms.len() == 1));
    assert!(!h
        .roles()
        .iter()
        .any(|r| r.part == Value && r.atoms.len() == 1));
}

#[test]
fn the_search_finds_loras_flat_set_and_holds_d_at_epsilon() {
    let p = probe("lora", "hora-tanh", 2);
    let eps = 0.05;
    let starts = vec![
        (StartKind::Random, 3),
        (StartKind::Value, 3),
        (StartKind::Split, 3),
    ];
    let s = search(&p, &config(eps, starts));
    let best = s.best().unwrap();
    // f_θ = f* to rounding while D = ε: a flat set (THEORY §5a).
    assert!(best.misfit < 1e-14, "misfit {}", best.misfit);
    assert!(
        (best.loss / eps - 1.0).abs() < 0.02,
        "D/ε = {}",
        best.loss / eps
    );
    assert!(!best.upper_bound);
    // Every start begins on D = ε.
    for r in &s.results {
        assert!(
            (r.rounds[0].loss / eps - 1.0).abs() < 1e-9,
            "{:?}",
            r.rounds[0]
        );
    }
}

#[test]
fn a_search_is_deterministic() {
    let p = probe("hora-tanh", "hora-tanh", 2);
    let cfg = config(0.1, vec![(StartKind::Random, 1), (StartKind::Shrink, 1)]);
    let (a, b) = (search(&p, &cfg), search(&p, &cfg));
    assert_eq!(a, b);
}
