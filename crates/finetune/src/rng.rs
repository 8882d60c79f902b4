//! Every random stream of the crate, in one place. A run draws each purpose from its own ChaCha8
//! stream of one seed, so adding draws to one purpose never shifts another. The stream numbers
//! decide every committed result: never renumber one, only add new ones.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Adapter initialisation (the uniform A factors and seeds), from `TrainConfig::seed`.
pub const ADAPTER_INIT: u64 = 1;
/// Classification-head initialisation, from `TrainConfig::seed`.
pub const HEAD_INIT: u64 = 2;
/// Training, from `TrainConfig::seed`: the dropout masks, and, unless `paired_order` is set, the
/// batch order of every epoch too, drawn interleaved with them.
pub const TRAINING: u64 = 3;
/// The batch order of every epoch when `TrainConfig::paired_order` is set, from
/// `TrainConfig::seed`: the same for every method of a seed, whatever dropout each draws.
pub const BATCH_ORDER: u64 = 4;
/// The stratified train/validation/test split, from `TrainConfig::split_seed`.
pub const SPLIT: u64 = 10;
/// The stratified training subset, from `TrainConfig::seed`.
pub const SUBSET: u64 = 11;
/// The weights of `BertEncoder::random` (tests and benchmarks), from its own seed.
pub const RANDOM_ENCODER: u64 = 99;

/// A seeded RNG for one purpose (`stream`) of one run.
pub fn init_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_distinct() {
        let mut all = [
            ADAPTER_INIT,
            HEAD_INIT,
            TRAINING,
            BATCH_ORDER,
            SPLIT,
            SUBSET,
            RANDOM_ENCODER,
        ];
        all.sort_unstable();
        assert!(all.windows(2).all(|w| w[0] != w[1]));
    }
}
