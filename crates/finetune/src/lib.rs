//! Fine-tuning a pretrained BERT-family encoder (MiniLM) with LoRA, MH-LoRA, RepLoRA, HoRA, full
//! fine-tuning and a linear probe on candle, on real labelled tweets: claim C3 of THEORY.md.

pub mod adapters;
pub mod assets;
pub mod config;
pub mod data;
pub mod encoder;
pub mod error;
pub mod metrics;
pub mod model;
pub mod train;

pub use adapters::{Adapter, AdapterSpec};
pub use assets::Assets;
pub use config::{AdapterKind, GeneratorActivation, TrainConfig};
pub use encoder::{BertConfig, BertEncoder};
pub use error::FinetuneError;
pub use model::Classifier;
pub use train::{device, train_and_evaluate, EpochMetrics, RunRecord};
