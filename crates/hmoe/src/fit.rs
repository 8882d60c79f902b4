//! The least-squares estimator (THEORY.md §3): L-BFGS with More–Thuente line search (argmin),
//! several starts near the truth, a box `[-bound, bound]` on every parameter, and the guard that a
//! fit must end at or below the objective at the truth on its own data.
//!
//! The box: argmin's L-BFGS is unconstrained, so the objective carries the penalty
//! `λ Σ_j max(0, |θ_j| − bound)²`, which is exactly zero (value and gradient) inside the box, and
//! the final estimate is projected onto the box (`θ_j ← clamp(θ_j, −bound, bound)`); the recorded
//! objective and gradient are those of the projected point, without penalty. At a stationary point
//! the penalty leaves an excess of at most `|∂L/∂θ_j| / (2λ)` before projection.
use crate::atoms::Atoms;
use crate::data::sample_data;
use crate::error::{HmoeError, Result};
use crate::model::{Model, Workspace};
use crate::param::{parametrisation, Parametrisation};
use crate::record::{derive_seed, FitJob, FitRecord, FitStatus, Seeds, StartLog, StartOrigin};
use crate::truth::{draw_params, embed, Truth};
use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use ndarray::{Array1, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::cell::RefCell;
use std::time::Instant;

/// The penalised least-squares objective of one data set, in a parametrisation.
pub struct Objective<'a> {
    pub model: &'a Model,
    pub param: &'a dyn Parametrisation,
    pub x: ArrayView2<'a, f64>,
    pub y: ArrayView2<'a, f64>,
    pub bound: f64,
    pub penalty: f64,
    scratch: RefCell<Scratch>,
}

struct Scratch {
    ws: Workspace,
    atoms: Atoms,
    grad_atoms: Atoms,
    /// The last point evaluated, with its value and gradient (argmin asks for both separately).
    last: Option<(Vec<f64>, f64, Vec<f64>)>,
    /// The lowest penalised value seen, kept in case the line search errors out.
    best: Option<(Vec<f64>, f64)>,
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
            last: None,
            best: None,
        };
        Objective {
            model,
            param,
            x,
            y,
            bound,
            penalty,
            scratch: RefCell::new(scratch),
        }
    }

    /// Unpenalised objective and its gradient in θ.
    pub fn value_and_grad(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let mut sc = self.scratch.borrow_mut();
        let Scratch {
            ws,
            atoms,
            grad_atoms,
            ..
        } = &mut *sc;
        self.param.atoms(theta, atoms);
        let f = self
            .model
            .objective_and_grad(atoms, self.x, self.y, grad_atoms, ws);
        let mut g = vec![0.0; theta.len()];
        self.param.pullback(theta, grad_atoms, &mut g);
        (f, g)
    }

    /// Penalised objective and gradient, cached for the last point.
    pub fn penalised(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        if let Some((t, f, g)) = &self.scratch.borrow().last {
            if t.as_slice() == theta {
                return (*f, g.clone());
            }
        }
        let (mut f, mut g) = self.value_and_grad(theta);
        for (t, gj) in theta.iter().zip(g.iter_mut()) {
            let excess = t.abs() - self.bound;
            if excess > 0.0 {
                f += self.penalty * excess * excess;
                *gj += 2.0 * self.penalty * excess * t.signum();
            }
        }
        let mut sc = self.scratch.borrow_mut();
        if f.is_finite() && sc.best.as_ref().is_none_or(|(_, b)| f < *b) {
            sc.best = Some((theta.to_vec(), f));
        }
        sc.last = Some((theta.to_vec(), f, g.clone()));
        (f, g)
    }

    fn best_seen(&self) -> Option<Vec<f64>> {
        self.scratch.borrow().best.as_ref().map(|(t, _)| t.clone())
    }
}

/// argmin owns its problem; this borrows the objective so its scratch outlives the run.
struct Borrowed<'b, 'a>(&'b Objective<'a>);

impl CostFunction for Borrowed<'_, '_> {
    type Param = Array1<f64>;
    type Output = f64;
    fn cost(&self, p: &Array1<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.0.penalised(p.as_slice().expect("contiguous")).0)
    }
}

impl Gradient for Borrowed<'_, '_> {
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;
    fn gradient(&self, p: &Array1<f64>) -> std::result::Result<Array1<f64>, argmin::core::Error> {
        Ok(Array1::from(
            self.0.penalised(p.as_slice().expect("contiguous")).1,
        ))
    }
}

/// The outcome of one start.
struct Start {
    theta: Vec<f64>,
    objective: f64,
    grad_norm: f64,
    iterations: u64,
    converged: bool,
}

fn clamp_to_box(theta: &mut [f64], bound: f64) {
    theta.iter_mut().for_each(|t| *t = t.clamp(-bound, bound));
}

fn one_start(obj: &Objective, init: Vec<f64>, job: &FitJob) -> Result<Start> {
    let ls = MoreThuenteLineSearch::new();
    let solver = LBFGS::new(ls, job.fit.memory)
        .with_tolerance_grad(job.fit.tol_grad)
        .and_then(|s| s.with_tolerance_cost(job.fit.tol_cost))
        .map_err(|e| HmoeError::Optimiser(e.to_string()))?;
    let run = Executor::new(Borrowed(obj), solver)
        .configure(|st| {
            st.param(Array1::from(init.clone()))
                .max_iters(job.fit.max_iters)
        })
        .run();
    let (mut theta, iterations, converged) = match run {
        Ok(res) => {
            let st = res.state();
            let converged = matches!(
                st.get_termination_reason(),
                Some(TerminationReason::SolverConverged)
            );
            let theta: Vec<f64> = st.get_best_param().map(|p| p.to_vec()).unwrap_or(init);
            (theta, st.get_iter(), converged)
        }
        // A line search that cannot make progress ends the start; keep the best point it reached.
        Err(_) => (obj.best_seen().unwrap_or(init), job.fit.max_iters, false),
    };
    clamp_to_box(&mut theta, obj.bound);
    let (objective, g) = obj.value_and_grad(&theta);
    let grad_norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
    Ok(Start {
        theta,
        objective,
        grad_norm,
        iterations,
        converged,
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
    for t in theta.iter_mut() {
        let z: f64 = StandardNormal.sample(&mut rng);
        *t += job.fit.init_noise * z;
    }
    clamp_to_box(&mut theta, job.fit.bound);
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

    let mut best: Option<Start> = None;
    let mut starts = 0;
    let mut starts_log = Vec::new();
    let mut keep = |s: Start, origin: StartOrigin, best: &mut Option<Start>| {
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
    for k in 0..job.fit.restarts + job.fit.extra_restarts {
        let good_enough = best
            .as_ref()
            .is_some_and(|b| !truth_in_family || passes_guard(b.objective, objective_at_truth));
        if k >= job.fit.restarts && good_enough {
            break;
        }
        let init = initial_point(param.as_ref(), job, embedded.as_ref(), &seeds, k);
        let s = one_start(&obj, init, job)?;
        starts += 1;
        keep(s, StartOrigin::NearTruth, &mut best);
    }
    for k in 0..job.fit.prior_starts {
        let s = one_start(&obj, prior_point(param.as_ref(), job, &seeds, k), job)?;
        starts += 1;
        keep(s, StartOrigin::Prior, &mut best);
    }
    let best = best.expect("at least one start runs");
    let status = if truth_in_family && !passes_guard(best.objective, objective_at_truth) {
        FitStatus::GuardFailed
    } else {
        FitStatus::Ok
    };
    let mut est_atoms = param.new_atoms();
    param.atoms(&best.theta, &mut est_atoms);
    Ok(FitRecord {
        job: job.clone(),
        seeds,
        truth_in_family,
        true_theta: truth.theta,
        true_atoms: truth.atoms,
        max_abs_param: best.theta.iter().fold(0.0, |a, t| a.max(t.abs())),
        theta: best.theta,
        est_atoms,
        objective: best.objective,
        objective_at_truth,
        grad_norm: best.grad_norm,
        iterations: best.iterations,
        converged: best.converged,
        starts,
        status,
        seconds: t0.elapsed().as_secs_f64(),
        starts_log,
    })
}
