//! The Levenberg–Marquardt solver (`[fit] solver = "lm"`): its Gauss–Newton matrix and gradient
//! against finite differences of the residuals for every parametrisation, its reach on noiseless
//! data against L-BFGS's, the objective it reports, its determinism, and the job ids.
use hmoe::data::sample_data;
use hmoe::fit::{levenberg_marquardt, one_start, Objective, Smooth};
use hmoe::geometry::{atoms_jacobian, gauss_newton, GN_CHUNK};
use hmoe::param::{parametrisation, Parametrisation};
use hmoe::truth::{draw_params, embed, Truth};
use hmoe::{
    run_fit, Activation, DataConfig, Family, FitConfig, FitSpec, Method, ModelConfig, ParamGuard,
    Seeds, Solver, TruthPrior,
};
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The six parametrisations: every `Method`, and hora with per-head A-seeds.
fn methods() -> Vec<(Method, bool)> {
    let mut v: Vec<(Method, bool)> = Method::all().into_iter().map(|m| (m, true)).collect();
    v.push((Method::new(Family::Hora, Activation::Tanh), false));
    v
}

/// The residuals `(f_θ(X_k) − Y_k)/√n`, flattened sample-major, by the batched kernel.
fn residuals(
    model: &hmoe::Model,
    param: &dyn Parametrisation,
    theta: &[f64],
    x: ArrayView2<f64>,
    y: ArrayView2<f64>,
) -> Vec<f64> {
    let mut atoms = param.new_atoms();
    param.atoms(theta, &mut atoms);
    let f = model.predict(&atoms, x);
    let s = 1.0 / (x.nrows() as f64).sqrt();
    f.iter().zip(y.iter()).map(|(a, b)| (a - b) * s).collect()
}

/// The worst entry-wise difference relative to the largest entry of `want`.
fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    let top = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    got.iter()
        .zip(want)
        .fold(0.0f64, |a, (g, w)| a.max((g - w).abs()))
        / top
}

fn check_against_finite_differences(cfg: &ModelConfig, method: Method, seed: u64) {
    let prior = TruthPrior::default();
    let truth = Truth::draw(cfg, &prior, "hora-tanh".parse().unwrap(), seed);
    let (x, y) = sample_data(
        &truth.model,
        &truth.atoms,
        &DataConfig::default(),
        30,
        seed + 1,
    );
    let param = parametrisation(method, cfg, cfg.atoms);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
    let theta = draw_params(param.as_ref(), cfg, &prior, &mut rng);
    let obj = Objective::new(&truth.model, param.as_ref(), x.view(), y.view(), 4.0, 1e3);
    let jtj = obj
        .gauss_newton(&theta)
        .expect("the HMoE objective has one");
    let (value, grad) = obj.value_and_grad(&theta);
    let p = theta.len();
    assert_eq!(jtj.dim(), (p, p));

    let r0 = residuals(&truth.model, param.as_ref(), &theta, x.view(), y.view());
    let mut jac = Array2::<f64>::zeros((r0.len(), p));
    for j in 0..p {
        let h = 1e-6 * theta[j].abs().max(1.0);
        let (mut up, mut down) = (theta.clone(), theta.clone());
        up[j] += h;
        down[j] -= h;
        let ru = residuals(&truth.model, param.as_ref(), &up, x.view(), y.view());
        let rd = residuals(&truth.model, param.as_ref(), &down, x.view(), y.view());
        for i in 0..r0.len() {
            jac[[i, j]] = (ru[i] - rd[i]) / (2.0 * h);
        }
    }
    let fd_jtj = jac.t().dot(&jac);
    let fd_jtr = jac.t().dot(&ndarray::Array1::from(r0.clone()));
    let half_grad: Vec<f64> = grad.iter().map(|g| 0.5 * g).collect();
    let (e_jtj, e_jtr) = (
        rel_err(jtj.as_slice().unwrap(), fd_jtj.as_slice().unwrap()),
        rel_err(&half_grad, fd_jtr.as_slice().unwrap()),
    );
    let label = format!(
        "{method} share_a={} m={} outer_gate={} self_attention={}",
        cfg.share_a_across_heads, cfg.atoms, cfg.outer_gate, cfg.self_attention
    );
    eprintln!("{label}: JᵀJ {e_jtj:.1e}, Jᵀr {e_jtr:.1e}");
    assert!(e_jtj < 1e-6, "{label}: JᵀJ off by {e_jtj:e}");
    assert!(e_jtr < 1e-6, "{label}: Jᵀr off by {e_jtr:e}");
    // The squared norm of the residuals is the objective both solvers minimise.
    let rr: f64 = r0.iter().map(|v| v * v).sum();
    assert!((rr - value).abs() <= 1e-12 * value, "{rr} vs {value}");
}

/// (a) `JᵀJ` and `Jᵀr` (half the gradient) against central differences of the residuals.
#[test]
fn gauss_newton_and_gradient_match_finite_differences_of_the_residuals() {
    for (method, share) in methods() {
        for atoms in [1, 2] {
            let cfg = ModelConfig {
                atoms,
                share_a_across_heads: share,
                ..ModelConfig::default()
            };
            check_against_finite_differences(&cfg, method, 20 + atoms as u64);
        }
    }
    // The model's variants, on the shared family.
    let hora = Method::new(Family::Hora, Activation::Tanh);
    for cfg in [
        ModelConfig {
            atoms: 2,
            outer_gate: true,
            ..ModelConfig::default()
        },
        ModelConfig {
            atoms: 2,
            self_attention: true,
            ..ModelConfig::default()
        },
        ModelConfig {
            atoms: 2,
            tie_atoms_across_slots: true,
            d: 3,
            q: 2,
            r: 2,
            ..ModelConfig::default()
        },
    ] {
        check_against_finite_differences(&cfg, hora, 31);
        check_against_finite_differences(&cfg, Method::LORA, 32);
    }
}

/// The blocked accumulation over several blocks of samples equals the one-shot `JᵀJ` of the
/// full atom Jacobian, and does not depend on the thread count.
#[test]
fn the_blocked_gauss_newton_matrix_equals_the_full_one_on_any_thread_count() {
    let cfg = ModelConfig {
        atoms: 2,
        ..ModelConfig::default()
    };
    let prior = TruthPrior::default();
    let truth = Truth::draw(&cfg, &prior, "hora-tanh".parse().unwrap(), 5);
    let n = 2 * GN_CHUNK + 17;
    let (x, y) = sample_data(&truth.model, &truth.atoms, &DataConfig::default(), n, 6);
    let param = parametrisation("hora-tanh".parse().unwrap(), &cfg, 2);
    let theta = draw_params(
        param.as_ref(),
        &cfg,
        &prior,
        &mut ChaCha8Rng::seed_from_u64(7),
    );
    let obj = Objective::new(&truth.model, param.as_ref(), x.view(), y.view(), 4.0, 1e3);
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| gauss_newton(&truth.model, param.as_ref(), &theta, x.view()))
    };
    let (one, two) = (on(1), on(2));
    assert_eq!(one, two, "the bits depend on the thread count");
    assert_eq!(obj.gauss_newton(&theta).unwrap(), one);
    let mut atoms = param.new_atoms();
    param.atoms(&theta, &mut atoms);
    let ja = truth.model.jacobian_reference(&atoms, x.view());
    let m = atoms_jacobian(param.as_ref(), &theta);
    let full = m.t().dot(&(ja.t().dot(&ja) / n as f64)).dot(&m);
    let e = rel_err(one.as_slice().unwrap(), full.as_slice().unwrap());
    assert!(e < 1e-12, "blocked vs full: {e:e}");
}

fn noiseless_job(method: &str, atoms: usize, solver: Solver) -> hmoe::FitJob {
    let spec = FitSpec::new(
        "lm-test",
        "noiseless",
        "hora-tanh".parse().unwrap(),
        method.parse().unwrap(),
        atoms,
        400,
        0,
    );
    FitSpec {
        data: DataConfig { sigma: 0.0 },
        fit: FitConfig {
            solver,
            restarts: 1,
            extra_restarts: 0,
            tol_grad: 0.0,
            tol_cost: 0.0,
            max_iters: 300,
            ..FitConfig::default()
        },
        ..spec
    }
    .check()
    .unwrap()
}

/// (b) On noiseless data, from a start near the truth, LM reaches the rounding floor (objective
/// below 1e-20) and ends no higher than L-BFGS from the same start.
#[test]
fn on_noiseless_data_lm_reaches_the_rounding_floor_and_beats_lbfgs() {
    for method in ["lora", "hora-tanh", "replora-tanh"] {
        let lm = run_fit(&noiseless_job(method, 1, Solver::Lm)).unwrap();
        let lbfgs = run_fit(&noiseless_job(method, 1, Solver::Lbfgs)).unwrap();
        eprintln!(
            "{method}: lm {:.3e} in {} iterations, lbfgs {:.3e} in {}",
            lm.outcome.objective,
            lm.outcome.iterations,
            lbfgs.outcome.objective,
            lbfgs.outcome.iterations
        );
        assert!(
            lm.outcome.objective < 1e-20,
            "{method}: lm at {:e}",
            lm.outcome.objective
        );
        assert!(
            lm.outcome.objective <= lbfgs.outcome.objective,
            "{method}: lm {:e} > lbfgs {:e}",
            lm.outcome.objective,
            lbfgs.outcome.objective
        );
        assert!(lm.theta.iter().all(|t| t.abs() <= lm.job.fit.bound));
    }
}

/// (c) The objective LM reports is the objective `Model` computes at its final θ.
#[test]
fn the_reported_objective_is_the_models_at_the_final_point() {
    let mut spec = FitSpec::new(
        "lm-test",
        "reported",
        "hora-tanh".parse().unwrap(),
        "hora-tanh".parse().unwrap(),
        2,
        500,
        1,
    );
    spec.fit.solver = Solver::Lm;
    let job = spec.check().unwrap();
    let rec = run_fit(&job).unwrap();
    let seeds = Seeds::for_job(&job);
    let truth = Truth::draw(&job.model, &job.truth_prior, job.truth, seeds.truth);
    let (x, y) = sample_data(&truth.model, &truth.atoms, &job.data, job.n, seeds.data);
    let param = parametrisation(job.method, &job.model, job.model.atoms);
    let mut atoms = param.new_atoms();
    param.atoms(&rec.theta, &mut atoms);
    assert_eq!(atoms, rec.est_atoms);
    let by_predict = truth.model.objective(&atoms, x.view(), y.view());
    assert!(
        (by_predict - rec.outcome.objective).abs() <= 1e-12 * by_predict,
        "{} vs {by_predict}",
        rec.outcome.objective
    );
    let obj = Objective::new(&truth.model, param.as_ref(), x.view(), y.view(), 4.0, 1e3);
    assert_eq!(obj.value_and_grad(&rec.theta).0, rec.outcome.objective);
    assert!(rec.outcome.objective <= rec.outcome.objective_at_truth);
    // The solver's own end point, before the start is scored, gives the same objective.
    let embedded = embed(truth.param.as_ref(), &truth.theta, param.as_ref()).unwrap();
    let (theta, iterations, stop) = levenberg_marquardt(&obj, embedded.clone(), &job.fit).unwrap();
    let start = one_start(&obj, embedded, &job.fit).unwrap();
    assert_eq!(start.theta, theta);
    assert_eq!((start.iterations, start.stop), (iterations, stop));
    assert_eq!(start.objective, obj.value_and_grad(&theta).0);
    assert_eq!(start.converged, stop.converged());
    assert!(iterations >= 1, "{stop}");
}

/// (d) Two runs, on one and on two threads, give the same bits.
#[test]
fn lm_is_deterministic_whatever_the_thread_count() {
    let mut spec = FitSpec::new(
        "lm-test",
        "determinism",
        "hora-tanh".parse().unwrap(),
        "lora".parse().unwrap(),
        2,
        GN_CHUNK + 300,
        0,
    );
    spec.fit.solver = Solver::Lm;
    let job = spec.check().unwrap();
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run_fit(&job).unwrap())
    };
    let (a, b) = (on(1), on(2));
    assert_eq!(a.theta, b.theta);
    assert_eq!(a.outcome.objective.to_bits(), b.outcome.objective.to_bits());
    assert_eq!(a.outcome.starts_log, b.outcome.starts_log);
}

/// (e) `solver = "lm"` is part of a job's key (a new id); a job without it keeps its old id,
/// and the default is not written.
#[test]
fn the_solver_changes_the_job_id_only_when_set() {
    let spec = FitSpec::new(
        "rates-overspecified",
        "tanh",
        "hora-tanh".parse().unwrap(),
        "lora".parse().unwrap(),
        2,
        1000,
        0,
    );
    let plain = serde_json::to_value(spec.clone().check().unwrap()).unwrap();
    assert!(plain["fit"].get("solver").is_none());
    let explicit = FitSpec {
        fit: FitConfig {
            solver: Solver::Lbfgs,
            ..spec.fit.clone()
        },
        ..spec.clone()
    };
    let explicit = serde_json::to_value(explicit.check().unwrap()).unwrap();
    assert_eq!(
        fsio::key::content_id(&explicit),
        fsio::key::content_id(&plain)
    );
    let mut lm = spec;
    lm.fit.solver = Solver::Lm;
    let lm = serde_json::to_value(lm.check().unwrap()).unwrap();
    assert_eq!(lm["fit"]["solver"], "lm");
    assert_ne!(fsio::key::content_id(&lm), fsio::key::content_id(&plain));
    // A stored job reads back with its solver.
    let back: hmoe::FitJob = serde_json::from_value(lm).unwrap();
    assert_eq!(back.fit.solver, Solver::Lm);

    // The experiment file's `[fit]` takes it by name; anything else is refused.
    let fit: FitConfig = toml::from_str("solver = \"lm\"").unwrap();
    assert_eq!(fit.solver, Solver::Lm);
    let fit: FitConfig = toml::from_str("").unwrap();
    assert_eq!(fit.solver, Solver::Lbfgs);
    assert!(toml::from_str::<FitConfig>("solver = \"newton\"").is_err());
}

/// The controls' Gauss–Newton matrix and gradient against central differences of their
/// residuals, and LM on their noiseless data.
#[test]
fn the_controls_gauss_newton_matrix_matches_finite_differences() {
    use hmoe::controls::{draw_truth, predict, sample_data, ControlObjective, Expert};
    let d = 2;
    for expert in [Expert::Linear, Expert::Tanh] {
        let truth = draw_truth(d, 2, 3);
        let (x, y) = sample_data(expert, d, &truth, 0.1, 40, 4);
        let obj = ControlObjective::new(expert, d, &x, &y, 4.0, 1e3);
        let theta = draw_truth(d, 3, 5);
        let res = |t: &[f64]| -> Vec<f64> {
            let s = 1.0 / (y.len() as f64).sqrt();
            predict(expert, d, t, &x)
                .iter()
                .zip(&y)
                .map(|(f, y)| (f - y) * s)
                .collect()
        };
        let r0 = res(&theta);
        let p = theta.len();
        let mut jac = Array2::<f64>::zeros((r0.len(), p));
        for j in 0..p {
            let h = 1e-6 * theta[j].abs().max(1.0);
            let (mut up, mut down) = (theta.clone(), theta.clone());
            up[j] += h;
            down[j] -= h;
            let (ru, rd) = (res(&up), res(&down));
            for i in 0..r0.len() {
                jac[[i, j]] = (ru[i] - rd[i]) / (2.0 * h);
            }
        }
        let jtj = obj.gauss_newton(&theta).unwrap();
        let fd = jac.t().dot(&jac);
        let e = rel_err(jtj.as_slice().unwrap(), fd.as_slice().unwrap());
        let (_, g) = obj.value_and_grad(&theta);
        let half: Vec<f64> = g.iter().map(|v| 0.5 * v).collect();
        let fd_jtr = jac.t().dot(&ndarray::Array1::from(r0));
        let e2 = rel_err(&half, fd_jtr.as_slice().unwrap());
        assert!(e < 1e-6 && e2 < 1e-6, "{expert}: JᵀJ {e:e}, Jᵀr {e2:e}");

        // Noiseless data, a start near the truth: LM to the rounding floor.
        let (x0, y0) = sample_data(expert, d, &truth, 0.0, 200, 6);
        let obj0 = ControlObjective::new(expert, d, &x0, &y0, 4.0, 1e3);
        let init: Vec<f64> = truth.iter().map(|t| t + 0.05).collect();
        let fit = FitConfig {
            solver: Solver::Lm,
            tol_grad: 0.0,
            tol_cost: 0.0,
            ..FitConfig::default()
        };
        let s = one_start(&obj0, init, &fit).unwrap();
        assert!(s.objective < 1e-20, "{expert}: {:e}", s.objective);
    }
}
