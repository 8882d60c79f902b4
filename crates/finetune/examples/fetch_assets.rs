//! `cargo run -p finetune --example fetch_assets [DIR]`: what `hora assets fetch` does.
fn main() -> Result<(), finetune::FinetuneError> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(finetune::assets::default_cache_dir);
    let assets = finetune::assets::fetch(&dir)?;
    println!(
        "model: {}\ntweets: {}",
        assets.model_dir.display(),
        assets.tweets_csv.display()
    );
    Ok(())
}
