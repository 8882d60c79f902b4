//! The token-length distribution of each task's texts (WordPiece of the model's own tokenizer,
//! [CLS] and [SEP] included, no truncation): the evidence a task's `max_len` is chosen from
//! (issue 25). One line per task and part: count and the 10th, 25th, 50th, 75th, 90th and 99th
//! percentiles, and the share of texts that a cap of 48, 64, 96, 128 and 256 tokens leaves whole.
//!
//!     cargo run --release -p finetune --example task_lengths

use finetune::data::{Task, TextEncoder};

fn main() -> Result<(), finetune::FinetuneError> {
    let assets = finetune::assets::locate(&finetune::assets::default_cache_dir())?;
    // No cap in practice: the longest text of either task is far below this.
    let text = TextEncoder::from_file(&assets.model_dir.join("tokenizer.json"), 1 << 20)?;
    println!("task\tpart\tcount\tp10\tp25\tp50\tp75\tp90\tp99\twhole@48\twhole@64\twhole@96\twhole@128\twhole@256");
    for task in Task::ALL {
        let data = assets.dataset(task)?;
        let test: std::collections::HashSet<usize> =
            data.official_test.iter().flatten().copied().collect();
        for (part, keep) in [("train", false), ("test", true)] {
            let texts: Vec<&str> = (0..data.examples.len())
                .filter(|i| test.contains(i) == keep)
                .map(|i| data.examples[i].text.as_str())
                .collect();
            if texts.is_empty() {
                continue; // the tweets draw their test set from one file
            }
            let mut lens: Vec<usize> = text.encode(&texts)?.iter().map(Vec::len).collect();
            lens.sort_unstable();
            let q = |p: f64| lens[((lens.len() - 1) as f64 * p).round() as usize];
            let whole =
                |cap: usize| lens.iter().filter(|&&l| l <= cap).count() as f64 / lens.len() as f64;
            let part = if data.official_test.is_none() {
                "all"
            } else {
                part
            };
            println!(
                "{}\t{part}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.3}\t{:.3}\t{:.3}\t{:.3}\t{:.3}",
                task.name(),
                lens.len(),
                q(0.10),
                q(0.25),
                q(0.50),
                q(0.75),
                q(0.90),
                q(0.99),
                whole(48),
                whole(64),
                whole(96),
                whole(128),
                whole(256)
            );
        }
    }
    Ok(())
}
