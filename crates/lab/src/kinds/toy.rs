//! A toy kind, written as a new contributor adds one: this file, and one registry line (in the
//! test below, a registry of its own). It has a flag (`--toy-scale`) and a subcommand
//! (`hora toy-hello`), so the test shows that neither the command line nor the pipeline needs to
//! know it.
use crate::error::LabError;
use crate::experiment::{from_table, ExperimentInfo};
use crate::kind::{
    CommandEnv, Forward, JobContext, Kind, KindCommands, KindFlags, Records, Report, Written,
};
use crate::layout::Dirs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(clap::Args, Clone, Debug, Default)]
#[group(skip)]
pub struct ToyFlags {
    /// toy: multiply every job's value by this.
    #[arg(long, global = true)]
    pub toy_scale: Option<f64>,
}

impl KindFlags for ToyFlags {
    fn forward(&self) -> Vec<Forward> {
        self.toy_scale
            .map(|v| Forward::Value("--toy-scale", v.to_string()))
            .into_iter()
            .collect()
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum ToyCommands {
    /// toy: write `hello NAME xSCALE` to results/toy-hello.txt.
    ToyHello { name: String },
}

impl KindCommands<ToyFlags> for ToyCommands {
    fn run(self, flags: &ToyFlags, env: &CommandEnv<'_>) -> anyhow::Result<bool> {
        let ToyCommands::ToyHello { name } = self;
        let text = format!("hello {name} x{}", flags.toy_scale.unwrap_or(1.0));
        if !env.dry_run {
            std::fs::create_dir_all(env.results)?;
            std::fs::write(env.results.join("toy-hello.txt"), text)?;
        }
        Ok(true)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToyFile {
    profiles: BTreeMap<String, ToyProfile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToyProfile {
    jobs: u32,
}

pub struct Toy {
    name: String,
    profiles: BTreeMap<String, u32>,
    scale: f64,
}

#[derive(Serialize)]
struct ValueRow {
    id: String,
    job: u32,
    value: f64,
}

impl Kind for Toy {
    const NAME: &'static str = "toy";
    type Flags = ToyFlags;
    type Commands = ToyCommands;
    /// (job number, scale): the scale is part of the job, so it is part of the id.
    type Job = (u32, f64);
    type Record = f64;

    fn parse(info: &ExperimentInfo, body: toml::Table, flags: &ToyFlags) -> Result<Self, LabError> {
        let file: ToyFile = from_table(body, &info.path, "top level")?;
        Ok(Toy {
            name: info.name.clone(),
            profiles: file
                .profiles
                .into_iter()
                .map(|(k, p)| (k, p.jobs))
                .collect(),
            scale: flags.toy_scale.unwrap_or(1.0),
        })
    }
    fn profiles(&self) -> Vec<String> {
        crate::kind::profile_order(self.profiles.keys().cloned())
    }
    fn jobs(&self, profile: &str) -> Result<Vec<(u32, f64)>, LabError> {
        let n = crate::kind::named_profile(&self.name, &self.profiles, profile)?;
        Ok((0..*n).map(|i| (i, self.scale)).collect())
    }
    fn label(&self, job: &(u32, f64)) -> String {
        format!("job {}", job.0)
    }
    fn run_job(&self, job: &(u32, f64), _: &JobContext<'_>) -> anyhow::Result<f64> {
        Ok(f64::from(job.0) * job.1)
    }
    fn metrics(&self, _: &str, done: &Records<'_, Self>, dirs: &Dirs) -> Written {
        let rows: Vec<ValueRow> = done
            .iter()
            .map(|d| ValueRow {
                id: d.id.to_string(),
                job: d.job.0,
                value: d.record,
            })
            .collect();
        Ok(vec![crate::store::write_table(dirs, "values.csv", &rows)?])
    }
    fn report(&self, _: &str, dirs: &Dirs) -> anyhow::Result<Report> {
        let rows = std::fs::read_to_string(dirs.file("values.csv"))?
            .lines()
            .count()
            - 1;
        Ok(Report {
            figures: Vec::new(),
            summary: format!("{rows} values.\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Toy;
    use crate::cli::{command_in, execute_in, normalise_in};
    use crate::kinds::{entry, KINDS};

    #[test]
    fn a_toy_kind_plugs_in_through_its_entry_alone() {
        // The registry line: the project's kinds and this one.
        let registry: Vec<_> = KINDS.iter().copied().chain([entry::<Toy>()]).collect();
        let dir = tempfile::tempdir().unwrap();
        let (exp, res) = (dir.path().join("experiments"), dir.path().join("results"));
        std::fs::create_dir_all(&exp).unwrap();
        std::fs::write(
            exp.join("toy.toml"),
            "name = \"toy\"\nkind = \"toy\"\n[profiles.quick]\njobs = 3\n",
        )
        .unwrap();
        let run = |args: &[&str]| {
            let mut all = vec!["hora", "--experiments", exp.to_str().unwrap()];
            all.extend(["--results", res.to_str().unwrap()]);
            all.extend(args);
            let cmd = command_in(&registry);
            let all = normalise_in(&cmd, all.into_iter().map(String::from).collect());
            execute_in(&registry, cmd.try_get_matches_from(all).unwrap())
        };
        // `hora toy --toy-scale 2` is `hora run-all toy` with the kind's flag.
        assert!(run(&["toy", "--toy-scale", "2"]).unwrap());
        let values = std::fs::read_to_string(res.join("toy/quick/values.csv")).unwrap();
        let col: Vec<&str> = values
            .lines()
            .skip(1)
            .map(|l| l.rsplit(',').next().unwrap())
            .collect();
        assert_eq!(col, ["0.0", "2.0", "4.0"], "{values}");
        let summary = std::fs::read_to_string(res.join("toy/quick/summary.md")).unwrap();
        assert!(summary.contains("3 values."), "{summary}");
        // The kind's subcommand, with its flag after it.
        assert!(run(&["toy-hello", "world", "--toy-scale", "3"]).unwrap());
        let hello = std::fs::read_to_string(res.join("toy-hello.txt")).unwrap();
        assert_eq!(hello, "hello world x3");
        // The kind's flags, to repeat in a suggested command or a Slurm script.
        let load = |name: &str| {
            let cmd = command_in(&registry);
            let m = cmd
                .try_get_matches_from(["hora", "--toy-scale", "5", "list"])
                .unwrap();
            crate::kinds::load_in(&registry, &exp, name, &m).map(|e| e.forward())
        };
        assert_eq!(
            load("toy").unwrap(),
            [crate::kind::Forward::Value("--toy-scale", "5".into())]
        );
        // `--help` lists both; the project's own command knows neither.
        let help = command_in(&registry).render_long_help().to_string();
        assert!(
            help.contains("toy-hello") && help.contains("--toy-scale"),
            "{help}"
        );
        let plain = crate::cli::command().render_long_help().to_string();
        assert!(!plain.contains("toy-hello") && !plain.contains("--toy-scale"));
        // No kind's flags or subcommands replace `hora`'s own about text.
        for help in [&help, &plain] {
            assert!(help.starts_with("Plan, run, measure and plot"), "{help}");
        }
        // An unknown flag of no kind is still an error.
        let cmd = command_in(&registry);
        assert!(cmd
            .try_get_matches_from(["hora", "--toy-scales", "2", "list"])
            .is_err());
    }
}
