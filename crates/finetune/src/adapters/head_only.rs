//! The linear probe (the floor): the encoder is frozen and only the classification head trains.

use super::spec::Adapter;
use crate::config::AdapterKind;
use crate::error::Result;
use crate::low_rank::LayerDeltas;

pub struct HeadOnly;

impl Adapter for HeadOnly {
    fn kind(&self) -> AdapterKind {
        AdapterKind::HeadOnly
    }

    fn deltas(&self) -> Result<Vec<LayerDeltas>> {
        Ok(Vec::new())
    }
}
