//! The controls as the identifiability probe sees them.
use super::data::sample_inputs;
use super::loss::{gaps, voronoi_with_cells};
use super::model::{experts_of, predict};
use super::truth::{draw_truth, embed};
use super::{slots, Expert};
use crate::probe::{AtomState, Part, Probe, Role};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The controls as the identifiability probe sees them (`crate::probe`).
///
/// The cells are FIXED: those of the embedded truth, where the extra fitted expert (index
/// `k_true`) belongs to true expert 0 and expert `i < k_true` to true expert `i`. The nearest-
/// expert assignment of [`voronoi_loss`] jumps when two fitted experts trade places, and `D`
/// with it; with the assignment fixed, `D` is continuous in θ (Lipschitz inside the box), which
/// a search that moves θ near the truth needs. The two agree wherever every fitted expert is
/// nearest to its fixed cell's true expert, which holds in a neighbourhood of the embedded truth
/// (half the smallest distance between two true experts). Outside it the probe's `D` is the
/// loss of one fixed matching, which need not equal, nor bound either way, the nearest-
/// assignment `D` of the same θ (the nearest cells minimise the matching distance, not `D`);
/// the probe's ratios are read near the truth, where the two agree.
pub struct ControlProbe {
    expert: Expert,
    d: usize,
    /// The truth, `k_true` experts.
    true_theta: Vec<f64>,
    /// The truth embedded in the fitted family.
    embedded: Vec<f64>,
    bound: f64,
    x: Vec<f64>,
    fstar: Vec<f64>,
    roles: Vec<Role>,
    cells: Vec<usize>,
    rho: f64,
}

impl ControlProbe {
    /// A probe of `k_fit ∈ {k_true, k_true + 1}` experts against the truth drawn from
    /// `truth_seed`, on `n_inputs` inputs drawn from `input_seed`, in the box `[-bound, bound]`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        expert: Expert,
        k_true: usize,
        k_fit: usize,
        d: usize,
        truth_seed: u64,
        n_inputs: usize,
        input_seed: u64,
        bound: f64,
    ) -> ControlProbe {
        assert!(
            k_fit == k_true || k_fit == k_true + 1,
            "the probe embeds k_fit = k_true or k_true + 1 experts (got {k_fit} for {k_true})"
        );
        assert!(d >= 1 && k_true >= 1 && n_inputs >= 1);
        let true_theta = draw_truth(d, k_true, truth_seed);
        let copies: Vec<usize> = if k_fit > k_true { vec![0] } else { vec![] };
        let embedded = embed(&true_theta, d, &copies);
        let mut rng = ChaCha8Rng::seed_from_u64(input_seed);
        let x = sample_inputs(d, n_inputs, &mut rng);
        let fstar = predict(expert, d, &true_theta, &x);
        let mut roles = Vec::with_capacity(embedded.len());
        for j in 0..k_fit {
            let role = |part| Role {
                part,
                atoms: vec![j],
            };
            roles.extend((0..d).map(|_| role(Part::Gate)));
            roles.push(role(Part::Weight));
            roles.extend((0..=d).map(|_| role(Part::Value)));
        }
        let cells = (0..k_true).chain(copies).collect();
        ControlProbe {
            expert,
            d,
            true_theta,
            embedded,
            bound,
            x,
            fstar,
            roles,
            cells,
            rho: 2.0,
        }
    }

    /// The truth with its own `k_true` experts.
    pub fn true_theta(&self) -> &[f64] {
        &self.true_theta
    }

    /// `f_θ` on the probe's inputs.
    pub fn predict(&self, theta: &[f64]) -> Vec<f64> {
        predict(self.expert, self.d, theta, &self.x)
    }
}

impl Probe for ControlProbe {
    fn dim(&self) -> usize {
        self.embedded.len()
    }
    fn truth(&self) -> &[f64] {
        &self.embedded
    }
    fn bound(&self) -> f64 {
        self.bound
    }
    fn residuals(&self, theta: &[f64]) -> Vec<f64> {
        let scale = 1.0 / (self.fstar.len() as f64).sqrt();
        self.predict(theta)
            .iter()
            .zip(&self.fstar)
            .map(|(f, t)| (f - t) * scale)
            .collect()
    }
    // The Jacobian is the trait's central differences: 4(d+1) parameters per expert, cheap.
    fn loss(&self, theta: &[f64], smooth: f64) -> (f64, Vec<f64>) {
        voronoi_with_cells(
            theta,
            &self.true_theta,
            self.d,
            &self.cells,
            self.rho,
            smooth,
        )
    }
    fn roles(&self) -> &[Role] {
        &self.roles
    }
    fn cells(&self) -> Vec<Vec<usize>> {
        let kt = experts_of(&self.true_theta, self.d);
        (0..kt)
            .map(|j| {
                (0..self.cells.len())
                    .filter(|&i| self.cells[i] == j)
                    .collect()
            })
            .collect()
    }
    fn atom_states(&self, theta: &[f64]) -> Vec<AtomState> {
        self.cells
            .iter()
            .enumerate()
            .map(|(i, &j)| {
                let (gate, value) = gaps(theta, &self.true_theta, self.d, i, j);
                AtomState {
                    cell: j,
                    weight: theta[slots(self.d, i).beta0].exp(),
                    gate,
                    value,
                }
            })
            .collect()
    }
}
