//! The `identifiability` kind (THEORY.md §5a, issue 10): for each model family and setting
//! (exact or over-specified), `R(ε) = min ‖f_θ − f*‖ / D(θ, θ*)` over `D ≈ ε`, on a fixed sample
//! of inputs common to every family, searched from many structured starts
//! ([`hmoe::probe::search`]). One job per (family, setting, ε); a record holds every start's
//! trajectory, so the table and the figure are recomputed from the records alone.
use crate::error::LabError;
use crate::experiment::{config_error, from_table, merge_tables, ExperimentInfo};
use crate::kind::{JobContext, Kind, NoCommands, NoFlags, Records, Report, Written};
use crate::layout::Dirs;
use crate::store;

mod metrics;
pub mod phase;
mod report;

use hmoe::controls::{ControlProbe, Expert};
use hmoe::probe::{ratio_at, search, HmoeProbe, Probe, Search, SearchConfig, StartKind};
use hmoe::record::derive_seed;
use hmoe::{Checked, Method, ModelConfig, ParamGuard, TruthPrior};
pub use metrics::RatioRow;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Which sample of inputs a probe evaluates on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sample {
    /// The sample the search fits (`inputs`).
    Search,
    /// The independent held-out sample (`heldout`).
    HeldOut,
}

/// What a family is: an HMoE parametrisation fitted to a truth of another (or the same)
/// family, or a control (THEORY.md §4a: the classic softmax-gated MoE, `experts` true experts
/// in `R^d`, fitted with as many or one more).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum FamilySpec {
    Hmoe {
        model: Checked<ModelConfig>,
        truth: Method,
        method: Method,
    },
    Control {
        expert: Expert,
        d: usize,
        experts: usize,
        fitted: usize,
    },
}

/// The search settings of a family's jobs: the file's `[probe]` with the family's `probe = {...}`
/// over it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSettings {
    /// Inputs of the fixed sample `μ` (common to every family of the file).
    pub inputs: usize,
    /// The Voronoi loss's exponent for cells of several atoms (THEORY.md §4).
    pub rho: f64,
    /// `λ` of the penalty holding `D` at `ε`.
    pub hold: f64,
    pub round_iters: u64,
    pub max_rounds: usize,
    pub rel_tol: f64,
    pub window: usize,
    pub smooth: f64,
    /// Starts of each kind.
    pub starts: BTreeMap<StartKind, usize>,
    /// Inputs of a second, independent sample on which every start's final point is evaluated
    /// again (held-out `R`; issue 26). 0: none. Added after the first records: left out of the
    /// job while 0, so no id moves.
    #[serde(skip_serializing_if = "is_zero")]
    pub heldout: usize,
    /// Rounds of each start's trajectory kept in the record: evenly spaced, the first and the
    /// last always (0: every round). A long search's full trajectories make a record of about
    /// 300 kB; the table needs only the last round.
    #[serde(skip_serializing_if = "is_zero")]
    pub keep_rounds: usize,
    /// What the search drives to zero with `D` held at `ε`: the misfit on the `inputs` sample
    /// (`inputs`, every record before issue 26's exact search; left out of the job), or the
    /// algebraic conditions for `f = f*` on every input (`algebraic`: `hmoe::exact`, HMoE
    /// families only; the held-out sample then says whether a point it finds is a member).
    #[serde(skip_serializing_if = "Conditions::is_inputs")]
    pub conditions: Conditions,
}

/// See [`ProbeSettings::conditions`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conditions {
    #[default]
    Inputs,
    Algebraic,
}

impl Conditions {
    fn is_inputs(&self) -> bool {
        *self == Conditions::Inputs
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            inputs: 512,
            rho: 2.0,
            hold: 50.0,
            round_iters: 10,
            max_rounds: 100,
            rel_tol: 0.01,
            window: 5,
            smooth: 0.03,
            starts: StartKind::ALL.iter().map(|k| (*k, 2)).collect(),
            heldout: 0,
            keep_rounds: 0,
            conditions: Conditions::Inputs,
        }
    }
}

/// One unit of work: the search at one `ε` for one family and setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeJob {
    pub experiment: String,
    /// The family's name in the file (its label in tables and figures).
    pub family: String,
    pub spec: FamilySpec,
    /// `exact` (one fitted atom per true atom) or `overspecified` (one more per cell).
    pub setting: String,
    /// The box `[-b, b]`; `None`: no box.
    pub bound: Option<f64>,
    pub epsilon: f64,
    pub probe: Checked<ProbeSettings>,
    /// The size's name when the file crosses its families with `[[sizes]]` (empty otherwise:
    /// left out of the job, so no id of a file without sizes moves).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub size: String,
    /// Which of the file's `truths` draws of the truth (0: the draw every file had before
    /// `truths` existed; left out of the job while 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub truth: usize,
    /// The experiment whose truths and inputs this job draws (`draws` in the file; empty, and
    /// left out of the job: its own), so that a second search of the same cells sees the same
    /// truths and held-out inputs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub draws: String,
}

/// The raw result of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeRecord {
    /// Free parameters of the family.
    pub dim: usize,
    pub search: Search,
    pub seconds: f64,
    /// Every start's final point evaluated on the held-out sample, in `search.results` order
    /// (when the job's `heldout` is not 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heldout: Option<HeldOut>,
}

/// The held-out evaluation of a search: its own sample of `inputs` inputs, drawn from a seed
/// of the experiment alone (common to every family and size).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldOut {
    pub inputs: usize,
    /// `‖f_θ − f*‖ / D` of each start on the held-out sample.
    pub ratios: Vec<f64>,
    /// `‖f_θ − f*‖` of each start on the held-out sample.
    pub misfits: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyFile {
    name: String,
    /// An HMoE family: the fitted method and the truth's family ...
    method: Option<Method>,
    truth: Option<Method>,
    /// ... or a control: its experts (`linear` or `tanh`), with `experts` true ones.
    control: Option<Expert>,
    #[serde(default = "two")]
    experts: usize,
    /// Overrides of `[probe]` for this family's jobs (a longer search: `max_rounds`).
    #[serde(default)]
    probe: toml::Table,
    #[serde(default)]
    model: toml::Table,
    /// `false`: no box (to show why the box matters).
    #[serde(default = "yes")]
    boxed: bool,
    /// Settings to run, of `exact` and `overspecified`.
    #[serde(default = "both")]
    settings: Vec<String>,
}

fn two() -> usize {
    2
}

fn yes() -> bool {
    true
}

fn both() -> Vec<String> {
    vec!["exact".into(), "overspecified".into()]
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub epsilons: Vec<f64>,
    /// Truth draws of this profile (the file's `truths` by default): a cheaper profile of a
    /// phase file (its cost per size) draws one.
    #[serde(default)]
    pub truths: Option<usize>,
    /// Overrides of every family's `[probe]` in this profile's jobs.
    #[serde(default)]
    pub probe: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    model: toml::Table,
    #[serde(default)]
    probe: toml::Table,
    /// The box of every boxed family.
    #[serde(default = "four")]
    bound: f64,
    families: Vec<FamilyFile>,
    profiles: BTreeMap<String, Profile>,
    /// Independent draws of each truth family's truth: every family and size is searched
    /// against each.
    #[serde(default = "one")]
    truths: usize,
    /// Sizes to cross every family with: each a `name` and `[model]` keys over the file's.
    #[serde(default)]
    sizes: Vec<toml::Table>,
    /// Draw the truths and inputs of this experiment instead (issue 26: the exact search of
    /// the phase file's cells).
    #[serde(default)]
    draws: String,
}

fn one() -> usize {
    1
}

fn four() -> f64 {
    4.0
}

/// A family's search settings, checked (the caller names where they come from).
impl ParamGuard for ProbeSettings {
    type Error = String;

    fn validate(&self) -> Result<(), String> {
        let p = self;
        let checks = [
            (
                "inputs",
                p.inputs as f64,
                (16..=1_000_000).contains(&p.inputs),
            ),
            ("rho", p.rho, p.rho >= 1.0 && p.rho <= 4.0),
            ("hold", p.hold, p.hold > 0.0 && p.hold.is_finite()),
            ("round_iters", p.round_iters as f64, p.round_iters >= 1),
            ("max_rounds", p.max_rounds as f64, p.max_rounds >= 1),
            ("rel_tol", p.rel_tol, p.rel_tol > 0.0 && p.rel_tol < 1.0),
            ("window", p.window as f64, p.window >= 1),
            ("smooth", p.smooth, p.smooth >= 0.0 && p.smooth < 1.0),
        ];
        for (key, v, ok) in checks {
            if !ok || !v.is_finite() {
                return Err(format!("invalid value for `{key}`: {v}"));
            }
        }
        if p.starts.values().all(|c| *c == 0) {
            return Err("`starts` has no start".into());
        }
        if p.keep_rounds == 1 {
            return Err(
                "invalid value for `keep_rounds`: 1 (0 for every round, or at least 2: \
                        the first and the last)"
                    .into(),
            );
        }
        if p.heldout != 0 && !(1000..=1_000_000).contains(&p.heldout) {
            return Err(format!(
                "invalid value for `heldout`: {} (0 for none, or 1000..=1000000)",
                p.heldout
            ));
        }
        Ok(())
    }
}

/// A family as parsed: its name, settings and what each setting's job holds.
struct Family {
    name: String,
    /// (size, setting, spec): one size named "" when the file has no `[[sizes]]`.
    settings: Vec<(String, String, FamilySpec)>,
    bound: Option<f64>,
    probe: Checked<ProbeSettings>,
    /// The search settings of each profile that overrides `[probe]`.
    profile_probe: BTreeMap<String, Checked<ProbeSettings>>,
}

pub struct IdentifiabilityKind {
    name: String,
    families: Vec<Family>,
    profiles: BTreeMap<String, Profile>,
    truths: usize,
    /// The sizes' names in the file's order (one, "", without `[[sizes]]`).
    sizes: Vec<String>,
    /// `draws`: the experiment whose truths and inputs the jobs draw (empty: this one).
    draws: String,
}

/// Fitted atoms per true atom of each setting.
const SETTINGS: [(&str, i64); 3] = [
    ("exact", 1),
    ("overspecified", 2),
    ("overspecified-by-2", 3),
];

impl IdentifiabilityKind {
    fn parse_file(info: &ExperimentInfo, body: toml::Table) -> Result<Self, LabError> {
        let path = &info.path;
        let err = |m: String| config_error(path, m);
        let file: File = from_table(body, path, "top level")?;
        if !(file.bound > 0.0 && file.bound.is_finite()) {
            return Err(err(format!("invalid value for `bound`: {}", file.bound)));
        }
        if file.families.is_empty() {
            return Err(err("no `[[families]]`: at least one is needed".into()));
        }
        if !(1..=100).contains(&file.truths) {
            return Err(err(format!(
                "invalid value for `truths`: {} (1..=100)",
                file.truths
            )));
        }
        let sizes = sizes_of(&file.sizes, path)?;
        let mut names = BTreeSet::new();
        let mut families = Vec::new();
        for f in &file.families {
            if f.name.is_empty() || !names.insert(f.name.clone()) {
                return Err(err(format!(
                    "family `{}`: names must be non-empty and unique",
                    f.name
                )));
            }
            families.push(family_of(f, &file, &sizes, path)?);
        }
        check_profiles(&file.profiles, file.truths, path)?;
        let kind = IdentifiabilityKind {
            name: info.name.clone(),
            families,
            profiles: file.profiles,
            truths: file.truths,
            sizes: sizes.into_iter().map(|(n, _, _)| n).collect(),
            draws: file.draws,
        };
        // Every family must contain its truth: build each once (cheap) to say so now.
        for f in &kind.families {
            for (size, setting, spec) in &f.settings {
                kind.probe_of(spec, f.bound, 16, &f.probe, 0, Sample::Search, "")
                    .map_err(|e| err(format!("family `{}`, {size} {setting}: {e}", f.name)))?;
            }
        }
        Ok(kind)
    }

    /// A phase file (issue 26): sizes, several truths or a held-out sample. Its tables are
    /// [`phase`]'s; a file without any of them keeps `ratios.csv` as it always was.
    fn is_phase(&self) -> bool {
        self.sizes.iter().any(|s| !s.is_empty())
            || self.truths > 1
            || self.families.iter().any(|f| f.probe.heldout > 0)
    }

    /// Whether the searches run on the algebraic conditions (the exact search).
    fn is_exact(&self) -> bool {
        self.families
            .iter()
            .any(|f| f.probe.conditions == Conditions::Algebraic)
    }

    /// The seeds of a truth draw and of a sample of inputs: the experiment's alone, so every
    /// family and size of a file sees the same inputs, and families with the same truth family
    /// the same truths. Draw 0 and the search sample are what every file had before `truths`
    /// and `heldout` existed.
    ///
    /// `draws` names another experiment whose seeds to take (a job's `draws`).
    fn seeds(&self, truth: usize, sample: Sample, draws: &str) -> (u64, u64) {
        let name = if draws.is_empty() { &self.name } else { draws };
        let truth_seed = if truth == 0 {
            derive_seed("probe-truth", &[name])
        } else {
            derive_seed("probe-truth", &[name, &truth.to_string()])
        };
        let input_seed = match sample {
            Sample::Search => derive_seed("probe-inputs", &[name]),
            Sample::HeldOut => derive_seed("probe-heldout-inputs", &[name]),
        };
        (truth_seed, input_seed)
    }

    /// The probe a job searches (`Sample::Search`, on the algebraic conditions when its
    /// settings say so) or evaluates its points on (`Sample::HeldOut`, always on inputs).
    #[allow(clippy::too_many_arguments)]
    fn probe_of(
        &self,
        spec: &FamilySpec,
        bound: Option<f64>,
        inputs: usize,
        settings: &ProbeSettings,
        truth: usize,
        sample: Sample,
        draws: &str,
    ) -> anyhow::Result<Box<dyn Probe>> {
        let (truth_seed, input_seed) = self.seeds(truth, sample, draws);
        let bound = bound.unwrap_or(f64::INFINITY);
        let rho = settings.rho;
        let algebraic = settings.conditions == Conditions::Algebraic && sample == Sample::Search;
        match spec {
            FamilySpec::Hmoe {
                model,
                truth,
                method,
            } => {
                let sampled = HmoeProbe::new(
                    model,
                    &TruthPrior::default(),
                    *truth,
                    *method,
                    truth_seed,
                    inputs,
                    input_seed,
                    bound,
                    rho,
                )
                .ok_or_else(|| anyhow::anyhow!("{method} does not contain a {truth} truth"))?;
                Ok(if algebraic {
                    Box::new(hmoe::exact::AlgebraicProbe::new(sampled))
                } else {
                    Box::new(sampled)
                })
            }
            FamilySpec::Control { .. } if algebraic => Err(anyhow::anyhow!(
                "conditions = \"algebraic\" exists for the HMoE families only"
            )),
            FamilySpec::Control {
                expert,
                d,
                experts,
                fitted,
            } => Ok(Box::new(ControlProbe::new(
                *expert, *experts, *fitted, *d, truth_seed, inputs, input_seed, bound,
            ))),
        }
    }
}

/// A size of a phase file: its name, its `[model]` keys and the settings it replaces every
/// family's with (none: the family's own).
type Size = (String, toml::Table, Option<Vec<String>>);

/// The file's `[[sizes]]`, checked (one size named "" without any).
fn sizes_of(tables: &[toml::Table], path: &std::path::Path) -> Result<Vec<Size>, LabError> {
    let err = |m: String| config_error(path, m);
    let mut sizes: Vec<Size> = Vec::new();
    for (k, table) in tables.iter().enumerate() {
        let mut table = table.clone();
        let name = match table.remove("name") {
            Some(toml::Value::String(n)) if !n.is_empty() => n,
            _ => {
                return Err(err(format!(
                    "[[sizes]] entry {}: needs a non-empty `name`",
                    k + 1
                )))
            }
        };
        let list_error = || {
            err(format!(
                "[[sizes]] `{name}`: `settings` must be a non-empty list of names"
            ))
        };
        let settings = match table.remove("settings") {
            None => None,
            Some(toml::Value::Array(a)) => Some(
                a.iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<String>>>()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(list_error)?,
            ),
            Some(_) => return Err(list_error()),
        };
        if sizes.iter().any(|(n, _, _)| *n == name) {
            return Err(err(format!("[[sizes]]: `{name}` is named twice")));
        }
        if table.contains_key("atoms") {
            return Err(err(format!(
                "[[sizes]] `{name}`: `atoms` is set by the setting (exact, overspecified, \
                 overspecified-by-2), not by a size"
            )));
        }
        sizes.push((name, table, settings));
    }
    if sizes.is_empty() {
        sizes.push((String::new(), toml::Table::new(), None));
    }
    Ok(sizes)
}

/// One family of the file: its search settings (the file's `[probe]` under its own and each
/// profile's), and a job spec for every size and setting, each checked.
fn family_of(
    f: &FamilyFile,
    file: &File,
    sizes: &[Size],
    path: &std::path::Path,
) -> Result<Family, LabError> {
    let err = |m: String| config_error(path, m);
    let at = format!("family `{}`", f.name);
    if f.settings.is_empty() {
        return Err(err(format!("{at}: `settings` is empty")));
    }
    let probe = from_table::<ProbeSettings>(
        merge_tables(&file.probe, &f.probe),
        path,
        &format!("{at}, [probe]"),
    )?
    .check()
    .map_err(|e| err(format!("{at}, [probe]: {e}")))?;
    let mut profile_probe = BTreeMap::new();
    for (name, pr) in &file.profiles {
        if pr.probe.is_empty() {
            continue;
        }
        let what = format!("{at}, [profiles.{name}] probe");
        let table = merge_tables(&merge_tables(&file.probe, &f.probe), &pr.probe);
        let p = from_table::<ProbeSettings>(table, path, &what)?
            .check()
            .map_err(|e| err(format!("{what}: {e}")))?;
        profile_probe.insert(name.clone(), p);
    }
    let mut settings = Vec::new();
    for (size, size_model, size_settings) in sizes {
        for s in size_settings.as_ref().unwrap_or(&f.settings) {
            let Some(&(_, atoms)) = SETTINGS.iter().find(|(name, _)| name == s) else {
                return Err(err(format!(
                    "{at}: unknown setting `{s}` (allowed: exact, overspecified, \
                     overspecified-by-2)"
                )));
            };
            let at = if size.is_empty() {
                at.clone()
            } else {
                format!("{at}, size `{size}`")
            };
            let mut table = merge_tables(&merge_tables(&file.model, &f.model), size_model);
            table.insert("atoms".into(), toml::Value::Integer(atoms));
            let model = from_table::<ModelConfig>(table, path, &format!("{at}, model"))?
                .check()
                .map_err(|e| err(format!("{at}, model: {e}")))?;
            let spec = spec_of(f, model, atoms as usize, &at).map_err(err)?;
            settings.push((size.clone(), s.clone(), spec));
        }
    }
    Ok(Family {
        name: f.name.clone(),
        settings,
        bound: f.boxed.then_some(file.bound),
        probe,
        profile_probe,
    })
}

/// What a family's job searches at one size: an HMoE family or a control.
fn spec_of(
    f: &FamilyFile,
    model: Checked<ModelConfig>,
    atoms: usize,
    at: &str,
) -> Result<FamilySpec, String> {
    match (f.method, f.truth, f.control) {
        (Some(method), Some(truth), None) => Ok(FamilySpec::Hmoe {
            model,
            truth,
            method,
        }),
        (None, None, Some(expert)) if (1..=16).contains(&f.experts) => Ok(FamilySpec::Control {
            expert,
            d: model.d,
            experts: f.experts,
            fitted: f.experts + atoms - 1,
        }),
        (None, None, Some(_)) => Err(format!("{at}: `experts` must be in 1..=16")),
        _ => Err(format!(
            "{at}: give either `method` and `truth` (an HMoE family) or `control` (linear or \
             tanh), not both"
        )),
    }
}

/// The profiles: at least one, each with its `ε` and its truths in range.
fn check_profiles(
    profiles: &BTreeMap<String, Profile>,
    truths: usize,
    path: &std::path::Path,
) -> Result<(), LabError> {
    let err = |m: String| config_error(path, m);
    if profiles.is_empty() {
        return Err(err("no `[profiles.<name>]`: at least one is needed".into()));
    }
    for (name, pr) in profiles {
        if let Some(t) = pr.truths {
            if !(1..=truths).contains(&t) {
                return Err(err(format!(
                    "[profiles.{name}]: `truths` must be in 1..={truths} (the file's `truths`)"
                )));
            }
        }
        if pr.epsilons.is_empty()
            || pr
                .epsilons
                .iter()
                .any(|e| !(e.is_finite() && *e > 0.0 && *e < 10.0))
        {
            return Err(err(format!(
                "[profiles.{name}]: `epsilons` must be non-empty values in (0, 10)"
            )));
        }
    }
    Ok(())
}

impl Kind for IdentifiabilityKind {
    const NAME: &'static str = "identifiability";
    type Flags = NoFlags;
    type Commands = NoCommands;
    type Job = ProbeJob;
    type Record = ProbeRecord;

    fn parse(info: &ExperimentInfo, body: toml::Table, _: &NoFlags) -> Result<Self, LabError> {
        Self::parse_file(info, body)
    }

    fn profiles(&self) -> Vec<String> {
        crate::kind::profile_order(self.profiles.keys().cloned())
    }

    fn jobs(&self, profile: &str) -> Result<Vec<ProbeJob>, LabError> {
        let p = crate::kind::named_profile(&self.name, &self.profiles, profile)?;
        let mut jobs = Vec::new();
        for truth in 0..p.truths.unwrap_or(self.truths) {
            for f in &self.families {
                for (size, setting, spec) in &f.settings {
                    for &epsilon in &p.epsilons {
                        jobs.push(ProbeJob {
                            experiment: self.name.clone(),
                            family: f.name.clone(),
                            spec: spec.clone(),
                            setting: setting.clone(),
                            bound: f.bound,
                            epsilon,
                            probe: f.profile_probe.get(profile).unwrap_or(&f.probe).clone(),
                            size: size.clone(),
                            truth,
                            draws: self.draws.clone(),
                        });
                    }
                }
            }
        }
        Ok(jobs)
    }

    /// Size by size in the file's order, and within a size truth by truth: a profile that
    /// lands over several sessions completes whole sizes first.
    fn run_rank(&self, job: &ProbeJob) -> f64 {
        let size = self.sizes.iter().position(|s| *s == job.size).unwrap_or(0);
        (size * 1000 + job.truth) as f64
    }

    fn label(&self, job: &ProbeJob) -> String {
        let mut l = format!("{} {} ε={}", job.family, job.setting, job.epsilon);
        if !job.size.is_empty() {
            l = format!("{} {l}", job.size);
        }
        if self.truths > 1 {
            l += &format!(" truth {}", job.truth);
        }
        l
    }

    fn run_job(&self, job: &ProbeJob, _ctx: &JobContext<'_>) -> anyhow::Result<ProbeRecord> {
        let t = std::time::Instant::now();
        let probe = self.probe_of(
            &job.spec,
            job.bound,
            job.probe.inputs,
            &job.probe,
            job.truth,
            Sample::Search,
            &job.draws,
        )?;
        let p = &job.probe;
        let cfg = SearchConfig {
            epsilon: job.epsilon,
            starts: p.starts.iter().map(|(k, c)| (*k, *c)).collect(),
            hold: p.hold,
            round_iters: p.round_iters,
            max_rounds: p.max_rounds,
            rel_tol: p.rel_tol,
            window: p.window,
            smooth: p.smooth,
            seed: {
                let eps = job.epsilon.to_string();
                let truth = job.truth.to_string();
                let mut parts = vec![
                    job.experiment.as_str(),
                    &job.family,
                    &job.setting,
                    eps.as_str(),
                ];
                if !job.size.is_empty() {
                    parts.push(&job.size);
                }
                if job.truth != 0 {
                    parts.push(&truth);
                }
                derive_seed("probe-search", &parts)
            },
        };
        let mut search = search(probe.as_ref(), &cfg);
        let heldout = (p.heldout > 0)
            .then(|| -> anyhow::Result<HeldOut> {
                let fresh = self.probe_of(
                    &job.spec,
                    job.bound,
                    p.heldout,
                    p,
                    job.truth,
                    Sample::HeldOut,
                    &job.draws,
                )?;
                let (ratios, misfits) = search
                    .results
                    .iter()
                    .map(|r| {
                        let (ratio, _, misfit) = ratio_at(fresh.as_ref(), &r.theta);
                        (ratio, misfit)
                    })
                    .unzip();
                Ok(HeldOut {
                    inputs: p.heldout,
                    ratios,
                    misfits,
                })
            })
            .transpose()?;
        if p.keep_rounds > 0 {
            for r in &mut search.results {
                r.rounds = thin(std::mem::take(&mut r.rounds), p.keep_rounds);
            }
        }
        Ok(ProbeRecord {
            dim: probe.dim(),
            search,
            seconds: t.elapsed().as_secs_f64(),
            heldout,
        })
    }

    fn metrics(&self, profile: &str, done: &Records<'_, Self>, dirs: &Dirs) -> Written {
        if self.is_phase() {
            let p = crate::kind::named_profile(&self.name, &self.profiles, profile)?;
            let rows = phase::ratio_rows(done);
            let cells = phase::cells(&rows, p.epsilons.len());
            return Ok(vec![
                store::write_table(dirs, "phase-ratios.csv", &rows)?,
                store::write_table(dirs, "phase.csv", &cells)?,
            ]);
        }
        let rows: Vec<RatioRow> = done
            .iter()
            .map(|d| RatioRow::of(d.job, &d.record))
            .collect();
        Ok(vec![store::write_table(dirs, "ratios.csv", &rows)?])
    }

    fn report(&self, _profile: &str, dirs: &Dirs) -> anyhow::Result<Report> {
        if self.is_phase() {
            let cells: Vec<phase::PhaseRow> = store::read_csv(&dirs.file("phase.csv"))?;
            let families: Vec<&str> = self.families.iter().map(|f| f.name.as_str()).collect();
            let figures = phase::figure(&cells, &self.sizes, &families, &dirs.file("phase"))?;
            return Ok(Report {
                summary: phase::summary(&cells, &self.sizes, &families, self.is_exact())
                    + &phase::cost_table(
                        &store::read_csv::<phase::PhaseRatioRow>(&dirs.file("phase-ratios.csv"))?,
                        &self.sizes,
                    ),
                figures,
            });
        }
        report::write(
            &self
                .families
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
            dirs,
        )
    }
}

/// `keep` of `items`, evenly spaced, the first and the last always (all of them when there
/// are no more than `keep`).
fn thin<T>(items: Vec<T>, keep: usize) -> Vec<T> {
    let n = items.len();
    if keep == 0 || n <= keep {
        return items;
    }
    let keep = keep.max(2);
    let wanted: BTreeSet<usize> = (0..keep)
        .map(|i| ((i as f64) * (n - 1) as f64 / (keep - 1) as f64).round() as usize)
        .collect();
    items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| wanted.contains(i))
        .map(|(_, x)| x)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::thin;

    #[test]
    fn thinning_keeps_the_first_and_the_last_evenly_spaced() {
        let v: Vec<usize> = (0..401).collect();
        let t = thin(v.clone(), 5);
        assert_eq!(t, vec![0, 100, 200, 300, 400]);
        assert_eq!(thin(v.clone(), 0), v);
        assert_eq!(thin((0..3).collect::<Vec<_>>(), 25), vec![0, 1, 2]);
        let t = thin((0..100).collect::<Vec<usize>>(), 25);
        assert_eq!((t.len(), t[0], t[24]), (25, 0, 99));
    }
}
