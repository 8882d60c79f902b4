//! The identifiability probe of THEORY.md §5a: how small can `‖f_θ − f*‖` be while the
//! Voronoi loss `D(θ, θ*)` is held at `ε`?
//!
//! `R(ε) = min { ‖f_θ − f*‖_{L2(μ)} / D(θ, θ*) : θ in the box, D(θ, θ*) ≈ ε }`, with `μ` a fixed
//! sample of inputs. Bounded away from 0 as `ε → 0`: the inverse bound holds and `D` has
//! parametric rates; exactly 0: a flat set; falling to 0 with `ε`: parameter interaction.
//!
//! A model family enters through [`Probe`]: θ ↦ the misfit `(1/n) Σ_k ‖f_θ(x_k) − f*(x_k)‖²` and
//! `D(θ, θ*)`, both with gradients, and the role of every parameter (which atoms it moves and
//! whether through the gate, the value or the weight), from which `search` builds structured
//! starts (random directions, gate-only and value-only moves, a symmetric split of a cell, a
//! shrinking weight with a far-moved atom). The HMoE families implement it in `HmoeProbe`;
//! the classic softmax-gated MoE controls in `controls::ControlProbe`.
use serde::{Deserialize, Serialize};

/// Through which part of an atom a parameter acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The mixing weight (`c`, or the gate's intercept in the controls).
    Weight,
    /// The gate only (`ΔQ`; the controls' `β`).
    Gate,
    /// The expert only (`ΔV`; the controls' `a, b`).
    Value,
    /// Both (the seeds of `replora` and `hora`, which drive Q and V together).
    Both,
}

/// What one parameter moves: its part and the fitted atoms it acts on (sorted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub part: Part,
    pub atoms: Vec<usize>,
}

/// One fitted atom at a point, against the true atom of its Voronoi cell.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AtomState {
    /// Index of the true atom whose cell holds it.
    pub cell: usize,
    /// Its mixing weight `exp(c)` (the controls: `exp(β0)`).
    pub weight: f64,
    /// Distance of its gate part to the true atom's (`‖ΔQ − ΔQ*‖`; controls: `‖β − β*‖`).
    pub gate: f64,
    /// Distance of its expert part (`‖ΔV − ΔV*‖`; controls: `‖(a, b) − (a*, b*)‖`).
    pub value: f64,
}

/// A model family with its truth and a fixed sample of inputs, as the probe sees it.
pub trait Probe {
    /// Number of free parameters.
    fn dim(&self) -> usize;
    /// The truth in this family's layout (`misfit(truth) = 0`, `loss(truth) = 0` up to rounding).
    fn truth(&self) -> &[f64];
    /// The box `[-b, b]` on every parameter (`f64::INFINITY`: no box).
    fn bound(&self) -> f64;
    /// `(1/n) Σ_k ‖f_θ(x_k) − f*(x_k)‖²` over the probe's inputs, and its gradient in θ.
    fn misfit(&self, theta: &[f64]) -> (f64, Vec<f64>);
    /// `D(θ, θ*)` and its gradient in θ (a subgradient at a kink: a norm at 0 contributes 0).
    fn loss(&self, theta: &[f64]) -> (f64, Vec<f64>);
    /// The role of every parameter, in θ's order.
    fn roles(&self) -> &[Role];
    /// The fitted atoms of each Voronoi cell at the embedded truth, one list per true atom.
    fn cells(&self) -> Vec<Vec<usize>>;
    /// Every fitted atom at θ against its cell's true atom.
    fn atom_states(&self, theta: &[f64]) -> Vec<AtomState>;
}
