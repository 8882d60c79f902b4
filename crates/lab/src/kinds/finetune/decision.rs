//! The decision rule of a finetune experiment (issue 25): `[decision]` in its file names the
//! profile it judges, the primary comparison (method − reference, paired by seed, at every
//! budget), the score, the family-wise level and the margin of "no difference that matters";
//! `decision.csv` and the summary's "Decision" section apply it to the profile's runs, so the
//! verdict is read mechanically from the records.
//!
//! The rule, at every budget of the profile:
//! - the paired differences of the score (method − reference, one per seed) give a mean, a
//!   95% t-interval and a two-sided paired t-test p-value;
//! - the p-values of the budgets are Holm-adjusted together (one family per comparison);
//! - the budget reads **beats** when the adjusted p is below `alpha` and the mean is above 0,
//!   **loses** when below `alpha` and the mean is below 0, else **cannot tell**; it is also
//!   **within the margin** when its 95% interval lies inside ±`margin`.
//!
//! The experiment's verdict (primary comparison only): **refuted** when the method loses at some
//! budget, or when every budget is within the margin; **supported** when it beats at one budget
//! or more and its advantage is largest when data is scarce (the scarcity contrast of the score,
//! smaller half of the budgets minus larger half per seed, has a 95% interval above 0);
//! **partly supported** when it beats somewhere but the advantage is not shown to be largest
//! when data is scarce; otherwise **cannot tell**. Secondary comparisons are read the same way
//! and reported beside the verdict, not in it.
//!
//! Across experiments (the two tasks of issue 25) each experiment's `alpha` is the overall
//! level divided by their number (Bonferroni over tasks, Holm over budgets within one): the
//! family-wise error over every budget of every task stays at most the overall level.
use super::metrics::{budgets_of, pairs_at, scarcity, t_interval, BudgetColumns, Budgeted, RunRow};
use crate::error::LabError;
use crate::experiment::config_error;
use hmoe::stats::{mean, sd};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `[decision]` as written.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DecisionRule {
    /// The profile judged.
    pub profile: String,
    /// The primary comparison: `method` − `reference`.
    pub method: String,
    pub reference: String,
    /// `accuracy` or `macro-f1` (test split).
    pub score: Score,
    /// Family-wise level of this experiment's Holm family (over its budgets).
    pub alpha: f64,
    /// A difference whose 95% interval lies inside ±margin does not matter.
    pub margin: f64,
    /// Further comparisons read the same way, each its own Holm family: `[method, reference]`.
    #[serde(default)]
    pub secondary: Vec<[String; 2]>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Score {
    Accuracy,
    MacroF1,
}

impl Score {
    fn of(self, r: &RunRow) -> f64 {
        match self {
            Score::Accuracy => r.test_accuracy,
            Score::MacroF1 => r.test_macro_f1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Score::Accuracy => "test accuracy",
            Score::MacroF1 => "test macro-F1",
        }
    }
}

impl DecisionRule {
    /// Checked against the experiment: the profile exists, every method compared is one of its
    /// methods, and the level and margin are in range.
    pub fn check(&self, path: &Path, profile_methods: Option<&[String]>) -> Result<(), LabError> {
        let methods = profile_methods.ok_or_else(|| {
            config_error(
                path,
                format!(
                    "[decision]: profile `{}` is not a profile of this file",
                    self.profile
                ),
            )
        })?;
        for m in self.comparisons().iter().flat_map(|(_, a, b)| [a, b]) {
            if !methods.iter().any(|x| x == *m) {
                return Err(config_error(
                    path,
                    format!(
                        "[decision]: `{m}` is not a method of profile `{}`",
                        self.profile
                    ),
                ));
            }
        }
        if !(self.alpha > 0.0 && self.alpha <= 0.5) {
            return Err(config_error(
                path,
                format!("[decision]: alpha {} is not in (0, 0.5]", self.alpha),
            ));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(config_error(
                path,
                format!("[decision]: margin {} is not a number >= 0", self.margin),
            ));
        }
        Ok(())
    }

    /// Every comparison, the primary first: (role, method, reference).
    fn comparisons(&self) -> Vec<(&'static str, &String, &String)> {
        std::iter::once(("primary", &self.method, &self.reference))
            .chain(self.secondary.iter().map(|[m, r]| ("secondary", m, r)))
            .collect()
    }
}

/// The decision's table: one comparison at one budget.
pub const DECISION_TABLE: &str = "decision.csv";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DecisionRow {
    /// `primary` or `secondary`.
    pub role: String,
    pub method: String,
    pub against: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<usize>,
    pub pairs: usize,
    /// Mean paired difference of the score, with its 95% t-interval.
    pub diff: f64,
    pub diff_lo: Option<f64>,
    pub diff_hi: Option<f64>,
    /// Two-sided paired t-test, and its Holm adjustment over the comparison's budgets.
    pub p: Option<f64>,
    pub p_holm: Option<f64>,
    /// `beats`, `loses` or `cannot tell`.
    pub reading: String,
    pub within_margin: bool,
}

impl Budgeted for DecisionRow {
    fn budget_columns(&self) -> BudgetColumns {
        (self.train_fraction, self.per_class)
    }
}

/// Two-sided p-value of the paired t-test of mean 0 (`None` with fewer than two pairs).
pub(crate) fn paired_t_p(d: &[f64]) -> Option<f64> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    if d.len() < 2 {
        return None;
    }
    let (m, s, n) = (mean(d), sd(d), d.len() as f64);
    if s == 0.0 {
        return Some(if m == 0.0 { 1.0 } else { 0.0 });
    }
    let t = m / (s / n.sqrt());
    let dist = StudentsT::new(0.0, 1.0, n - 1.0).ok()?;
    Some((2.0 * (1.0 - dist.cdf(t.abs()))).min(1.0))
}

/// Holm's step-down adjustment (`None` entries are left out of the family and stay `None`).
pub(crate) fn holm(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_some()).collect();
    idx.sort_by(|&a, &b| p[a].unwrap_or(1.0).total_cmp(&p[b].unwrap_or(1.0)));
    let m = idx.len();
    let mut out = vec![None; p.len()];
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i].unwrap_or(1.0)).min(1.0);
        running = running.max(adj);
        out[i] = Some(running);
    }
    out
}

/// The rule applied to a profile's runs: every comparison at every budget.
pub fn rows(rule: &DecisionRule, runs: &[RunRow]) -> Vec<DecisionRow> {
    let mut out = Vec::new();
    for (role, method, against) in rule.comparisons() {
        let mut family = Vec::new();
        for (b, (train_fraction, per_class)) in budgets_of(runs, method) {
            let d: Vec<f64> = pairs_at(runs, method, against, b)
                .iter()
                .map(|(r, o)| rule.score.of(r) - rule.score.of(o))
                .collect();
            if d.is_empty() {
                continue;
            }
            let (diff, ci) = t_interval(&d);
            family.push(DecisionRow {
                role: role.to_string(),
                method: method.clone(),
                against: against.clone(),
                train_fraction,
                per_class,
                pairs: d.len(),
                diff,
                diff_lo: ci.map(|c| c.0),
                diff_hi: ci.map(|c| c.1),
                p: paired_t_p(&d),
                p_holm: None,
                reading: String::new(),
                within_margin: ci.is_some_and(|(lo, hi)| lo > -rule.margin && hi < rule.margin),
            });
        }
        let adjusted = holm(&family.iter().map(|r| r.p).collect::<Vec<_>>());
        for (r, p) in family.iter_mut().zip(adjusted) {
            r.p_holm = p;
            r.reading = match p {
                Some(p) if p < rule.alpha && r.diff > 0.0 => "beats",
                Some(p) if p < rule.alpha && r.diff < 0.0 => "loses",
                _ => "cannot tell",
            }
            .to_string();
        }
        out.extend(family);
    }
    out
}

/// The verdict on the primary comparison, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// `supported`, `partly supported`, `refuted` or `cannot tell`.
    pub word: &'static str,
    pub why: String,
}

/// The verdict of the rule, from its rows and the scarcity contrast of the primary comparison
/// (`None`: fewer than two budgets or two seeds).
pub fn verdict(
    rule: &DecisionRule,
    rows: &[DecisionRow],
    contrast: Option<(f64, f64, f64)>,
) -> Verdict {
    let primary: Vec<&DecisionRow> = rows.iter().filter(|r| r.role == "primary").collect();
    let at = |reading: &str| -> Vec<String> {
        primary
            .iter()
            .filter(|r| r.reading == reading)
            .map(|r| r.budget().to_string())
            .collect()
    };
    let (beats, loses) = (at("beats"), at("loses"));
    let scarce = contrast.is_some_and(|(_, lo, _)| lo > 0.0);
    let contrast_text = match contrast {
        Some((m, lo, hi)) => format!("scarcity contrast {m:+.3} [{lo:+.3}, {hi:+.3}]"),
        None => "no scarcity contrast (fewer than two budgets or seeds)".to_string(),
    };
    let (m, r) = (&rule.method, &rule.reference);
    if !loses.is_empty() {
        return Verdict {
            word: "refuted",
            why: format!("{r} beats {m} at budget(s) {}", loses.join(", ")),
        };
    }
    if !primary.is_empty() && primary.iter().all(|r| r.within_margin) {
        return Verdict {
            word: "refuted",
            why: format!(
                "at every budget the 95% interval of {m} − {r} lies inside ±{}: no difference that matters",
                rule.margin
            ),
        };
    }
    if !beats.is_empty() && scarce {
        return Verdict {
            word: "supported",
            why: format!(
                "{m} beats {r} at budget(s) {}, and {contrast_text} lies above 0",
                beats.join(", ")
            ),
        };
    }
    if !beats.is_empty() {
        return Verdict {
            word: "partly supported",
            why: format!(
                "{m} beats {r} at budget(s) {}, but not most when data is scarce ({contrast_text})",
                beats.join(", ")
            ),
        };
    }
    Verdict {
        word: "cannot tell",
        why: format!("no budget separates {m} from {r} at the corrected level; {contrast_text}"),
    }
}

/// The scarcity contrast of the primary comparison on the rule's score: (mean, lo, hi).
pub fn contrast(rule: &DecisionRule, runs: &[RunRow]) -> Option<(f64, f64, f64)> {
    let methods = vec![rule.method.clone(), rule.reference.clone()];
    let rows = scarcity(&methods, std::slice::from_ref(&rule.reference), runs);
    let row = rows.into_iter().find(|s| s.method == rule.method)?;
    let (m, lo, hi) = match rule.score {
        Score::Accuracy => (
            row.accuracy_contrast,
            row.accuracy_contrast_lo,
            row.accuracy_contrast_hi,
        ),
        Score::MacroF1 => (
            row.macro_f1_contrast,
            row.macro_f1_contrast_lo,
            row.macro_f1_contrast_hi,
        ),
    };
    Some((m, lo?, hi?))
}

/// The summary's "Decision" section.
pub fn markdown(rule: &DecisionRule, rows: &[DecisionRow], verdict: &Verdict) -> String {
    let col = if rows.iter().any(|r| r.per_class.is_some()) {
        "per class"
    } else {
        "fraction"
    };
    let mut s = format!(
        "\n## Decision\n\nThe rule of `[decision]` in the experiment file (stated in full in \
         `crates/lab/src/kinds/finetune/decision.rs`): at every budget, the paired \
         difference of the {score} ({m} − {r}, one per seed) with a 95% t-interval and a \
         two-sided paired t-test; the p-values of the budgets Holm-adjusted together; **beats** \
         or **loses** where the adjusted p is below {alpha}, else cannot tell. The verdict: \
         refuted if {r} beats {m} anywhere or every interval lies inside ±{margin}; supported if \
         {m} beats {r} somewhere and the scarcity contrast's interval lies above 0; partly \
         supported if it beats but not most when scarce; else cannot tell. Secondary rows are \
         read the same way, each its own family, and are not part of the verdict. Table: \
         `decision.csv`.\n\n\
         | role | comparison | {col} | pairs | difference [95% CI] | p | p (Holm) | reading |\n\
         |---|---|---|---|---|---|---|---|\n",
        score = rule.score.name(),
        m = rule.method,
        r = rule.reference,
        alpha = rule.alpha,
        margin = rule.margin,
    );
    let p = |v: Option<f64>| v.map_or("–".to_string(), |p| format!("{p:.3}"));
    for row in rows {
        let ci = match (row.diff_lo, row.diff_hi) {
            (Some(lo), Some(hi)) => format!("{:+.3} [{lo:+.3}, {hi:+.3}]", row.diff),
            _ => format!("{:+.3}", row.diff),
        };
        let reading = if row.within_margin {
            format!("{} (within ±{})", row.reading, rule.margin)
        } else {
            row.reading.clone()
        };
        s += &format!(
            "| {} | {} − {} | {} | {} | {ci} | {} | {} | {reading} |\n",
            row.role,
            row.method,
            row.against,
            row.budget(),
            row.pairs,
            p(row.p),
            p(row.p_holm),
        );
    }
    s += &format!(
        "\n**Verdict on the primary comparison: {}** ({}).\n",
        verdict.word, verdict.why
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::finetune::metrics::tests::run;

    fn rule() -> DecisionRule {
        DecisionRule {
            profile: "paper".into(),
            method: "hora".into(),
            reference: "lora".into(),
            score: Score::Accuracy,
            alpha: 0.025,
            margin: 0.01,
            secondary: vec![],
        }
    }

    /// hora − lora per seed at budgets 4, 16, 64 per class (five seeds each).
    fn runs(diffs: [[f64; 5]; 3]) -> Vec<RunRow> {
        let mut out = Vec::new();
        for (k, d) in [4usize, 16, 64].iter().zip(diffs) {
            for (seed, dd) in d.iter().enumerate() {
                for (m, acc) in [("lora", 0.6), ("hora", 0.6 + dd)] {
                    let mut r = run(m, 0.0, seed as u64, acc);
                    r.train_fraction = None;
                    r.per_class = Some(*k);
                    out.push(r);
                }
            }
        }
        out
    }

    /// Differences (0.01, 0.02, 0.03, 0.02, 0.02): t = 0.02 / (√5e-5 / √5) = √40 on 4 degrees
    /// of freedom, whose CDF has the closed form 1/2 + (3/8)·u·(1 − t²/(12(1 + t²/4))) with
    /// u = t/√(1 + t²/4): two-sided p = 0.0031982022 (t = 6.3246, t² = 40, 1 + t²/4 = 11).
    #[test]
    fn the_paired_t_p_value_is_the_textbook_one() {
        let p = paired_t_p(&[0.01, 0.02, 0.03, 0.02, 0.02]).unwrap();
        let u = 40f64.sqrt() / 11f64.sqrt();
        let closed = 2.0 * (0.5 - 0.375 * u * (1.0 - 40.0 / 132.0));
        assert!((closed - 0.003_198_202_2).abs() < 1e-10, "{closed}");
        assert!((p - closed).abs() < 1e-9, "{p} against {closed}");
        assert_eq!(paired_t_p(&[0.0, 0.0]), Some(1.0));
        assert_eq!(paired_t_p(&[0.1]), None);
    }

    /// Holm on (0.01, 0.04, 0.03): sorted 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → max 0.06.
    #[test]
    fn holm_steps_down_and_stays_monotone() {
        let got = holm(&[Some(0.01), Some(0.04), Some(0.03), None]);
        let want = [Some(0.03), Some(0.06), Some(0.06), None];
        for (g, w) in got.iter().zip(want) {
            match (g, w) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-15, "{got:?}"),
                (None, None) => {}
                _ => panic!("{got:?}"),
            }
        }
        assert_eq!(holm(&[Some(0.6), Some(0.7)]), vec![Some(1.0), Some(1.0)]);
    }

    #[test]
    fn a_clear_win_at_the_scarce_end_is_supported() {
        let rule = rule();
        let r = runs([
            [0.05, 0.06, 0.04, 0.05, 0.055],
            [0.01, 0.0, 0.02, -0.01, 0.01],
            [0.0, 0.005, -0.005, 0.0, 0.002],
        ]);
        let rows = rows(&rule, &r);
        let readings: Vec<&str> = rows.iter().map(|r| r.reading.as_str()).collect();
        assert_eq!(readings, ["beats", "cannot tell", "cannot tell"]);
        let c = contrast(&rule, &r).unwrap();
        assert!(c.1 > 0.0, "{c:?}");
        assert_eq!(verdict(&rule, &rows, Some(c)).word, "supported");
        // The same win at the large end only: it beats, but not most when scarce.
        let r = runs([
            [0.0, 0.005, -0.005, 0.0, 0.002],
            [0.01, 0.0, 0.02, -0.01, 0.01],
            [0.05, 0.06, 0.04, 0.05, 0.055],
        ]);
        let rows = super::rows(&rule, &r);
        assert_eq!(
            verdict(&rule, &rows, contrast(&rule, &r)).word,
            "partly supported"
        );
    }

    #[test]
    fn a_loss_anywhere_or_no_difference_that_matters_refutes() {
        let rule = rule();
        let r = runs([
            [-0.05, -0.06, -0.04, -0.05, -0.055],
            [0.05, 0.06, 0.04, 0.05, 0.055],
            [0.0; 5],
        ]);
        let rows = rows(&rule, &r);
        let v = verdict(&rule, &rows, contrast(&rule, &r));
        assert_eq!(v.word, "refuted");
        assert!(
            v.why.contains("lora beats hora at budget(s) 4"),
            "{}",
            v.why
        );
        let r = runs([[0.001, -0.001, 0.002, 0.0, -0.002]; 3]);
        let rows = super::rows(&rule, &r);
        assert!(rows.iter().all(|r| r.within_margin));
        assert_eq!(verdict(&rule, &rows, contrast(&rule, &r)).word, "refuted");
        // Noise wider than the margin, no separation: cannot tell.
        let r = runs([[0.03, -0.03, 0.02, -0.02, 0.01]; 3]);
        let rows = super::rows(&rule, &r);
        assert_eq!(
            verdict(&rule, &rows, contrast(&rule, &r)).word,
            "cannot tell"
        );
    }

    /// Holm makes a borderline budget fail: alone p < 0.025, among three not.
    #[test]
    fn the_correction_is_over_the_budgets() {
        let rule = rule();
        let d = [0.01, 0.02, 0.002, 0.015, 0.012];
        let p = paired_t_p(&d).unwrap();
        assert!(p < 0.025 && 3.0 * p > 0.025, "{p}");
        let r = runs([
            d,
            [0.03, -0.03, 0.02, -0.02, 0.01],
            [0.03, -0.03, 0.02, -0.02, 0.01],
        ]);
        let rows = rows(&rule, &r);
        assert_eq!(rows[0].reading, "cannot tell");
        assert!((rows[0].p_holm.unwrap() - 3.0 * p).abs() < 1e-12);
    }

    #[test]
    fn a_rule_naming_an_unknown_profile_method_or_level_is_refused() {
        let path = Path::new("x.toml");
        let methods = vec!["lora".to_string(), "hora".to_string()];
        assert!(rule().check(path, Some(&methods)).is_ok());
        let e = rule().check(path, None).unwrap_err().to_string();
        assert!(e.contains("profile `paper`"), "{e}");
        let mut r = rule();
        r.secondary = vec![["hora-r13".into(), "lora".into()]];
        let e = r.check(path, Some(&methods)).unwrap_err().to_string();
        assert!(e.contains("`hora-r13`"), "{e}");
        let mut r = rule();
        r.alpha = 0.0;
        assert!(r.check(path, Some(&methods)).is_err());
        r.alpha = 0.05;
        r.margin = -1.0;
        assert!(r.check(path, Some(&methods)).is_err());
    }
}
