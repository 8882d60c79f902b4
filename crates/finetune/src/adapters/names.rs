//! The names adapters save their tensors under, as peft names them for a wrapped model:
//! `base_model.model.` followed by the checkpoint path of the projection a tensor adapts.

use crate::encoder::self_attention_path;
use crate::tensor_path::TensorPath;

/// The projections every adapter targets (peft's `target_modules`), in the order of the fields
/// of `LayerDeltas`.
pub const TARGETS: [&str; 2] = ["query", "value"];

/// `base_model.model`: peft wraps the model, so every saved key starts here.
pub fn peft_root() -> TensorPath {
    TensorPath::root().pp("base_model").pp("model")
}

/// `base_model.model.encoder.layer.{l}.attention.self`: the adapters of layer `l` lie beside
/// the projections they adapt.
pub fn adapter_path(l: usize) -> TensorPath {
    peft_root().pp(self_attention_path(l))
}

/// The two factors of one target of layer `l`:
/// `….attention.self.{target}.{family}_A.weight` and `…_B.weight`.
pub(crate) fn factor_paths(l: usize, target: &str, family: &str) -> [TensorPath; 2] {
    let target = adapter_path(l).pp(target);
    ["A", "B"].map(|f| target.pp(format!("{family}_{f}")).pp("weight"))
}

/// peft's LoRA factors of one target: `….{target}.lora_A.weight`, `….{target}.lora_B.weight`.
pub fn lora_paths(l: usize, target: &str) -> [TensorPath; 2] {
    factor_paths(l, target, "lora")
}
