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
    // The summary of a partial profile says so before any number.
    lab.ok(&["plot", "tiny"]);
    let summary = String::from_utf8(lab.read("summary.md")).unwrap();
    let notice = format!(
        "**Incomplete: {} of {QUICK_JOBS} jobs have a record** ({} missing, 1 corrupt)",
        partial.len(),
        QUICK_JOBS - partial.len() - 1
    );
    let at = summary.find(&notice).unwrap_or_else(|| panic!("{summary}"));
    assert!(
        at < summary.find('|').unwrap(),
        "the notice comes before the tables"
    );
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
    let summary = String::from_utf8(lab.read("summary.md")).unwrap();
    assert!(!summary.contains("Incomplete"), "{summary}");
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
    let out = lab.ok(&[
        "slurm", "tiny", "--tasks", "8", "--mem", "2G", "--qos", "short",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.starts_with("#!/usr/bin/env bash\n") && s.contains("--array=0-7 --cpus-per-task=2"),
        "{s}"
    );
    assert!(s.contains("--mem=2G --qos=short"), "{s}");
    // A kind's flags travel with its jobs (the finetune kind's `--assets`, `--save-full`), and
    // only with its own: a rates experiment's jobs do not take the finetune kind's.
    let out = lab.ok(&["slurm", "tiny", "--assets", "/shared/assets"]);
    let s2 = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s2.matches("--assets").count(), 0, "{s2}");
    let ft = Lab::new(FINETUNE_TINY);
    let out = ft.ok(&["slurm", "tiny", "--assets", "/shared/assets", "--save-full"]);
    let s2 = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        s2.matches("--assets /shared/assets --save-full").count(),
        4,
        "{s2}"
    );
    assert!(
        s.contains("--dependency=afterany") && s.contains(" merge tiny") && s.contains("))/8"),
        "{s}"
    );
    assert!(!lab.results().exists());
    // More tasks than jobs is said, not silently changed; bad values exit 2.
    let out = lab.ok(&["slurm", "tiny", "--tasks", "100"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("36 array tasks (not 100)"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--array=0-35"));
    for (flag, value) in [
        ("--time", "bogus"),
        ("--cpus-per-task", "0"),
        ("--tasks", "0"),
    ] {
        user_error(&lab, &["slurm", "tiny", flag, value], flag);
    }
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

const FINETUNE_TINY: &str = r#"
name = "tiny"
kind = "finetune"
methods = ["lora", "hora"]
[train]
epochs = 1
[profiles.quick]
fractions = [0.01]
seeds = [0, 1]
"#;

#[test]
fn finetune_files_are_checked_without_assets() {
    let ft = FINETUNE_TINY;
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

/// Records are checked on read: a stored job edited by hand no longer hashes to the record's id
/// and is reported as corrupt (then rerun); a format newer than this build is named as such; a
/// format-1 record (no `format` field, no checksum) still reads.
#[test]
fn edited_and_foreign_records_are_reported_and_format_1_still_reads() {
    let lab = reference();
    let names: Vec<String> = lab.records().into_iter().collect();
    let path = |n: &str| lab.raw().join(n);
    let json = |n: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path(n)).unwrap()).unwrap()
    };
    let write = |n: &str, v: &serde_json::Value| {
        std::fs::write(path(n), serde_json::to_vec_pretty(v).unwrap()).unwrap()
    };
    let v = json(&names[0]);
    assert_eq!(v["format"], 3);
    assert!(v["checksum"].as_str().is_some_and(|c| c.len() == 64));
    assert!(v["provenance"]["experiment_file"]
        .as_str()
        .unwrap()
        .ends_with("tiny.toml"));

    let mut edited = v.clone();
    edited["job"]["n"] = serde_json::json!(5);
    edited["record"]["job"]["n"] = serde_json::json!(5);
    write(&names[0], &edited);
    let mut newer = json(&names[1]);
    newer["format"] = serde_json::json!(99);
    newer["provenance"]["field_from_the_future"] = serde_json::json!(1);
    write(&names[1], &newer);
    let mut old = json(&names[2]);
    old.as_object_mut().unwrap().remove("format");
    old.as_object_mut().unwrap().remove("checksum");
    write(&names[2], &old);

    let out = lab.hora(&["merge", "tiny"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = |n: &str| n.trim_end_matches(".json").to_string();
    assert!(
        stdout.contains(&format!("corrupt  {}", id(&names[0]))) && stdout.contains("hashes to"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("corrupt  {}", id(&names[1])))
            && stdout.contains("record format 99 is newer"),
        "{stdout}"
    );
    assert!(!stdout.contains(&id(&names[2])), "{stdout}");
    assert!(stdout.contains("2 corrupt"), "{stdout}");
    // A run replaces exactly the two bad records.
    lab.ok(&["run", "tiny"]);
    lab.ok(&["merge", "tiny"]);
    assert!(json(&names[2]).get("format").is_none());
}

/// Unix manners: a reader that stops early (`hora list | head -1`) ends `hora` quietly. The
/// listing is made longer than a pipe's buffer, so the write after the reader left must fail.
#[test]
fn a_closed_stdout_ends_quietly() {
    let lab = Lab::new(TINY);
    for k in 0..1500 {
        let text = TINY.replace("name = \"tiny\"", &format!("name = \"t{k:04}\""));
        std::fs::write(lab.root.join(format!("experiments/t{k:04}.toml")), text).unwrap();
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' list | head -1", env!("CARGO_BIN_EXE_hora")))
        .current_dir(&lab.root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

/// One `hora run` per experiment (and shard) at a time; other shards run side by side.
#[test]
fn a_second_run_of_the_same_work_is_refused() {
    let lab = Lab::new(TINY);
    std::fs::create_dir_all(lab.results().join("tiny")).unwrap();
    let lock = std::fs::File::create(lab.results().join("tiny/.hora-run-all.lock")).unwrap();
    lock.lock().unwrap();
    let out = lab.hora(&["run", "tiny"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    assert!(lab.records().is_empty());
    lab.ok(&["run", "tiny", "--shard", "0/6"]);
    assert_eq!(lab.records().len(), QUICK_JOBS / 6);
    drop(lock);
    lab.ok(&["run", "tiny"]);
    assert_eq!(lab.records().len(), QUICK_JOBS);
}

/// Reading commands write only their outputs, and `--out` sends those elsewhere: a results
/// archive is re-analysed without a byte of it changing. Hints repeat the user's flags.
#[test]
fn metric_and_plot_leave_the_results_folder_alone_with_out() {
    let lab = reference();
    let snapshot = |dir: &std::path::Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    v.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        v.sort();
        v
    };
    let before = snapshot(&lab.results());
    let elsewhere = lab.root.join("elsewhere");
    let out_flag = elsewhere.display().to_string();
    lab.ok(&["metric", "tiny", "--out", &out_flag]);
    lab.ok(&["plot", "tiny", "--out", &out_flag]);
    lab.ok(&["merge", "tiny"]);
    assert_eq!(
        snapshot(&lab.results()),
        before,
        "the results folder changed"
    );
    for t in TABLES {
        assert_eq!(
            std::fs::read(elsewhere.join(t)).unwrap(),
            lab.read(t),
            "{t}"
        );
    }
    for f in [
        "summary.md",
        "voronoi.png",
        "manifest.json",
        "provenance.json",
    ] {
        assert!(elsewhere.join(f).is_file(), "{f}");
    }
    // With nothing to read, the hint names the folder the user gave.
    let empty = lab.root.join("empty-results").display().to_string();
    let out = lab.hora(&["metric", "tiny", "--results", &empty]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("--results {empty}")),
        "{}",
        text(&out)
    );
}

/// Without a terminal (a Slurm .out file), progress is a log line every 5% of the work.
#[test]
fn progress_without_a_terminal_is_logged() {
    let lab = Lab::new(TINY);
    let out = lab.ok(&["run", "tiny", "--threads", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tiny / quick: 36/36 jobs (100% of the work), 0 failed"),
        "{err}"
    );
    assert!(
        err.lines().filter(|l| l.contains("% of the work")).count() >= 5,
        "{err}"
    );
}

/// A job too large for the machine is refused when planned, with the estimate and the limit;
/// jobs that fit alone but not together run fewer at once.
#[test]
fn memory_limits_are_checked_before_work() {
    let lab = Lab::new(TINY);
    let out = lab
        .command(&["plan", "tiny"])
        .env("HORA_MEMORY_LIMIT", "1000000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs about") && err.contains("0.0 GiB"),
        "{err}"
    );
    // 32 MiB + a little per sample: one job fits in 40 MiB, two do not.
    let out = lab
        .command(&["run", "tiny", "--threads", "2"])
        .env("HORA_MEMORY_LIMIT", (40u64 << 20).to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("running 1 job(s) at once, not 2"),
        "{}",
        text(&out)
    );
}

#[test]
fn reproduce_refits_from_scratch_and_compares_with_the_committed_tables() {
    let lab = Lab::new(TINY);
    // Nothing committed yet: a user error that writes nothing.
    user_error(
        &lab,
        &["reproduce", "tiny"],
        "nothing committed to compare with",
    );
    lab.ok(&["tiny", "--threads", "2"]);
    let committed: Vec<Vec<u8>> = TABLES.iter().map(|t| lab.read(t)).collect();
    let scratch = lab.root.join("scratch");
    let s = scratch.to_str().unwrap();
    let out = lab.ok(&["reproduce", "tiny", "--into", s, "--threads", "2"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("36 fitted now"), "{said}");
    assert!(said.contains("every table is byte-identical"), "{said}");
    // The committed tables are left alone, and the fresh ones are in the scratch folder.
    for (t, bytes) in TABLES.iter().zip(&committed) {
        assert_eq!(&lab.read(t), bytes, "{t} changed");
        assert_eq!(
            &std::fs::read(scratch.join("tiny/quick").join(t)).unwrap(),
            bytes
        );
    }

    // A committed slope moved outside its own interval: the fresh one no longer lies inside it.
    let rates = String::from_utf8(lab.read("rates.csv")).unwrap();
    let mut lines: Vec<String> = rates.lines().map(String::from).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let (lo, hi) = (
        header.iter().position(|c| *c == "slope_lo").unwrap(),
        header.iter().position(|c| *c == "slope_hi").unwrap(),
    );
    let mut cells: Vec<String> = lines[1].split(',').map(String::from).collect();
    cells[lo] = "10".into();
    cells[hi] = "11".into();
    lines[1] = cells.join(",");
    std::fs::write(lab.out("rates.csv"), lines.join("\n") + "\n").unwrap();
    // Resumed from the scratch folder: nothing is refitted.
    let out = lab.hora(&["reproduce", "tiny", "--into", s]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("0 fitted now, 36 already"), "{said}");
    assert!(said.contains("rates.csv: values differ"), "{said}");
    assert!(
        said.contains("largest relative difference per column: slope_lo "),
        "{said}"
    );
    assert!(said.contains("3 of 4 fresh `slope` inside"), "{said}");
    assert!(said.contains("outside: rates.csv slope"), "{said}");
    assert!(said.contains("NOT reproduced"), "{said}");
}

#[test]
fn timing_tables_are_drawn_and_never_count_as_a_mismatch() {
    let lab = Lab::new(&TINY.replace("bootstrap = 200", "bootstrap = 200\ntiming = true"));
    lab.ok(&["tiny", "--threads", "2"]);
    let timing = String::from_utf8(lab.read("timing.csv")).unwrap();
    let mut lines = timing.lines();
    assert_eq!(
        lines.next().unwrap(),
        "setting,method,atoms,n,fits,seconds_median,seconds_min,seconds_max,iterations_median"
    );
    // 2 settings × 2 methods × 3 n, 3 fits each, with positive times in order.
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 12);
    for r in &rows {
        assert_eq!(r[4], "3");
        let (med, lo, hi): (f64, f64, f64) = (
            r[5].parse().unwrap(),
            r[6].parse().unwrap(),
            r[7].parse().unwrap(),
        );
        assert!(0.0 < lo && lo <= med && med <= hi, "{r:?}");
    }
    assert!(lab.out("seconds.png").exists());
    let summary = String::from_utf8(lab.read("summary.md")).unwrap();
    assert!(summary.contains("## Seconds per fit"), "{summary}");
    let scratch = lab.root.join("scratch");
    let out = lab.ok(&["reproduce", "tiny", "--into", scratch.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("timing.csv: wall-clock times, not compared"),
        "{said}"
    );
    assert!(said.contains("every table is byte-identical"), "{said}");
}

/// A committed manifest that `hora run` rewrites (the profile grew) is the run's own output, not
/// a change to the code: the records still name a clean tree, because the checkout's state is
/// taken before anything is written.
#[test]
fn rewriting_a_committed_manifest_does_not_mark_records_dirty() {
    let lab = Lab::new(TINY);
    let git = |args: &[&str]| git_in(&lab, args);
    git(&["init", "-q"]);
    let manifest = lab.results().join("tiny/other/manifest.json");
    std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    std::fs::write(&manifest, "{}\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "tiny"]);
    lab.ok(&["run", "tiny", "--profile", "other", "--threads", "2"]);
    // The run did rewrite the tracked manifest ...
    assert!(git(&["status", "--porcelain", "--untracked-files=no"]).contains("manifest.json"));
    // ... and every record still names the commit, clean.
    let head = git(&["rev-parse", "HEAD"]).trim().to_string();
    let records = lab.records();
    assert!(!records.is_empty());
    for r in records {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(lab.raw().join(&r)).unwrap()).unwrap();
        let p = &v["provenance"];
        assert_eq!(p["git_revision"], head.as_str(), "{r}");
        assert_eq!(p["git_dirty"], false, "{r}: {p}");
        assert!(
            p.get("git_diff_sha256").is_none_or(|d| d.is_null()),
            "{r}: {p}"
        );
    }
}

/// `git` in the lab's root, as a test's committer.
fn git_in(lab: &Lab, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(&lab.root)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `hora verify` traces every record and table to the history: records from a clean tree, and
/// from a tree whose only change was a manifest that was committed later, pass; a record of
/// another change, an edited result field, a record without its checksum and a stale table each
/// fail, named; `--seal` seals an old-format record and nothing else.
#[test]
fn verify_traces_every_record_and_table_to_the_history() {
    let lab = Lab::new(TINY);
    // Outside a checkout nothing can be traced.
    let out = lab.hora(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is not a git checkout"),
        "{}",
        text(&out)
    );
    // Records and tables alone can still be checked, and the report says what was not.
    lab.ok(&["tiny", "--threads", "2"]);
    let out = lab.ok(&["verify", "--skip-history"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("history checks not run: --skip-history was given"),
        "{}",
        text(&out)
    );
    std::fs::remove_dir_all(lab.results()).unwrap();

    std::fs::write(lab.root.join("README"), "tiny\n").unwrap();
    let manifest = lab.results().join("tiny/other/manifest.json");
    std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    std::fs::write(&manifest, "{}\n").unwrap();
    git_in(&lab, &["init", "-q"]);
    git_in(&lab, &["add", "."]);
    git_in(&lab, &["commit", "-q", "-m", "tiny"]);
    // The other profile from a tree whose only change is its manifest (as a run before 6d1f991
    // left it when it grew a committed manifest), committed with the records afterwards.
    lab.ok(&["plan", "tiny", "--profile", "other"]);
    lab.ok(&["run", "tiny", "--profile", "other", "--threads", "2"]);
    lab.ok(&["metric", "tiny", "--profile", "other"]);
    git_in(&lab, &["add", "."]);
    git_in(&lab, &["commit", "-q", "-m", "other"]);
    // Then the quick profile (which holds the other's jobs) from a clean tree.
    lab.ok(&["tiny", "--threads", "2"]);
    git_in(&lab, &["add", "."]);
    git_in(&lab, &["commit", "-q", "-m", "quick"]);
    let other_records: Vec<String> = lab
        .records()
        .into_iter()
        .filter(|r| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(lab.raw().join(r)).unwrap()).unwrap();
            v["provenance"]["git_dirty"] == true
        })
        .collect();
    assert!(
        !other_records.is_empty(),
        "the other profile ran from a modified tree"
    );

    let out = lab.ok(&["verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("verified: every record"), "{said}");
    let total = lab.records().len();
    let traced = other_records.len();
    // records, valid, sealed, in history, clean, traced.
    assert!(
        said.contains(&format!(
            "| tiny | {total} | {total} | {total} | {total} | {} | {traced} |",
            total - traced
        )),
        "{said}"
    );

    // Three faults at once: an edited result, an old record without a checksum, a stale table.
    let names: Vec<String> = lab.records().into_iter().collect();
    let path = |n: &str| lab.raw().join(n);
    let id = |n: &str| n.trim_end_matches(".json").to_string();
    let json = |n: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path(n)).unwrap()).unwrap()
    };
    let clean: Vec<&String> = names
        .iter()
        .filter(|n| !other_records.contains(n))
        .collect();
    let (edited, unsealed) = (clean[0].clone(), clean[1].clone());
    let mut v = json(&edited);
    let objective = v["record"]["objective"].as_f64().unwrap();
    v["record"]["objective"] = serde_json::json!(objective * 0.5);
    std::fs::write(path(&edited), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let mut v = json(&unsealed);
    v.as_object_mut().unwrap().remove("checksum");
    v["format"] = serde_json::json!(2);
    let mut bytes = serde_json::to_vec_pretty(&v).unwrap();
    bytes.push(b'\n');
    std::fs::write(path(&unsealed), &bytes).unwrap();
    let metrics = lab.out("metrics.csv");
    let table = std::fs::read_to_string(&metrics).unwrap();
    std::fs::write(&metrics, table.replacen(",", ";", 1)).unwrap();
    // (Committed, as an archive that was edited would be: the reruns below are from clean trees.)
    git_in(&lab, &["commit", "-q", "-am", "faults"]);
    let out = lab.hora(&["verify", "tiny"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    for needle in [
        format!("{}  [record] its checksum does not match", id(&edited)),
        format!("{}  [checksum] format 2 without a checksum", id(&unsealed)),
        "quick/metrics.csv  [tables] differs".to_string(),
    ] {
        assert!(said.contains(&needle), "`{needle}` not in\n{said}");
    }
    // The readers name the edited record too, and a run replaces it.
    let out = lab.hora(&["merge", "tiny"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("corrupt  {}", id(&edited))),
        "{}",
        text(&out)
    );
    std::fs::write(&metrics, &table).unwrap();
    git_in(&lab, &["commit", "-q", "-am", "table restored"]);
    lab.ok(&["run", "tiny"]);
    // (The new record names a new revision, so the tables move with it.)
    lab.ok(&["metric", "tiny"]);
    // `--seal` seals the old record, adding one line and changing no other byte.
    let out = lab.ok(&["verify", "tiny", "--seal"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("verified: every record"),
        "{}",
        text(&out)
    );
    let sealed = std::fs::read(path(&unsealed)).unwrap();
    assert_eq!(
        sealed.len() - bytes.len(),
        ",\n  \"checksum\": \"\"".len() + 64
    );
    assert_eq!(json(&unsealed)["format"], 2);

    // A record made from a tree with another change is not traceable.
    std::fs::write(lab.root.join("README"), "tiny, changed\n").unwrap();
    std::fs::remove_file(path(&edited)).unwrap();
    lab.ok(&["run", "tiny"]);
    let out = lab.hora(&["verify", "tiny"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("{}  [tree] ran from a modified tree", id(&edited)))
            && said.contains("is not a manifest-only change"),
        "{said}"
    );
}

/// A profile planned but not started, or whose records are still landing (over several
/// sessions) and whose tables are not committed yet, is a note of `hora verify`, not a failure;
/// once every record is there, tables that are still missing fail it.
#[test]
fn verify_notes_a_profile_in_progress_and_fails_a_complete_one_without_tables() {
    let lab = Lab::new(TINY);
    std::fs::write(lab.root.join("README"), "tiny\n").unwrap();
    git_in(&lab, &["init", "-q"]);
    git_in(&lab, &["add", "."]);
    git_in(&lab, &["commit", "-q", "-m", "tiny"]);
    // Planned and committed before its run: a note, not a failure.
    lab.ok(&["plan", "tiny", "--profile", "other"]);
    git_in(&lab, &["add", "."]);
    git_in(&lab, &["commit", "-q", "-m", "the plan of other"]);
    let out = lab.ok(&["verify", "tiny"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("other/  [tables] planned, not started: none of its 16 jobs")
            && said.contains("verified: every record"),
        "{said}"
    );
    lab.ok(&["run", "tiny", "--profile", "other", "--shard", "0/2"]);
    git_in(&lab, &["add", "."]);
    git_in(&lab, &["commit", "-q", "-m", "half of other"]);
    let out = lab.ok(&["verify", "tiny"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("other/  [tables] in progress: 8 of 16 jobs have a record")
            && said.contains("verified: every record"),
        "{said}"
    );
    lab.ok(&["run", "tiny", "--profile", "other"]);
    git_in(&lab, &["add", "."]);
    git_in(&lab, &["commit", "-q", "-m", "all of other, no tables"]);
    let out = lab.hora(&["verify", "tiny"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the committed one cannot be read"),
        "{}",
        text(&out)
    );
}

/// Every environment variable `hora` reads is checked like a flag: a memory limit that is not a
/// size is an error that names it, not silently the machine's memory.
#[test]
fn environment_variables_are_checked_like_flags() {
    let lab = Lab::new(TINY);
    for (var, value) in [
        ("HORA_MEMORY_LIMIT", "lots"),
        ("HORA_MEMORY_LIMIT", "0"),
        ("HORA_MEMORY_LIMIT", "16Q"),
        ("PYTHON", " "),
    ] {
        let out = lab
            .command(&["plan", "tiny"])
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(var),
            "{var}={value}: {}",
            text(&out)
        );
        assert!(!lab.results().exists(), "{var}={value} wrote results");
    }
    let file = lab.root.join("not-a-folder");
    std::fs::write(&file, "").unwrap();
    let out = lab
        .command(&["plan", "tiny"])
        .env("HORA_ASSETS", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HORA_ASSETS"));
    // A size with a unit is a size.
    let out = lab
        .command(&["plan", "tiny"])
        .env("HORA_MEMORY_LIMIT", "16G")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// A full disk (a 64 KiB tmpfs in a private mount namespace) fails the jobs it hits, by name,
/// and leaves no partial record: every record on it reads as valid, and a run with room
/// afterwards completes the profile to the metrics of an uninterrupted run. Needs `unshare`
/// and the right to mount (root, or unprivileged user namespaces); it says so when it cannot.
#[test]
fn a_full_disk_fails_jobs_by_name_and_leaves_no_partial_record() {
    let lab = Lab::new(TINY);
    let small = lab.root.join("small");
    let copy = lab.root.join("copy");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::create_dir_all(&copy).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs small || exit 97; echo mounted; \
         '{}' run tiny --threads 2 --results small; echo \"exit=$?\"; cp -a small/. copy/",
        env!("CARGO_BIN_EXE_hora")
    );
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n");
    let ns: &[&str] = if root.unwrap_or(false) {
        &["-m"]
    } else {
        &["-r", "-m"]
    };
    let out = Command::new("unshare")
        .args(ns)
        .args(["sh", "-c", &script])
        .current_dir(&lab.root)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .output();
    let out = match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("mounted") => o,
        other => {
            eprintln!("SKIPPED: cannot mount a tmpfs here ({other:?})");
            return;
        }
    };
    let said = text(&out);
    assert!(said.contains("exit=1"), "{said}");
    assert!(said.contains("No space left on device"), "{said}");
    assert!(said.contains("jobs failed"), "{said}");
    let raw = copy.join("tiny/raw");
    let on_disk: Vec<_> = std::fs::read_dir(&raw)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        on_disk.iter().all(|n| n.ends_with(".json")),
        "a temporary file was left: {on_disk:?}"
    );
    let written = on_disk.len();
    assert!(written > 0 && written < QUICK_JOBS, "{written} records fit");
    // Every record that landed is whole: merge finds no corrupt one.
    let out = lab.hora(&["merge", "tiny", "--results", copy.to_str().unwrap()]);
    let merged = String::from_utf8_lossy(&out.stdout);
    assert!(
        merged.contains(&format!(
            "{written} of {QUICK_JOBS} jobs have a valid record"
        )) && merged.contains(" 0 corrupt"),
        "{}",
        text(&out)
    );
    // With room, the same run completes to the uninterrupted run's metrics.
    lab.ok(&[
        "tiny",
        "--threads",
        "2",
        "--results",
        copy.to_str().unwrap(),
    ]);
    let reference = reference();
    for t in TABLES {
        assert_eq!(
            std::fs::read(copy.join("tiny/quick").join(t)).unwrap(),
            reference.read(t),
            "{t}"
        );
    }
}
