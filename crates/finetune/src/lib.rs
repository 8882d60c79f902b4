//! Fine-tuning a pretrained BERT-family encoder (MiniLM) with LoRA, MH-LoRA, RepLoRA, HoRA, full
//! fine-tuning and a linear probe on candle, on real labelled tweets: claim C3 of THEORY.md.

pub mod adapter_dir;
pub mod adapters;
pub mod assets;
pub mod config;
pub mod data;
pub mod encoder;
pub mod error;
pub mod fused;
pub mod inference;
pub mod layers;
pub mod low_rank;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod rng;
pub mod tensor_path;
pub mod train;

pub use adapter_dir::{AdapterContext, AdapterMetadata, MINILM_HUB_NAME};
pub use adapters::{Adapter, AdapterSpec};
pub use assets::Assets;
pub use config::{
    AdapterKind, GeneratorActivation, HeadInit, TrainConfig, ValidTrainConfig, METHODS_ALLOWED,
};
pub use encoder::{BertConfig, BertEncoder};
pub use error::FinetuneError;
/// The workspace's one guard (`fsio::guard`): `TrainConfig` and `BertConfig` are checked by it.
pub use fsio::guard::{Checked, ParamGuard};
pub use inference::SavedClassifier;
pub use model::Classifier;
pub use tensor_path::TensorPath;
pub use train::{device, train_and_evaluate, train_classifier, EpochMetrics, RunRecord, Trained};
