//! Plans: the jobs of a profile with their content-hashed ids, the manifest file, and shards.
use crate::error::LabError;
use crate::experiment::ExperimentInfo;
use crate::kind::Kind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The id of a job: [`fsio::key::content_id`] of its stored form (the first 16 hex digits of
/// the SHA-256 of its canonical JSON).
///
/// A job type's stored form is its job key, versioned: a field added later is omitted while it
/// holds the default that reproduces the old behaviour, so no committed id moves (see
/// `hmoe::JobV1` and DESIGN.md, "Job identity").
pub fn job_id<J: Serialize>(job: &J) -> anyhow::Result<String> {
    Ok(fsio::key::content_id(&serde_json::to_value(job)?))
}

pub struct Planned<J> {
    pub id: String,
    pub label: String,
    pub job: J,
}

pub struct Plan<J> {
    pub experiment: String,
    pub kind: String,
    pub profile: String,
    pub experiment_sha256: String,
    pub jobs: Vec<Planned<J>>,
}

#[derive(Serialize, Deserialize)]
pub struct ManifestEntry {
    pub id: String,
    pub label: String,
    pub job: Value,
}

#[derive(Serialize, Deserialize)]
pub struct Manifest {
    pub experiment: String,
    pub kind: String,
    pub profile: String,
    pub experiment_sha256: String,
    pub jobs: Vec<ManifestEntry>,
}

/// Expand a profile into its jobs and hash them; two identical jobs are a configuration error.
pub fn build<K: Kind>(
    info: &ExperimentInfo,
    kind: &K,
    profile: &str,
) -> Result<Plan<K::Job>, LabError> {
    let jobs = kind.jobs(profile)?;
    let memory = crate::provenance::host_memory()?;
    let mut seen = std::collections::HashMap::new();
    let mut planned = Vec::with_capacity(jobs.len());
    for job in jobs {
        let label = kind.label(&job);
        let id = job_id(&job)
            .map_err(|e| LabError::Usage(format!("cannot serialise job {label}: {e}")))?;
        if let Some(first) = seen.insert(id.clone(), label.clone()) {
            return Err(crate::experiment::config_error(
                &info.path,
                format!("profile `{profile}` lists the same job twice ({first}); remove the duplicate grid value"),
            ));
        }
        if let (Some(need), Some(have)) = (kind.memory_bytes(&job), memory) {
            if need > have {
                return Err(crate::experiment::config_error(
                    &info.path,
                    format!(
                        "profile `{profile}`: job {label} needs about {} of memory, more than this \
                         machine's {} (set HORA_MEMORY_LIMIT, in bytes or as 16G, to change the limit); \
                         use a smaller grid value",
                        crate::provenance::gib(need),
                        crate::provenance::gib(have)
                    ),
                ));
            }
        }
        planned.push(Planned { id, label, job });
    }
    Ok(Plan {
        experiment: info.name.clone(),
        kind: info.kind.clone(),
        profile: profile.to_string(),
        experiment_sha256: info.sha256.clone(),
        jobs: planned,
    })
}

impl<J: Serialize> Plan<J> {
    pub fn manifest(&self) -> anyhow::Result<Manifest> {
        let jobs = self
            .jobs
            .iter()
            .map(|p| {
                Ok(ManifestEntry {
                    id: p.id.clone(),
                    label: p.label.clone(),
                    job: serde_json::to_value(&p.job)?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Manifest {
            experiment: self.experiment.clone(),
            kind: self.kind.clone(),
            profile: self.profile.clone(),
            experiment_sha256: self.experiment_sha256.clone(),
            jobs,
        })
    }
}

/// Shard `index` of `count` takes the jobs at positions `index, index + count, ...` of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parse `i/N` with `0 <= i < N`.
    pub fn parse(s: &str) -> Result<Shard, LabError> {
        let bad = || {
            LabError::Usage(format!(
                "bad shard `{s}`: expected i/N with 0 <= i < N (e.g. 0/4)"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// From a Slurm job array: `SLURM_ARRAY_TASK_ID` (made zero-based with `SLURM_ARRAY_TASK_MIN`)
    /// of `SLURM_ARRAY_TASK_COUNT`.
    pub fn from_env() -> Result<Option<Shard>, LabError> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let (Some(id), Some(count)) = (get("SLURM_ARRAY_TASK_ID"), get("SLURM_ARRAY_TASK_COUNT"))
        else {
            return Ok(None);
        };
        let num = |k: &str, v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| LabError::Usage(format!("{k}={v} is not a number")))
        };
        let min = match get("SLURM_ARRAY_TASK_MIN") {
            Some(m) => num("SLURM_ARRAY_TASK_MIN", &m)?,
            None => 0,
        };
        let id = num("SLURM_ARRAY_TASK_ID", &id)?;
        let index = id.checked_sub(min).ok_or_else(|| {
            LabError::Usage(format!(
                "SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"
            ))
        })?;
        Shard::parse(&format!(
            "{index}/{}",
            num("SLURM_ARRAY_TASK_COUNT", &count)?
        ))
        .map(Some)
    }

    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_plan() {
        assert!(
            Shard::parse("3/3").is_err()
                && Shard::parse("1/0").is_err()
                && Shard::parse("x").is_err()
        );
        let shards: Vec<Shard> = (0..3)
            .map(|i| Shard::parse(&format!("{i}/3")).unwrap())
            .collect();
        for p in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.takes(p)).count(), 1);
        }
    }
}
