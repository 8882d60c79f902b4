//! What every adapter family is (one trait) and what it is built from.

use crate::config::{AdapterKind, GeneratorActivation, HeadInit, TrainConfig};
use crate::encoder::BertEncoder;
use crate::error::Result;
use crate::low_rank::LayerDeltas;

/// What an adapter needs to build itself.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterSpec {
    pub kind: AdapterKind,
    pub rank: usize,
    pub alpha: f64,
    pub activation: GeneratorActivation,
    pub seed: u64,
    /// How the classifier's head starts (the adapter families ignore it).
    pub head_init: HeadInit,
}

impl AdapterSpec {
    pub fn from_config(cfg: &TrainConfig) -> Self {
        Self {
            kind: cfg.method,
            rank: cfg.rank,
            alpha: cfg.alpha,
            activation: cfg.generator_activation,
            seed: cfg.seed,
            head_init: cfg.head_init,
        }
    }

    /// The rank and α within the ranges [`TrainConfig::validate`] allows (one definition:
    /// [`crate::config::RANK_RANGE`]); [`super::build`] refuses any other spec.
    pub fn validate(&self) -> Result<()> {
        if !crate::config::RANK_RANGE.contains(&self.rank) {
            return Err(crate::error::FinetuneError::Config {
                field: "rank",
                value: self.rank.to_string(),
                allowed: crate::config::RANK_ALLOWED,
            });
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(crate::error::FinetuneError::Config {
                field: "alpha",
                value: self.alpha.to_string(),
                allowed: "a finite number > 0",
            });
        }
        Ok(())
    }

    /// peft's scaling `α / r`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

pub trait Adapter: Send + Sync {
    fn kind(&self) -> AdapterKind;

    /// The low-rank updates of every layer, computed once per forward pass (a generator runs
    /// here, not once per head).
    fn deltas(&self) -> Result<Vec<LayerDeltas>>;

    /// The encoder whose weights train, for full fine-tuning; `None` means the frozen base.
    fn trainable_encoder(&self) -> Option<&BertEncoder> {
        None
    }
}
