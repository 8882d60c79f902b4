//! The pinned, hash-checked assets of the finetune kind: `hora assets fetch` and, for a run,
//! the model and data it uses (the pinned MiniLM, or `--model-dir`).
use super::commands::FinetuneFlags;
use finetune::Assets;
use std::path::Path;

/// The assets a run uses: `--model-dir` with the cached data, or the pinned cache.
pub fn locate(opts: &FinetuneFlags) -> anyhow::Result<Assets> {
    let cache = opts
        .assets
        .clone()
        .unwrap_or_else(finetune::assets::default_cache_dir);
    let assets = match &opts.model_dir {
        Some(m) => finetune::assets::with_model_dir(m, &cache)?,
        None => finetune::assets::locate(&cache)?,
    };
    Ok(assets)
}

/// `hora assets fetch`: download and verify the pinned model and data.
pub fn fetch(dir: Option<&Path>) -> anyhow::Result<Assets> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(finetune::assets::default_cache_dir);
    Ok(finetune::assets::fetch(&dir)?)
}
