//! `hora slurm X`: a submit script for Slurm. Run with `bash` where `sbatch` works (a login
//! node), it submits a job array whose every task runs `hora run X --shard i/N`, then one job
//! that waits for the whole array (`--dependency=afterany:<array id>`), checks that every job
//! has a record (`hora merge`) and only then computes the metrics and draws the figures. Nothing
//! is submitted from inside a task, so compute nodes need no `sbatch` and a requeued task never
//! submits a second merge job.
use crate::error::LabError;
use std::path::Path;

/// The default CPUs per array task: within a typical small node (and `hora run` uses them as
/// `--threads`, jobs at once).
pub const DEFAULT_CPUS: usize = 2;

#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// Array tasks (shards); more than there are jobs is cut to the number of jobs.
    pub tasks: usize,
    pub cpus_per_task: usize,
    /// Wall-time limit of one task, in Slurm's syntax (checked).
    pub time: String,
    pub partition: Option<String>,
    pub mem: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Further sbatch options, passed to both submissions as given (`--constraint=x`).
    pub extra: Vec<String>,
    /// The `hora` binary the jobs run.
    pub hora: String,
    /// Further flags every `hora` command of the jobs repeats, shell-quoted (` --assets DIR`).
    pub hora_flags: String,
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

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or `UNLIMITED`.
pub fn check_time(t: &str) -> Result<(), LabError> {
    let bad = || {
        LabError::Usage(format!(
            "bad --time `{t}`: expected minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED (e.g. 04:00:00)"
        ))
    };
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return Ok(());
    }
    let num = |s: &str| !s.is_empty() && s.len() <= 6 && s.chars().all(|c| c.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let ok = days.is_none_or(num) && (1..=3).contains(&parts.len()) && parts.iter().all(|p| num(p));
    let positive = t.chars().any(|c| c.is_ascii_digit() && c != '0');
    if ok && positive {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Check the options before anything is printed.
pub fn check(o: &SlurmOptions) -> Result<(), LabError> {
    if o.tasks == 0 {
        return Err(LabError::Usage("--tasks must be at least 1".into()));
    }
    if o.cpus_per_task == 0 {
        return Err(LabError::Usage("--cpus-per-task must be at least 1".into()));
    }
    check_time(&o.time)?;
    if let Some(m) = &o.mem {
        let (digits, unit) = m.split_at(m.find(|c: char| !c.is_ascii_digit()).unwrap_or(m.len()));
        if digits.is_empty()
            || !["", "K", "M", "G", "T"].contains(&unit.to_ascii_uppercase().as_str())
        {
            return Err(LabError::Usage(format!(
                "bad --mem `{m}`: expected a size such as 4G, 500M or 2000 (megabytes)"
            )));
        }
    }
    for (flag, v) in [
        ("--account", &o.account),
        ("--qos", &o.qos),
        ("--partition", &o.partition),
    ] {
        if v.as_ref().is_some_and(|v| v.trim().is_empty()) {
            return Err(LabError::Usage(format!("{flag} needs a value")));
        }
    }
    if let Some(x) = o.extra.iter().find(|x| !x.starts_with('-')) {
        return Err(LabError::Usage(format!(
            "--sbatch-arg `{x}` is not an sbatch option (write it as --option=value)"
        )));
    }
    Ok(())
}

/// The submit script. `o` must have passed [`check`].
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
        "--profile {} --experiments {} --results {}{}",
        sh_quote(profile),
        q(experiments),
        q(results),
        o.hora_flags
    );
    let name = sh_quote(&format!("hora-{experiment}"));
    // Options both submissions share: where, whose, and any pass-through.
    let mut shared: Vec<String> = Vec::new();
    for (flag, v) in [
        ("--partition", &o.partition),
        ("--account", &o.account),
        ("--qos", &o.qos),
    ] {
        if let Some(v) = v {
            shared.push(format!("{flag}={}", sh_quote(v)));
        }
    }
    shared.extend(o.extra.iter().map(|x| sh_quote(x)));
    let shared = shared.iter().map(|s| format!(" {s}")).collect::<String>();
    let mem = o
        .mem
        .as_ref()
        .map(|m| format!(" --mem={}", sh_quote(m)))
        .unwrap_or_default();
    let experiment = sh_quote(experiment);
    format!(
        r#"#!/usr/bin/env bash
# Experiment {experiment}, profile {profile}: {jobs} jobs over a Slurm job array of {tasks} tasks. Task i runs
# jobs i, i + {tasks}, i + 2·{tasks}, ... of the plan (`hora run --shard i/{tasks}`) and skips jobs that
# already have a record, so running this file again after a failure only redoes what is missing.
# A second job waits for the whole array, checks that every job has a record (`hora merge`:
# it lists the missing ones and fails otherwise) and then writes the metrics and figures.
#
# Build first (`cargo build --release`), then run this file with bash where sbatch works:
#   bash <this file>
set -euo pipefail
cd {root}
HORA={hora}
array=$(sbatch --parsable --job-name={name} --array=0-{last} --cpus-per-task={cpus} \
  --time={time}{mem}{shared} --output={name}-%A_%a.out <<EOF
#!/usr/bin/env bash
set -euo pipefail
"$HORA" run {experiment} {common} --threads "\${{SLURM_CPUS_PER_TASK:-{cpus}}}" \
  --shard "\$((SLURM_ARRAY_TASK_ID - \${{SLURM_ARRAY_TASK_MIN:-0}}))/{tasks}"
EOF
)
array=${{array%%;*}}
merge=$(sbatch --parsable --job-name={name}-merge --dependency=afterany:"$array" \
  --cpus-per-task={cpus} --time=01:00:00{shared} --output={name}-merge-%j.out <<EOF
#!/usr/bin/env bash
set -euo pipefail
"$HORA" merge {experiment} {common}
"$HORA" metric {experiment} {common}
"$HORA" plot {experiment} {common}
EOF
)
merge=${{merge%%;*}}
echo "array $array"
echo "merge $merge"
"#,
        root = q(root),
        hora = sh_quote(&o.hora),
        last = tasks - 1,
        cpus = o.cpus_per_task,
        time = sh_quote(&o.time),
        profile = sh_quote(profile),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SlurmOptions {
        SlurmOptions {
            tasks: 8,
            cpus_per_task: 4,
            time: "02:00:00".into(),
            hora: "/x/hora".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_script_submits_the_array_then_a_dependent_merge() {
        let o = SlurmOptions {
            mem: Some("4G".into()),
            account: Some("proj x".into()),
            extra: vec!["--constraint=avx2".into()],
            ..options()
        };
        check(&o).unwrap();
        let s = script(
            "rates-exact",
            "paper",
            5,
            Path::new("/w"),
            Path::new("/w/experiments"),
            Path::new("/w/results"),
            &o,
        );
        assert!(s.contains("--array=0-4 --cpus-per-task=4"), "{s}");
        assert!(
            s.contains("--time=02:00:00 --mem=4G --account='proj x' --constraint=avx2"),
            "{s}"
        );
        assert!(
            s.contains(r#"--shard "\$((SLURM_ARRAY_TASK_ID - \${SLURM_ARRAY_TASK_MIN:-0}))/5""#),
            "{s}"
        );
        assert!(s.contains("--dependency=afterany:\"$array\""), "{s}");
        // The merge job is submitted by this script, never from inside a task.
        assert_eq!(s.matches("sbatch --parsable").count(), 2);
        let merge = &s[s.find("merge=$(").unwrap()..];
        assert!(
            merge.contains("merge rates-exact")
                && merge.contains("metric rates-exact")
                && merge.contains("plot rates-exact")
        );
        assert_eq!(sh_quote("a b'c"), "'a b'\\''c'");
    }

    #[test]
    fn bad_options_are_refused() {
        for t in ["04:00:00", "30", "1-12", "2-00:30:00", "10:00", "UNLIMITED"] {
            check_time(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        }
        for t in ["bogus", "", "0", "1:2:3:4", "-1", "1-", "4h"] {
            assert!(check_time(t).is_err(), "{t}");
        }
        let bad = |o: SlurmOptions, needle: &str| {
            let e = check(&o).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        bad(
            SlurmOptions {
                tasks: 0,
                ..options()
            },
            "--tasks",
        );
        bad(
            SlurmOptions {
                cpus_per_task: 0,
                ..options()
            },
            "--cpus-per-task",
        );
        bad(
            SlurmOptions {
                mem: Some("lots".into()),
                ..options()
            },
            "--mem",
        );
        bad(
            SlurmOptions {
                extra: vec!["constraint=x".into()],
                ..options()
            },
            "--sbatch-arg",
        );
    }
}
