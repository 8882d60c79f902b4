//! The adapters fine-tuning runs save beside their records (`raw/<id>.adapter/`), put to use:
//! `hora export` writes one as a peft LoRA folder or as a merged `BertModel` checkpoint, and
//! `hora predict` classifies lines of text with one. Nothing here touches the network.
use super::assets;
use super::commands::FinetuneFlags;
use crate::error::LabError;
use crate::layout::ADAPTER_SUFFIX;
use anyhow::{bail, Context};
use finetune::{AdapterContext, AdapterMetadata, SavedClassifier, MINILM_HUB_NAME};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What `hora export --to` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// A peft LoRA folder (`PeftModel.from_pretrained(BertModel, DIR)`); HoRA, RepLoRA and
    /// MH-LoRA as their exact plain-LoRA equivalent. The head is `classifier.safetensors`.
    Peft,
    /// A `BertModel` checkpoint with the adapter merged into the weights (`model.safetensors`,
    /// `config.json`, `tokenizer.json`), plus the head and the metadata.
    Merged,
}

/// An adapter folder, or the id of a job whose adapter lies in `results/<experiment>/raw/`.
pub fn resolve(target: &str, results: &Path) -> anyhow::Result<PathBuf> {
    let as_path = Path::new(target);
    if as_path.is_dir() {
        return Ok(as_path.to_path_buf());
    }
    let name = format!("{target}{ADAPTER_SUFFIX}");
    let mut found: Vec<PathBuf> = std::fs::read_dir(results)
        .with_context(|| {
            format!(
                "`{target}` is not a folder, and {} cannot be read to find a job of that id",
                results.display()
            )
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("raw").join(&name))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "`{target}` is neither an adapter folder nor a job with a saved adapter under {}/*/raw/ \
             (records made before runs saved adapters have none: delete the record and rerun the job; \
             `full` saves one only with --save-full)",
            results.display()
        ),
        _ => bail!("job `{target}` has adapters in several experiments: {found:?}; name the folder"),
    }
}

fn metadata(dir: &Path) -> anyhow::Result<Option<AdapterMetadata>> {
    let path = dir.join(finetune::adapter_dir::METADATA);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| {
        format!("cannot parse {}", path.display())
    })?))
}

/// The checkpoint the adapter in `dir` was trained on: `--model-dir`, else the pinned MiniLM
/// (which a folder naming another base model refuses).
fn base_model_dir(dir: &Path, opts: &FinetuneFlags) -> anyhow::Result<PathBuf> {
    if let Some(m) = &opts.model_dir {
        return Ok(m.clone());
    }
    if let Some(m) = metadata(dir)? {
        if m.base_model != MINILM_HUB_NAME {
            bail!(
                "{} was trained on {}{}, not the pinned {MINILM_HUB_NAME}: pass --model-dir",
                dir.display(),
                m.base_model,
                m.base_model_path
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(assets::locate(opts)?.model_dir)
}

fn load(dir: &Path, opts: &FinetuneFlags) -> anyhow::Result<(SavedClassifier, PathBuf)> {
    let model_dir = base_model_dir(dir, opts)?;
    let device = finetune::device();
    let saved = SavedClassifier::load(dir, &model_dir, &device)
        .with_context(|| format!("cannot load the adapter in {}", dir.display()))?;
    Ok((saved, model_dir))
}

/// `hora export TARGET --to FORMAT OUT`; returns what it wrote, in words.
pub fn export(
    target: &str,
    to: ExportFormat,
    out: &Path,
    force: bool,
    results: &Path,
    opts: &FinetuneFlags,
) -> anyhow::Result<String> {
    let dir = resolve(target, results)?;
    check_export_target(out, &dir, force)?;
    let (saved, model_dir) = load(&dir, opts)?;
    let meta = saved.metadata.clone();
    let model_path = std::fs::canonicalize(&model_dir).unwrap_or(model_dir.clone());
    let ctx = AdapterContext {
        base_model: meta
            .as_ref()
            .map_or(MINILM_HUB_NAME.to_string(), |m| m.base_model.clone()),
        base_model_path: Some(model_path.display().to_string()),
        labels: saved.labels.clone(),
        max_len: meta
            .as_ref()
            .map_or(finetune::TrainConfig::default().max_len, |m| m.max_len),
        dropout: meta.as_ref().map_or(0.0, |m| m.dropout),
    };
    let method = saved.model.spec().kind;
    match to {
        ExportFormat::Peft => {
            let rank = saved.model.export_plain_lora(out, &ctx)?;
            Ok(format!(
                "{method} adapter of {} as a peft LoRA of rank {rank} in {}",
                dir.display(),
                out.display()
            ))
        }
        ExportFormat::Merged => {
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let weights = saved.model.merged_weights()?;
            let bytes = safetensors::serialize(weights.iter().map(|(k, t)| (k.as_str(), t)), None)?;
            fsio::write_atomic(&out.join("model.safetensors"), &bytes)?;
            for f in ["config.json", "tokenizer.json"] {
                let bytes = std::fs::read(model_dir.join(f))
                    .with_context(|| format!("cannot read {f} of the base model"))?;
                fsio::write_atomic(&out.join(f), &bytes)?;
            }
            let head = saved.model.head();
            let bias = head.bias.clone().context("the head has no bias")?;
            let head = [("weight", head.weight.clone()), ("bias", bias)];
            let bytes = safetensors::serialize(head.iter().map(|(k, t)| (*k, t)), None)?;
            fsio::write_atomic(&out.join(finetune::adapter_dir::HEAD_WEIGHTS), &bytes)?;
            Ok(format!(
                "{method} adapter of {} merged into a BertModel checkpoint in {}",
                dir.display(),
                out.display()
            ))
        }
    }
}

/// An export writes into an empty or new folder; a folder with files in it (another adapter, a
/// checkpoint) is overwritten only with `--force`, and never the adapter's own folder.
fn check_export_target(out: &Path, source: &Path, force: bool) -> anyhow::Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(LabError::Usage(format!(
            "{} exists and is not a folder: export writes a folder",
            out.display()
        ))
        .into());
    }
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(out, source) {
        return Err(LabError::Usage(format!(
            "{} is the adapter's own folder: export to another one",
            out.display()
        ))
        .into());
    }
    let mut entries: Vec<String> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if entries.is_empty() || force {
        return Ok(());
    }
    entries.sort();
    let shown = entries
        .iter()
        .take(4)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let more = if entries.len() > 4 { ", ..." } else { "" };
    Err(LabError::Usage(format!(
        "{} is not empty (it holds {shown}{more}): export to a new or empty folder, or pass \
         --force to overwrite the files an export writes there",
        out.display()
    ))
    .into())
}

/// `hora predict DIR`: one line of output per line of input, `label<TAB>logit…<TAB>text`.
pub fn predict(
    target: &str,
    merged: bool,
    results: &Path,
    opts: &FinetuneFlags,
    mut input: impl Read,
    mut output: impl Write,
) -> anyhow::Result<usize> {
    let dir = resolve(target, results)?;
    let (mut saved, _) = load(&dir, opts)?;
    if merged {
        saved.model.merge()?;
    }
    // Read lossily, as training reads the tweets: a stray non-UTF-8 byte is not a reason to fail.
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .context("cannot read standard input")?;
    let all = String::from_utf8_lossy(&bytes);
    let texts: Vec<&str> = all
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let logits = saved.logits(&texts)?;
    for (text, l) in texts.iter().zip(&logits) {
        let best = l
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let numbers: Vec<String> = l.iter().map(|x| format!("{x:.7e}")).collect();
        writeln!(
            output,
            "{}\t{}\t{text}",
            saved.labels[best],
            numbers.join("\t")
        )?;
    }
    Ok(texts.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An export goes to a new or empty folder; one holding files (another adapter) only with
    /// `--force`, which names them when refused; never to the adapter's own folder, nor a file.
    #[test]
    fn export_refuses_a_folder_with_files_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("x.adapter");
        std::fs::create_dir_all(&source).unwrap();
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        check_export_target(&tmp.path().join("new"), &source, false).unwrap();
        check_export_target(&empty, &source, false).unwrap();
        let taken = tmp.path().join("taken");
        std::fs::create_dir_all(&taken).unwrap();
        std::fs::write(taken.join("adapter_config.json"), "{}").unwrap();
        let err = check_export_target(&taken, &source, false).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("is not empty")
                && msg.contains("adapter_config.json")
                && msg.contains("--force"),
            "{msg}"
        );
        assert!(
            err.downcast_ref::<LabError>().is_some(),
            "a user error (exit 2)"
        );
        check_export_target(&taken, &source, true).unwrap();
        let own = check_export_target(&source, &source, true).unwrap_err();
        assert!(format!("{own:#}").contains("own folder"), "{own:#}");
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(format!(
            "{:#}",
            check_export_target(&file, &source, true).unwrap_err()
        )
        .contains("not a folder"));
    }

    #[test]
    fn a_job_id_resolves_to_its_adapter_folder_and_nothing_else() {
        let results = tempfile::tempdir().unwrap();
        let r = results.path();
        let in_a = r.join("a/raw/0123456789abcdef.adapter");
        std::fs::create_dir_all(&in_a).unwrap();
        std::fs::create_dir_all(r.join("b/raw")).unwrap();
        assert_eq!(resolve("0123456789abcdef", r).unwrap(), in_a);
        // A folder is taken as it is.
        assert_eq!(resolve(in_a.to_str().unwrap(), r).unwrap(), in_a);
        let err = resolve("ffffffffffffffff", r).unwrap_err().to_string();
        assert!(err.contains("neither an adapter folder nor a job"), "{err}");
        std::fs::create_dir_all(r.join("b/raw/0123456789abcdef.adapter")).unwrap();
        let err = resolve("0123456789abcdef", r).unwrap_err().to_string();
        assert!(err.contains("several experiments"), "{err}");
    }
}
