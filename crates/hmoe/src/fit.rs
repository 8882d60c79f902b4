//! STUB (being written)
use crate::{FitJob, FitRecord, Result};
pub fn run_fit(_job: &FitJob) -> Result<FitRecord> { unimplemented!() }
