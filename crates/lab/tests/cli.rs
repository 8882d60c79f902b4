//! The `hora` binary end to end on a tiny `rates` grid in temporary directories: plan → run →
//! metric → plot, resuming after an interruption (killed process, truncated and leftover files),
//! sharding, merge, and the user errors that must exit with code 2 and write nothing.
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

const TINY: &str = r#"
name = "tiny"
kind = "rates"
description = "a tiny grid for tests"

[model]
atoms = 2

[fit]
max_iters = 60
restarts = 1
extra_restarts = 0

[loss]
fresh_samples = 2000

[[settings]]
name = "tanh"
truth = "hora-tanh"
methods = ["lora", "hora-tanh"]

[[settings]]
name = "h1"
truth = "hora-tanh"
methods = ["lora", "hora-tanh"]
model = { heads = 1 }

[profiles.quick]
ns = [100, 200, 400]
replicates = 3

[profiles.other]
ns = [100, 400]
replicates = 2

[report]
target_loss = 0.5
bootstrap = 200
"#;

/// Jobs of the quick profile: 2 settings × 2 methods × 3 n × 3 replicates.
const QUICK_JOBS: usize = 36;

struct Lab {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Lab {
    fn new(text: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("experiments")).unwrap();
        std::fs::write(root.join("experiments/tiny.toml"), text).unwrap();
        Lab { _dir: dir, root }
    }
    fn results(&self) -> PathBuf {
        self.root.join("results")
    }
    fn raw(&self) -> PathBuf {
        self.results().join("tiny/raw")
    }
    fn out(&self, file: &str) -> PathBuf {
        self.results().join("tiny/quick").join(file)
    }
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hora"));
        c.current_dir(&self.root)
            .args(args)
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("SLURM_ARRAY_TASK_COUNT")
            .env_remove("SLURM_ARRAY_TASK_MIN");
        c
    }
    fn hora(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.hora(args);
        assert!(
            out.status.success(),
            "hora {args:?} failed:\n{}",
            text(&out)
        );
        out
    }
    fn records(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.raw())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.out(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The metric tables that must repeat byte for byte.
const TABLES: [&str; 3] = ["metrics.csv", "curves.csv", "rates.csv"];

fn reference() -> Lab {
    let lab = Lab::new(TINY);
    lab.ok(&["tiny", "--threads", "2"]);
    lab
}

#[test]
fn plan_run_metric_plot_on_a_tiny_grid() {
    let lab = Lab::new(TINY);
    let out = lab.ok(&["plan", "tiny"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{QUICK_JOBS} jobs")));
    let manifest: serde_json::Value = serde_json::from_slice(&lab.read("manifest.json")).unwrap();
    let ids: BTreeSet<&str> = manifest["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), QUICK_JOBS, "ids are distinct");
    // Planning again gives the same ids: they hash the job, nothing else.
    lab.ok(&["plan", "tiny"]);
    assert_eq!(
        manifest,
        serde_json::from_slice::<serde_json::Value>(&lab.read("manifest.json")).unwrap()
    );

    let out = lab.ok(&["run-all", "tiny", "--threads", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("summary:") && stdout.contains("voronoi.png"),
        "{stdout}"
    );
    assert_eq!(lab.records().len(), QUICK_JOBS);
    for f in [
        "voronoi.png",
        "voronoi.svg",
        "regression.png",
        "regression.svg",
        "heads.png",
        "heads.svg",
        "summary.md",
        "provenance.json",
    ] {
        assert!(lab.out(f).is_file(), "{f} missing");
    }
    let metrics = String::from_utf8(lab.read("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), QUICK_JOBS + 1);
    assert!(metrics.starts_with("id,setting,truth,method,n,replicate,voronoi,regression,"));
    let rates = String::from_utf8(lab.read("rates.csv")).unwrap();
    assert_eq!(
        rates.lines().count(),
        5,
        "one row per setting × method:\n{rates}"
    );
    let summary = String::from_utf8(lab.read("summary.md")).unwrap();
    assert!(
        summary.contains("| tanh | hora-tanh | 2 | 2 | lora |")
            && summary.contains("## Provenance"),
        "{summary}"
    );

    // Every raw record carries its provenance.
    let id = ids.iter().next().unwrap();
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.raw().join(format!("{id}.json"))).unwrap())
            .unwrap();
    let p = &rec["provenance"];
    assert_eq!(rec["id"], *id);
    assert_eq!(p["experiment_sha256"], manifest["experiment_sha256"]);
    assert_eq!(
        p["git_revision"], "unknown",
        "a temporary directory is no git checkout"
    );
    assert!(p["crate_versions"]["hmoe"].is_string() && p["wall_seconds"].as_f64().unwrap() >= 0.0);
    assert!(p["host_threads"].as_u64().unwrap() >= 1);

    // A second run has nothing to do; `list` and `merge` agree.
    let out = lab.ok(&["run", "tiny"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already have records"));
    let out = lab.ok(&["list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("quick {QUICK_JOBS}/{QUICK_JOBS}")),
        "{}",
        text(&out)
    );
    lab.ok(&["merge", "tiny"]);

    // Another profile shares the raw records its jobs have in common.
    let out = lab.ok(&["run", "tiny", "--profile", "other"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already have records"),
        "{}",
        text(&out)
    );
}

#[test]
fn interrupted_runs_resume_to_identical_metrics() {
    let full = reference();
    let lab = Lab::new(TINY);
    // A partial run: one shard of three.
    lab.ok(&["run", "tiny", "--shard", "1/3"]);
    let partial = lab.records();
    assert_eq!(partial.len(), QUICK_JOBS / 3);
    // A record truncated mid-write (on a machine without atomic rename), and a leftover
    // temporary file of a killed writer.
    let victim = full
        .records()
        .into_iter()
        .find(|r| !partial.contains(r))
        .unwrap();
    let bytes = std::fs::read(full.raw().join(&victim)).unwrap();
    std::fs::write(lab.raw().join(&victim), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(
        lab.raw().join(format!(".{victim}.999999.tmp")),
        &bytes[..10],
    )
    .unwrap();

    // metric names the corrupt file and skips it; merge lists it and fails.
    let out = lab.ok(&["metric", "tiny"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&victim) && err.contains("corrupt"), "{err}");
    let out = lab.hora(&["merge", "tiny"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("corrupt  {}", victim.trim_end_matches(".json"))),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("missing")).count(),
        QUICK_JOBS - partial.len() - 1
    );

    // Rerunning fills the gaps and replaces the corrupt record.
    lab.ok(&["run-all", "tiny", "--threads", "2"]);
    lab.ok(&["merge", "tiny"]);
    for t in TABLES {
        assert_eq!(
            lab.read(t),
            full.read(t),
            "{t} differs from the uninterrupted run"
        );
    }
}

#[test]
fn killing_a_run_and_starting_again_gives_the_same_metrics() {
    let full = reference();
    let lab = Lab::new(TINY);
    let mut child = lab
        .command(&["run", "tiny", "--threads", "1"])
        .spawn()
        .unwrap();
    // Kill as soon as the first records land (or whenever the run ends first).
    let t0 = std::time::Instant::now();
    while lab.records().len() < 3 && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().ok();
    child.wait().unwrap();
    let at_kill = lab.records().len();
    assert!(
        (1..QUICK_JOBS).contains(&at_kill),
        "the kill should land mid-run ({at_kill} records)"
    );
    lab.ok(&["run-all", "tiny"]);
    for t in TABLES {
        assert_eq!(
            lab.read(t),
            full.read(t),
            "{t} differs from the uninterrupted run"
        );
    }
}

#[test]
fn the_union_of_shards_is_the_whole() {
    let full = reference();
    let lab = Lab::new(TINY);
    let mut seen = BTreeSet::new();
    for i in 0..4 {
        let before = lab.records();
        let out = if i == 3 {
            // The last shard from a Slurm array's environment, one-based.
            lab.command(&["run", "tiny"])
                .env("SLURM_ARRAY_TASK_ID", "4")
                .env("SLURM_ARRAY_TASK_MIN", "1")
                .env("SLURM_ARRAY_TASK_COUNT", "4")
                .output()
                .unwrap()
        } else {
            lab.hora(&["run", "tiny", "--shard", &format!("{i}/4")])
        };
        assert!(out.status.success(), "{}", text(&out));
        let added: BTreeSet<String> = lab.records().difference(&before).cloned().collect();
        assert!(
            !added.is_empty() && added.is_disjoint(&seen),
            "shards overlap"
        );
        seen.extend(added);
        if i < 3 {
            assert_eq!(lab.hora(&["merge", "tiny"]).status.code(), Some(1));
        }
    }
    assert_eq!(seen, full.records());
    lab.ok(&["merge", "tiny"]);
    lab.ok(&["metric", "tiny"]);
    for t in TABLES {
        assert_eq!(lab.read(t), full.read(t), "{t}");
    }
}

#[test]
fn merge_copies_records_from_other_machines() {
    let full = reference();
    let lab = Lab::new(TINY);
    let out = lab.ok(&["merge", "tiny", "--from", full.raw().to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{QUICK_JOBS} imported")),
        "{}",
        text(&out)
    );
    assert_eq!(lab.records(), full.records());
}

#[test]
fn dry_run_writes_nothing() {
    let lab = Lab::new(TINY);
    let out = lab.ok(&["tiny", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{QUICK_JOBS} to run")),
        "{}",
        text(&out)
    );
    assert!(!lab.results().exists());
}

#[test]
fn slurm_prints_an_array_and_a_dependent_merge() {
    let lab = Lab::new(TINY);
    let out = lab.ok(&["slurm", "tiny", "--tasks", "8"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.starts_with("#!/usr/bin/env bash\n#SBATCH") && s.contains("#SBATCH --array=0-7"),
        "{s}"
    );
    assert!(
        s.contains("--dependency=afterany") && s.contains(" merge tiny") && s.contains("))/8"),
        "{s}"
    );
    assert!(!lab.results().exists());
}

/// Exit code 2, the message names `needle`, and no results folder appears.
fn user_error(lab: &Lab, args: &[&str], needle: &str) {
    let out = lab.hora(args);
    assert_eq!(out.status.code(), Some(2), "hora {args:?}:\n{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(needle),
        "hora {args:?}: stderr does not name `{needle}`:\n{err}"
    );
    assert!(
        !lab.results().exists(),
        "hora {args:?} wrote {}",
        lab.results().display()
    );
}

#[test]
fn unknown_experiment_exits_2() {
    let lab = Lab::new(TINY);
    user_error(&lab, &["run", "nope"], "unknown experiment `nope`");
    user_error(&lab, &["nope"], "nope");
    user_error(&lab, &["merge", "nope"], "available: tiny");
}

#[test]
fn unknown_keys_exit_2() {
    for (from, to, needle) in [
        (
            "[model]\natoms = 2",
            "[model]\natoms = 2\natomz = 3",
            "atomz",
        ),
        (
            "model = { heads = 1 }",
            "model = { heads = 1, headz = 2 }",
            "headz",
        ),
        ("[fit]\n", "[fit]\nmax_iter = 3\n", "max_iter"),
        ("[loss]\n", "[loss]\nrhoo = 3\n", "rhoo"),
        ("[report]\n", "[report]\ncolour = 1\n", "colour"),
        ("replicates = 3", "replicates = 3\nseeds = 2", "seeds"),
        (
            "description =",
            "descriptoin = 1\ndescription =",
            "descriptoin",
        ),
    ] {
        assert!(TINY.contains(from), "{from}");
        user_error(
            &Lab::new(&TINY.replacen(from, to, 1)),
            &["run", "tiny"],
            needle,
        );
    }
}

#[test]
fn out_of_range_values_exit_2() {
    for (from, to, needle) in [
        ("atoms = 2", "atoms = 0", "atoms"),
        (
            "model = { heads = 1 }",
            "model = { heads = 1, sigma = -1.0 }",
            "sigma",
        ),
        ("max_iters = 60", "max_iters = 0", "max_iters"),
        ("fresh_samples = 2000", "fresh_samples = 0", "fresh_samples"),
        ("replicates = 3", "replicates = 0", "replicates"),
        ("ns = [100, 200, 400]", "ns = [100, 1, 400]", "ns"),
        ("ns = [100, 200, 400]", "ns = [100, 100]", "twice"),
        ("target_loss = 0.5", "target_loss = -1.0", "target_loss"),
        (
            "methods = [\"lora\", \"hora-tanh\"]",
            "methods = [\"lora\", \"hira\"]",
            "hira",
        ),
        ("name = \"tiny\"", "name = \"other\"", "must match"),
        ("kind = \"rates\"", "kind = \"ratez\"", "ratez"),
    ] {
        assert!(TINY.contains(from), "{from}");
        user_error(&Lab::new(&TINY.replacen(from, to, 1)), &["tiny"], needle);
    }
}

#[test]
fn bad_flags_exit_2() {
    let lab = Lab::new(TINY);
    user_error(
        &lab,
        &["run", "tiny", "--profile", "huge"],
        "unknown profile `huge`",
    );
    user_error(&lab, &["run", "tiny", "--shard", "4/4"], "bad shard");
    user_error(&lab, &["run", "tiny", "--threads", "0"], "--threads");
    let out = lab
        .command(&["run", "tiny"])
        .env("SLURM_ARRAY_TASK_ID", "x")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    user_error(&lab, &["frobnicate", "--bogus"], "bogus");
}

#[test]
fn finetune_files_are_checked_without_assets() {
    let ft = r#"
name = "tiny"
kind = "finetune"
methods = ["lora", "hora"]
[train]
epochs = 1
[profiles.quick]
fractions = [0.01]
seeds = [0, 1]
"#;
    let lab = Lab::new(ft);
    let out = lab.ok(&["plan", "tiny"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 jobs"),
        "{}",
        text(&out)
    );
    user_error(
        &Lab::new(&ft.replace("epochs = 1", "epochz = 1")),
        &["plan", "tiny"],
        "epochz",
    );
    user_error(
        &Lab::new(&ft.replace("epochs = 1", "rank = 0")),
        &["plan", "tiny"],
        "rank",
    );
    user_error(
        &Lab::new(&ft.replace("\"hora\"", "\"hira\"")),
        &["plan", "tiny"],
        "hira",
    );
    user_error(
        &Lab::new(&ft.replace("seeds = [0, 1]", "seeds = [0, 1]\nsteps = 3")),
        &["plan", "tiny"],
        "steps",
    );
}
