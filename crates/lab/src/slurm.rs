//! `hora slurm X`: an sbatch script for a Slurm job array (every task runs `hora run X --shard
//! i/N`) whose first task submits a dependent job that merges, computes metrics and plots.
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
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
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
    let partition = o
        .partition
        .as_ref()
        .map(|p| format!("#SBATCH --partition={}\n", sh_quote(p)))
        .unwrap_or_default();
    let name = format!("hora-{experiment}");
    let merge_partition = o
        .partition
        .as_ref()
        .map(|p| format!(" --partition={}", sh_quote(p)))
        .unwrap_or_default();
    format!(
        r#"#!/usr/bin/env bash
#SBATCH --job-name={name}
#SBATCH --array=0-{last}
#SBATCH --cpus-per-task={cpus}
#SBATCH --time={time}
#SBATCH --output={name}-%A_%a.out
{partition}# Experiment `{experiment}`, profile {profile}: {jobs} jobs over a job array of {tasks} tasks; task i
# runs jobs i, i + {tasks}, i + 2·{tasks}, ... of the plan (`hora run --shard i/{tasks}`), skipping jobs
# that already have a record, so resubmitting after a failure only redoes what is missing.
# The first task submits a job that waits for the whole array, checks that every job has a
# record (`hora merge`), then computes the metrics and draws the figures.
# Build first (`cargo build --release`), then: sbatch <this file>
set -euo pipefail
cd {root}
HORA={hora}
if [ "$SLURM_ARRAY_TASK_ID" = "${{SLURM_ARRAY_TASK_MIN:-0}}" ]; then
  sbatch --job-name={name}-merge --dependency=afterany:"$SLURM_ARRAY_JOB_ID" --cpus-per-task={cpus} \
    --time=01:00:00{merge_partition} --output={name}-merge-%j.out \
    --wrap="$HORA merge {experiment} {common} && $HORA metric {experiment} {common} && $HORA plot {experiment} {common}"
fi
"$HORA" run {experiment} {common} --threads "${{SLURM_CPUS_PER_TASK:-{cpus}}}" \
  --shard "$((SLURM_ARRAY_TASK_ID - ${{SLURM_ARRAY_TASK_MIN:-0}}))/{tasks}"
"#,
        root = q(root),
        hora = sh_quote(&o.hora),
        name = sh_quote(&name),
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
        let o = SlurmOptions {
            tasks: 8,
            cpus_per_task: 4,
            time: "02:00:00".into(),
            partition: None,
            hora: "/x/hora".into(),
        };
        let s = script(
            "rates-exact",
            "paper",
            5,
            Path::new("/w"),
            Path::new("/w/experiments"),
            Path::new("/w/results"),
            &o,
        );
        assert!(s.contains("#SBATCH --array=0-4"), "{s}");
        assert!(
            s.contains("--shard \"$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0}))/5\""),
            "{s}"
        );
        assert!(
            s.contains("--dependency=afterany:\"$SLURM_ARRAY_JOB_ID\""),
            "{s}"
        );
        assert!(
            s.contains("merge rates-exact")
                && s.contains("metric rates-exact")
                && s.contains("plot rates-exact")
        );
        assert_eq!(sh_quote("a b'c"), "'a b'\\''c'");
    }
}
