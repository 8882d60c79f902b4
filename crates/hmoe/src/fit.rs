//! The least-squares estimator (THEORY.md §3): L-BFGS with More–Thuente line search (argmin) or
//! Levenberg–Marquardt on the residuals (`[fit] solver`, [`Solver`]), several starts near the
//! truth, a box `[-bound, bound]` on every parameter, and the guard that a fit must end at or below
//! the objective at the truth on its own data.
//!
//! Both solvers minimise the same objective `(1/n) Σ_k ‖Y_k − f_θ(X_k)‖²` (the kernel's value,
//! [`Smooth::value_and_grad`]) from the same starts, and every start's end point is scored the
//! same way, so their records compare directly. Levenberg–Marquardt is described at
//! [`levenberg_marquardt`].
//!
//! The box under L-BFGS: argmin's L-BFGS is unconstrained, so the objective carries the penalty
//! `λ Σ_j max(0, |θ_j| − bound)²`, which is exactly zero (value and gradient) inside the box, and
//! the final estimate is projected onto the box (`θ_j ← clamp(θ_j, −bound, bound)`); the recorded
//! objective and gradient are those of the projected point, without penalty. At a stationary point
//! the penalty leaves an excess of at most `|∂L/∂θ_j| / (2λ)` before projection.
use crate::atoms::Atoms;
use crate::config::{FitConfig, Solver};
use crate::data::sample_data;
use crate::error::{HmoeError, Result};
use crate::geometry::gauss_newton;
use crate::lm::damped_step;
use crate::model::{Model, Workspace};
use crate::param::{parametrisation, Parametrisation};
use crate::record::{derive_seed, FitJob, FitOutcome, FitRecord, Seeds, StartLog, StartOrigin};
use crate::truth::{draw_params, embed, Truth};
use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use ndarray::{Array1, Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::cell::RefCell;
use std::time::Instant;

/// What the estimator minimises, whatever the model family: an unpenalised least-squares
/// objective with its gradient in θ, and the box penalty around it ([`BoxPenalty`]). The HMoE
/// objective ([`Objective`]) and the classic softmax-gated MoE controls
/// (`controls::ControlObjective`) implement it; [`one_start`] and [`run_starts`] take any.
pub trait Smooth {
    /// Unpenalised objective and its gradient in θ.
    fn value_and_grad(&self, theta: &[f64]) -> (f64, Vec<f64>);
    /// The box and its penalty, with the caches argmin needs.
    fn box_penalty(&self) -> &BoxPenalty;
    /// The Gauss–Newton matrix `JᵀJ` of the residuals `r_k = (f_θ(X_k) − Y_k)/√n`, whose squared
    /// norm is the objective (so `Jᵀr` is half [`Smooth::value_and_grad`]'s gradient): what
    /// [`Solver::Lm`] needs. `None` (the default) for a family without it, which then runs
    /// L-BFGS only.
    fn gauss_newton(&self, _theta: &[f64]) -> Option<Array2<f64>> {
        None
    }
    /// Penalised objective and gradient, cached for the last point.
    fn penalised(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        self.box_penalty().apply(theta, |t| self.value_and_grad(t))
    }
}

/// The box `[-bound, bound]`, the weight of its penalty, and the last and best points seen.
pub struct BoxPenalty {
    pub bound: f64,
    pub penalty: f64,
    cache: RefCell<PenaltyCache>,
}

#[derive(Default)]
struct PenaltyCache {
    /// The last point evaluated, with its value and gradient (argmin asks for both separately).
    last: Option<(Vec<f64>, f64, Vec<f64>)>,
    /// The lowest penalised value seen, kept in case the line search errors out.
    best: Option<(Vec<f64>, f64)>,
}

impl BoxPenalty {
    pub fn new(bound: f64, penalty: f64) -> Self {
        BoxPenalty {
            bound,
            penalty,
            cache: RefCell::new(PenaltyCache::default()),
        }
    }

    /// `value_and_grad(θ)` plus the penalty, cached for the last point.
    fn apply(
        &self,
        theta: &[f64],
        value_and_grad: impl FnOnce(&[f64]) -> (f64, Vec<f64>),
    ) -> (f64, Vec<f64>) {
        if let Some((t, f, g)) = &self.cache.borrow().last {
            if t.as_slice() == theta {
                return (*f, g.clone());
            }
        }
        let (mut f, mut g) = value_and_grad(theta);
        for (t, gj) in theta.iter().zip(g.iter_mut()) {
            let excess = t.abs() - self.bound;
            if excess > 0.0 {
                f += self.penalty * excess * excess;
                *gj += 2.0 * self.penalty * excess * t.signum();
            }
        }
        let mut sc = self.cache.borrow_mut();
        if f.is_finite() && sc.best.as_ref().is_none_or(|(_, b)| f < *b) {
            sc.best = Some((theta.to_vec(), f));
        }
        sc.last = Some((theta.to_vec(), f, g.clone()));
        (f, g)
    }

    fn best_seen(&self) -> Option<Vec<f64>> {
        self.cache.borrow().best.as_ref().map(|(t, _)| t.clone())
    }
}

/// The penalised least-squares objective of one data set, in a parametrisation.
pub struct Objective<'a> {
    pub model: &'a Model,
    pub param: &'a dyn Parametrisation,
    pub x: ArrayView2<'a, f64>,
    pub y: ArrayView2<'a, f64>,
    boxed: BoxPenalty,
    scratch: RefCell<Scratch>,
}

struct Scratch {
    ws: Workspace,
    atoms: Atoms,
    grad_atoms: Atoms,
}

impl<'a> Objective<'a> {
    pub fn new(
        model: &'a Model,
        param: &'a dyn Parametrisation,
        x: ArrayView2<'a, f64>,
        y: ArrayView2<'a, f64>,
        bound: f64,
        penalty: f64,
    ) -> Self {
        let scratch = Scratch {
            ws: Workspace::default(),
            atoms: param.new_atoms(),
            grad_atoms: param.new_atoms(),
        };
        Objective {
            model,
            param,
            x,
            y,
            boxed: BoxPenalty::new(bound, penalty),
            scratch: RefCell::new(scratch),
        }
    }
}

impl Smooth for Objective<'_> {
    fn value_and_grad(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let mut sc = self.scratch.borrow_mut();
        let Scratch {
            ws,
            atoms,
            grad_atoms,
        } = &mut *sc;
        self.param.atoms(theta, atoms);
        let f = self
            .model
            .objective_and_grad(atoms, self.x, self.y, grad_atoms, ws);
        let mut g = vec![0.0; theta.len()];
        self.param.pullback(theta, grad_atoms, &mut g);
        (f, g)
    }

    fn box_penalty(&self) -> &BoxPenalty {
        &self.boxed
    }

    /// [`crate::geometry::gauss_newton`] on the fit's own inputs: accumulated in blocks of
    /// samples at the atom level and pulled back to θ once, so no `n × p` Jacobian is stored.
    fn gauss_newton(&self, theta: &[f64]) -> Option<Array2<f64>> {
        Some(gauss_newton(self.model, self.param, theta, self.x))
    }
}

/// argmin owns its problem; this borrows the objective so its scratch outlives the run.
struct Borrowed<'b, S: ?Sized>(&'b S);

impl<S: Smooth + ?Sized> CostFunction for Borrowed<'_, S> {
    type Param = Array1<f64>;
    type Output = f64;
    fn cost(&self, p: &Array1<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.0.penalised(p.as_slice().expect("contiguous")).0)
    }
}

impl<S: Smooth + ?Sized> Gradient for Borrowed<'_, S> {
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;
    fn gradient(&self, p: &Array1<f64>) -> std::result::Result<Array1<f64>, argmin::core::Error> {
        Ok(Array1::from(
            self.0.penalised(p.as_slice().expect("contiguous")).1,
        ))
    }
}

/// Why a start stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stop {
    /// L-BFGS: argmin's convergence (its gradient or cost tolerance; argmin does not say which).
    Tolerance,
    /// Levenberg–Marquardt: an accepted step lowered the objective by less than `tol_cost`
    /// relative to it.
    Cost,
    /// Levenberg–Marquardt: the gradient, projected on the box, fell below `tol_grad`.
    Grad,
    /// The iteration cap `max_iters`.
    MaxIters,
    /// L-BFGS: the line search could not progress (the best point seen is kept).
    LineSearch,
    /// Levenberg–Marquardt: the damping reached its cap with no step lowering the objective,
    /// a minimum to working precision (or a corner of the box).
    Stalled,
    /// L-BFGS: any other of argmin's termination reasons.
    Other,
}

impl Stop {
    /// A stop on a tolerance, which the record calls converged (not the iteration cap, a failed
    /// line search or a damping that ran away).
    pub fn converged(self) -> bool {
        matches!(self, Stop::Tolerance | Stop::Cost | Stop::Grad)
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Tolerance => "tolerance",
            Stop::Cost => "tol_cost",
            Stop::Grad => "tol_grad",
            Stop::MaxIters => "max_iters",
            Stop::LineSearch => "line search",
            Stop::Stalled => "stalled",
            Stop::Other => "other",
        })
    }
}

/// The outcome of one start.
pub struct Start {
    pub theta: Vec<f64>,
    pub objective: f64,
    pub grad_norm: f64,
    pub iterations: u64,
    pub converged: bool,
    pub stop: Stop,
}

/// Project θ onto the box `[-bound, bound]`.
pub fn clamp_to_box(theta: &mut [f64], bound: f64) {
    theta.iter_mut().for_each(|t| *t = t.clamp(-bound, bound));
}

/// Add `N(0, init_noise²)` to every coordinate, in order, then project onto the box.
pub fn jitter(theta: &mut [f64], fit: &FitConfig, rng: &mut impl rand::Rng) {
    for t in theta.iter_mut() {
        let z: f64 = StandardNormal.sample(rng);
        *t += fit.init_noise * z;
    }
    clamp_to_box(theta, fit.bound);
}

/// One run of `fit.solver` from `init` under `fit`'s stopping rules, ending in the objective's
/// box; the recorded objective and gradient are [`Smooth::value_and_grad`]'s at the end point.
pub fn one_start<S: Smooth + ?Sized>(obj: &S, init: Vec<f64>, fit: &FitConfig) -> Result<Start> {
    let (mut theta, iterations, stop) = match fit.solver {
        Solver::Lbfgs => lbfgs(obj, init, fit)?,
        Solver::Lm => levenberg_marquardt(obj, init, fit)?,
    };
    clamp_to_box(&mut theta, obj.box_penalty().bound);
    let (objective, g) = obj.value_and_grad(&theta);
    let grad_norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
    Ok(Start {
        theta,
        objective,
        grad_norm,
        iterations,
        converged: stop.converged(),
        stop,
    })
}

/// L-BFGS on the penalised objective (argmin); the end point before projection onto the box.
fn lbfgs<S: Smooth + ?Sized>(
    obj: &S,
    init: Vec<f64>,
    fit: &FitConfig,
) -> Result<(Vec<f64>, u64, Stop)> {
    let ls = MoreThuenteLineSearch::new();
    let solver = LBFGS::new(ls, fit.memory)
        .with_tolerance_grad(fit.tol_grad)
        .and_then(|s| s.with_tolerance_cost(fit.tol_cost))
        .map_err(|e| HmoeError::Optimiser(e.to_string()))?;
    let run = Executor::new(Borrowed(obj), solver)
        .configure(|st| {
            st.param(Array1::from(init.clone()))
                .max_iters(fit.max_iters)
        })
        .run();
    Ok(match run {
        Ok(res) => {
            let st = res.state();
            let stop = match st.get_termination_reason() {
                Some(TerminationReason::SolverConverged) => Stop::Tolerance,
                Some(TerminationReason::MaxItersReached) => Stop::MaxIters,
                _ => Stop::Other,
            };
            let theta: Vec<f64> = st.get_best_param().map(|p| p.to_vec()).unwrap_or(init);
            (theta, st.get_iter(), stop)
        }
        // A line search that cannot make progress ends the start; keep the best point it reached.
        Err(_) => (
            obj.box_penalty().best_seen().unwrap_or(init),
            fit.max_iters,
            Stop::LineSearch,
        ),
    })
}

/// Largest damping before a start is declared stalled, and the smallest it falls to.
const MU_MAX: f64 = 1e12;
const MU_MIN: f64 = 1e-12;

/// Levenberg–Marquardt on the residuals `r_k = (f_θ(X_k) − Y_k)/√n`, whose squared norm is the
/// objective `L(θ)`: from θ (in the box), the step solves `(JᵀJ + μD) δ = −Jᵀr` with `JᵀJ` from
/// [`Smooth::gauss_newton`], `Jᵀr = ∇L/2` from [`Smooth::value_and_grad`] (the same gradient
/// L-BFGS follows) and Marquardt's scaling `D = diag(JᵀJ)` ([`crate::lm::damped_step`]). The
/// trial point is `clamp(θ + δ)`; it is accepted if its objective is strictly lower (then
/// `μ ← max(μ/10, 10⁻¹²)`), else rejected (`μ ← 10μ`, no new Jacobian). `μ` starts at `10⁻³`.
///
/// Stops: an accepted step lowered `L` by less than `tol_cost · L` ([`Stop::Cost`]); the
/// gradient projected on the box has norm below `tol_grad` ([`Stop::Grad`]); `max_iters`
/// Gauss–Newton matrices formed ([`Stop::MaxIters`]); `μ` above `10¹²` with no step accepted
/// ([`Stop::Stalled`]: no descent at working precision).
///
/// At the boundary of the box: the step is computed as if unconstrained and then projected
/// coordinate-wise, so a coordinate whose step points out of the box stays on its bound while the
/// others take their unconstrained values. Such a projected step need not lower `L`; the
/// rejection raises `μ`, which turns the step toward the scaled steepest-descent direction
/// `−D⁻¹∇L/(2μ)`, whose projection does lower `L` for `μ` large enough, so the iteration still
/// descends, at first-order speed only along the face of the box. The gradient test ignores the
/// components that push out of the box on a coordinate at its bound (the first-order optimality
/// condition of the box-constrained problem). Inside the box the solver never sees the penalty
/// (it is zero there), so it minimises exactly what L-BFGS minimises.
pub fn levenberg_marquardt<S: Smooth + ?Sized>(
    obj: &S,
    init: Vec<f64>,
    fit: &FitConfig,
) -> Result<(Vec<f64>, u64, Stop)> {
    let bound = obj.box_penalty().bound;
    let mut theta = init;
    clamp_to_box(&mut theta, bound);
    let (mut cost, mut grad) = obj.value_and_grad(&theta);
    let mut mu = 1e-3;
    let mut iterations = 0;
    loop {
        if projected_norm(&theta, &grad, bound) < fit.tol_grad {
            return Ok((theta, iterations, Stop::Grad));
        }
        if iterations >= fit.max_iters {
            return Ok((theta, iterations, Stop::MaxIters));
        }
        iterations += 1;
        let jtj = obj.gauss_newton(&theta).ok_or(HmoeError::InvalidConfig {
            field: "solver",
            value: Solver::Lm.to_string(),
            allowed: "lbfgs (this model family provides no Gauss–Newton matrix)",
        })?;
        let rhs: Vec<f64> = grad.iter().map(|g| -0.5 * g).collect();
        loop {
            if let Some(step) = damped_step(&jtj, &rhs, mu) {
                let mut next: Vec<f64> = theta.iter().zip(&step).map(|(t, d)| t + d).collect();
                clamp_to_box(&mut next, bound);
                let (c, g) = obj.value_and_grad(&next);
                if c < cost {
                    let decrease = (cost - c) / cost;
                    (theta, cost, grad) = (next, c, g);
                    mu = (mu / 10.0).max(MU_MIN);
                    if decrease < fit.tol_cost {
                        return Ok((theta, iterations, Stop::Cost));
                    }
                    break;
                }
            }
            mu *= 10.0;
            if mu > MU_MAX {
                return Ok((theta, iterations, Stop::Stalled));
            }
        }
    }
}

/// The norm of the gradient without the components that push a coordinate at its bound out of
/// the box (a descent step `−g_j` would leave it).
fn projected_norm(theta: &[f64], grad: &[f64], bound: f64) -> f64 {
    theta
        .iter()
        .zip(grad)
        .map(|(t, g)| {
            let blocked = (*t >= bound && *g < 0.0) || (*t <= -bound && *g > 0.0);
            if blocked {
                0.0
            } else {
                g * g
            }
        })
        .sum::<f64>()
        .sqrt()
}

/// Every start of one fit and the kept one (lowest objective, the first on ties).
pub struct Starts {
    pub best: Start,
    /// Starts run.
    pub starts: usize,
    pub log: Vec<StartLog>,
    /// Why each start stopped, in the order of `log` (kept in memory, not in the record: the
    /// record's `converged` says whether it was on a tolerance).
    pub stops: Vec<Stop>,
}

/// The starts of THEORY.md §3 for any [`Smooth`] objective: `fit.restarts` starts at
/// `near_truth(k)`, then up to `fit.extra_restarts` more while the best is above the objective
/// at the truth (`at_truth`: `None` when the family does not contain the truth, where that guard
/// does not apply), then `fit.prior_starts` starts at `prior(k)`.
pub fn run_starts<S: Smooth + ?Sized>(
    obj: &S,
    fit: &FitConfig,
    at_truth: Option<f64>,
    mut near_truth: impl FnMut(usize) -> Vec<f64>,
    mut prior: impl FnMut(usize) -> Vec<f64>,
) -> Result<Starts> {
    let mut best: Option<Start> = None;
    let mut starts = 0;
    let mut starts_log = Vec::new();
    let mut stops = Vec::new();
    let mut keep = |s: Start, origin: StartOrigin, best: &mut Option<Start>| {
        stops.push(s.stop);
        starts_log.push(StartLog {
            origin,
            theta: s.theta.clone(),
            objective: s.objective,
            grad_norm: s.grad_norm,
            iterations: s.iterations,
            converged: s.converged,
        });
        if best.as_ref().is_none_or(|b| s.objective < b.objective) {
            *best = Some(s);
        }
    };
    for k in 0..fit.restarts + fit.extra_restarts {
        let good_enough = best
            .as_ref()
            .is_some_and(|b| at_truth.is_none_or(|t| passes_guard(b.objective, t)));
        if k >= fit.restarts && good_enough {
            break;
        }
        let s = one_start(obj, near_truth(k), fit)?;
        starts += 1;
        keep(s, StartOrigin::NearTruth, &mut best);
    }
    for k in 0..fit.prior_starts {
        let s = one_start(obj, prior(k), fit)?;
        starts += 1;
        keep(s, StartOrigin::Prior, &mut best);
    }
    Ok(Starts {
        best: best.expect("at least one start runs"),
        starts,
        log: starts_log,
        stops,
    })
}

/// The starting point of start `k`: the truth in the fitted family plus Gaussian noise, or, when
/// the family does not contain the truth, a draw from the prior plus the same noise.
fn initial_point(
    param: &dyn Parametrisation,
    job: &FitJob,
    embedded: Option<&Vec<f64>>,
    seeds: &Seeds,
    k: usize,
) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
        "start",
        &[&seeds.init.to_string(), &k.to_string()],
    ));
    let mut theta = match embedded {
        Some(e) => e.clone(),
        None => draw_params(param, &job.model, &job.truth_prior, &mut rng),
    };
    jitter(&mut theta, &job.fit, &mut rng);
    theta
}

/// The starting point of prior start `k`: a fresh draw of the truth's prior, in the box.
fn prior_point(param: &dyn Parametrisation, job: &FitJob, seeds: &Seeds, k: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
        "prior-start",
        &[&seeds.init.to_string(), &k.to_string()],
    ));
    let mut theta = draw_params(param, &job.model, &job.truth_prior, &mut rng);
    clamp_to_box(&mut theta, job.fit.bound);
    theta
}

/// Whether a fit's objective passes the guard (at or below the truth's, up to rounding).
pub fn passes_guard(objective: f64, at_truth: f64) -> bool {
    objective <= at_truth * (1.0 + 1e-12)
}

/// Fit one job: draw the truth and the data from the job's seeds, run the starts, keep the best.
pub fn run_fit(job: &FitJob) -> Result<FitRecord> {
    run_fit_with_stops(job).map(|(record, _)| record)
}

/// [`run_fit`], with why each start stopped, in the order of the record's `starts_log`.
pub fn run_fit_with_stops(job: &FitJob) -> Result<(FitRecord, Vec<Stop>)> {
    let t0 = Instant::now();
    let seeds = Seeds::for_job(job);
    let truth = Truth::draw(&job.model, &job.truth_prior, job.truth, seeds.truth);
    let (x, y) = sample_data(&truth.model, &truth.atoms, &job.data, job.n, seeds.data);
    let param = parametrisation(job.method, &job.model, job.model.atoms);
    let embedded = embed(truth.param.as_ref(), &truth.theta, param.as_ref());
    let truth_in_family = embedded.is_some();
    let objective_at_truth = truth.model.objective(&truth.atoms, x.view(), y.view());
    let obj = Objective::new(
        &truth.model,
        param.as_ref(),
        x.view(),
        y.view(),
        job.fit.bound,
        job.fit.box_penalty,
    );

    let Starts {
        best,
        starts,
        log: starts_log,
        stops,
    } = run_starts(
        &obj,
        &job.fit,
        truth_in_family.then_some(objective_at_truth),
        |k| initial_point(param.as_ref(), job, embedded.as_ref(), &seeds, k),
        |k| prior_point(param.as_ref(), job, &seeds, k),
    )?;
    let mut est_atoms = param.new_atoms();
    param.atoms(&best.theta, &mut est_atoms);
    let outcome = FitOutcome::of_best(
        &best,
        objective_at_truth,
        truth_in_family,
        starts,
        t0.elapsed().as_secs_f64(),
        starts_log,
    );
    let record = FitRecord {
        job: job.clone(),
        seeds,
        truth_in_family,
        true_theta: truth.theta,
        true_atoms: truth.atoms,
        theta: best.theta,
        est_atoms,
        outcome,
    };
    Ok((record, stops))
}
