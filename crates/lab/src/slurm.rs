//! `hora slurm X`: a bash script that submits the sweep as a Slurm job array (every task runs
//! `hora run X --shard i/N`) and a dependent job that merges, computes metrics and plots.
use std::path::Path;

#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// Array tasks (shards).
    pub tasks: usize,
    pub cpus_per_task: usize,
    /// Wall-time limit of one task, Slurm syntax.
    pub time: String,
    pub partition: Option<String>,
    /// The `hora` binary the jobs run.
    pub hora: String,
}

/// Quote for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub fn script(
    experiment: &str,
    profile: &str,
    jobs: usize,
    root: &Path,
    experiments: &Path,
    results: &Path,
    o: &SlurmOptions,
) -> String {
    let tasks = o.tasks.clamp(1, jobs.max(1));
    let q = |p: &Path| sh_quote(&p.display().to_string());
    let common = format!(
        "--profile {} --experiments {} --results {}",
        sh_quote(profile),
        q(experiments),
        q(results)
    );
    let log_dir = results.join(experiment).join("slurm");
    let partition = o.partition.as_ref().map(|p| format!(" --partition={}", sh_quote(p))).unwrap_or_default();
    format!(
        r#"#!/usr/bin/env bash
# Submits experiment `{experiment}` (profile {profile}, {jobs} jobs) as a Slurm job array of
# {tasks} tasks, each running every {tasks}-th job (`hora run --shard i/{tasks}`), and a dependent
# job that checks every record is there (`hora merge`), computes the metrics and draws the figures.
# Tasks skip jobs that already have a record, so resubmitting after a failure only redoes those.
# Build first (`cargo build --release`); run this script from a login node: bash <this file>
set -euo pipefail
cd {root}
HORA={hora}
mkdir -p {log_dir}
ARRAY=$(sbatch --parsable --job-name={name} --array=0-{last} --cpus-per-task={cpus} --time={time}{partition} \
  --output={log_dir}/%A_%a.out \
  --wrap="$HORA run {experiment} {common} --threads {cpus} --shard \${{SLURM_ARRAY_TASK_ID}}/{tasks}")
MERGE=$(sbatch --parsable --job-name={name}-merge --dependency=afterany:$ARRAY --cpus-per-task={cpus} --time=01:00:00{partition} \
  --output={log_dir}/merge-%j.out \
  --wrap="$HORA merge {experiment} {common} && $HORA metric {experiment} {common} && $HORA plot {experiment} {common}")
echo "submitted array job $ARRAY ({tasks} tasks) and merge job $MERGE; logs in {log_dir}"
"#,
        root = q(root),
        hora = sh_quote(&o.hora),
        log_dir = q(&log_dir),
        name = sh_quote(&format!("hora-{experiment}")),
        last = tasks - 1,
        cpus = o.cpus_per_task,
        time = sh_quote(&o.time),
        experiment = sh_quote(experiment),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_shards_the_plan_and_chains_the_merge() {
        let o = SlurmOptions { tasks: 8, cpus_per_task: 4, time: "02:00:00".into(), partition: None, hora: "/x/hora".into() };
        let s = script("rates-exact", "paper", 5, Path::new("/w"), Path::new("/w/experiments"), Path::new("/w/results"), &o);
        assert!(s.contains("--array=0-4"), "{s}");
        assert!(s.contains("--shard \\${SLURM_ARRAY_TASK_ID}/5"), "{s}");
        assert!(s.contains("--dependency=afterany:$ARRAY"));
        assert!(s.contains("merge rates-exact") && s.contains("metric rates-exact") && s.contains("plot rates-exact"));
        assert_eq!(sh_quote("a b'c"), "'a b'\\''c'");
    }
}
