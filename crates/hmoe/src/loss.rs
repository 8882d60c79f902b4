//! STUB (being written): Voronoi loss and regression-function error.
use crate::{Atoms, FitRecord, LossConfig, Result, Model};
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Losses { pub voronoi: f64, pub regression: f64 }
pub fn voronoi_loss(_est: &Atoms, _truth: &Atoms, _rho: f64) -> f64 { unimplemented!() }
pub fn regression_error(_model: &Model, _est: &Atoms, _truth: &Atoms, _n: usize, _seed: u64) -> f64 { unimplemented!() }
pub fn record_losses(_rec: &FitRecord, _cfg: &LossConfig) -> Result<Losses> { unimplemented!() }
