//! Figures and `summary.md` of a `finetune` profile, drawn from `accuracy.csv` and `paired.csv`.
use super::metrics::{
    Budgeted, GroupRow, LrGridRow, PairedRow, RunRow, ScarcityRow, LR_GRID_TABLE, PAIRED_TABLE,
    SCARCITY_TABLE,
};
use super::FinetuneKind;
use crate::kind::Report;
use crate::layout::Dirs;
use crate::plot::{self, Axis, Curve, Panel, Scale, GREY, PALETTE};
use crate::store::read_csv;
use plotters::prelude::SeriesLabelPosition;

pub(super) fn write(kind: &FinetuneKind, profile: &str, dirs: &Dirs) -> anyhow::Result<Report> {
    let methods = kind.methods(profile);
    let groups: Vec<GroupRow> = read_csv(&dirs.file("accuracy.csv"))?;
    let panel = |title: &str, y: &str, majority: bool, get: fn(&GroupRow) -> (f64, f64, f64)| {
        let mut curves = Vec::new();
        for (i, m) in methods.iter().enumerate() {
            let g: Vec<&GroupRow> = groups.iter().filter(|r| &r.method == m).collect();
            if g.is_empty() {
                continue;
            }
            let params = g[0].trainable_params;
            let mut c = Curve::new(
                format!("{m} ({} trainable)", plot::number(params as f64)),
                PALETTE[i % PALETTE.len()],
            );
            // Past the palette a colour comes round again: a dashed line tells the two apart.
            c.dashed = i >= PALETTE.len();
            c.points = g.iter().map(|r| (r.budget(), get(r).0)).collect();
            c.band = g.iter().map(|r| (r.budget(), get(r).1, get(r).2)).collect();
            curves.push(c);
        }
        // The majority-class rate is an accuracy: the floor of the accuracy panel only.
        if let Some(first) = groups.first().filter(|_| majority) {
            let (lo, hi) = groups.iter().fold((f64::INFINITY, 0f64), |(a, b), r| {
                (a.min(r.budget()), b.max(r.budget()))
            });
            let mut c = Curve::new("majority class", GREY);
            c.points = vec![(lo, first.majority_rate), (hi, first.majority_rate)];
            c.dashed = true;
            c.markers = false;
            curves.push(c);
        }
        Panel {
            title: title.into(),
            x: Axis::new(budget_axis(&groups), Scale::Log10),
            y: Axis::new(y, Scale::Linear),
            curves,
            legend: SeriesLabelPosition::LowerRight,
        }
    };
    let panels = vec![
        panel(
            "test accuracy (seed range shaded)",
            "test accuracy",
            true,
            |r| (r.accuracy_mean, r.accuracy_min, r.accuracy_max),
        ),
        panel(
            "test macro-F1 (mean ± sd shaded)",
            "test macro-F1",
            false,
            |r| {
                (
                    r.macro_f1_mean,
                    r.macro_f1_mean - r.macro_f1_sd,
                    r.macro_f1_mean + r.macro_f1_sd,
                )
            },
        ),
    ];
    let mut figures = plot::save(&dirs.file("accuracy"), &panels, 2)?;
    let paired: Vec<PairedRow> = read_csv(&dirs.file(PAIRED_TABLE))?;
    let mut summary = summary_markdown(&groups);
    if !paired.is_empty() {
        let panels: Vec<Panel> = kind
            .paired_references()
            .iter()
            .filter(|a| paired.iter().any(|p| &p.against == *a))
            .map(|a| paired_panel(methods, &paired, a, &kind.lora_family()))
            .collect();
        figures.extend(plot::save(&dirs.file("paired"), &panels, panels.len())?);
        summary += &paired_markdown(&paired);
    }
    let scarcity: Vec<ScarcityRow> = read_csv(&dirs.file(SCARCITY_TABLE))?;
    if !scarcity.is_empty() {
        summary += &scarcity_markdown(&scarcity);
    }
    if kind.is_grid(profile) {
        let grid: Vec<LrGridRow> = read_csv(&dirs.file(LR_GRID_TABLE))?;
        summary += &lr_grid_markdown(&grid);
    }
    let runs: Vec<RunRow> = read_csv(&dirs.file("metrics.csv"))?;
    if let Some(rule) = kind.decision.as_ref().filter(|r| r.profile == profile) {
        use super::decision;
        let rows: Vec<decision::DecisionRow> = read_csv(&dirs.file(decision::DECISION_TABLE))?;
        let verdict = decision::verdict(rule, &rows, decision::contrast(rule, &runs));
        summary += &decision::markdown(rule, &rows, &verdict);
    }
    summary += &last_evaluation_markdown(methods, &runs);
    Ok(Report { figures, summary })
}

/// Log10 units between the error bars of neighbouring methods at one fraction, so that
/// overlapping intervals stay apart (the points are drawn dodged about their fraction).
const DODGE: f64 = 0.012;

/// The paired accuracy difference against one reference method, per fraction, one line per
/// method, with its paired 95% t-interval as error bars. Methods of `family` other than the
/// reference are left out when the reference is one of them: lora at another learning rate
/// against lora is a choice of rate, not of adapter (it stays in the table), and one lora that
/// failed to train would set the scale of the whole panel.
fn paired_panel(
    methods: &[String],
    paired: &[PairedRow],
    against: &str,
    family: &[String],
) -> Panel {
    let against_family = family.iter().any(|f| f == against);
    let shown: Vec<(usize, &String)> = methods
        .iter()
        .enumerate()
        .filter(|(_, m)| !(against_family && family.contains(m)))
        .filter(|(_, m)| {
            paired
                .iter()
                .any(|p| &p.method == *m && p.against == against)
        })
        .collect();
    let mut curves = Vec::new();
    for (j, &(i, m)) in shown.iter().enumerate() {
        let rows: Vec<&PairedRow> = paired
            .iter()
            .filter(|p| &p.method == m && p.against == against)
            .collect();
        let shift = 10f64.powf(DODGE * (j as f64 - (shown.len() as f64 - 1.0) / 2.0));
        let mut c = Curve::new(m.clone(), PALETTE[i % PALETTE.len()]);
        c.dashed = i >= PALETTE.len();
        c.points = rows
            .iter()
            .map(|p| (p.budget() * shift, p.accuracy_diff))
            .collect();
        c.errors = rows
            .iter()
            .filter_map(|p| {
                Some((
                    p.budget() * shift,
                    p.accuracy_diff_lo?,
                    p.accuracy_diff,
                    p.accuracy_diff_hi?,
                ))
            })
            .collect();
        curves.push(c);
    }
    let (lo, hi) = paired.iter().fold((f64::INFINITY, 0f64), |(a, b), p| {
        (a.min(p.budget()), b.max(p.budget()))
    });
    let reach = 10f64.powf(DODGE * (shown.len().max(1) as f64 - 1.0) / 2.0);
    let mut zero = Curve::new("", GREY);
    zero.points = vec![(lo / reach, 0.0), (hi * reach, 0.0)];
    zero.dashed = true;
    zero.markers = false;
    curves.push(zero);
    Panel {
        title: format!("test accuracy − {against}'s, same split and seed (95% paired t-interval)"),
        x: Axis::new(budget_axis(paired), Scale::Log10),
        y: Axis::new(&format!("accuracy difference to {against}"), Scale::Linear),
        curves,
        legend: SeriesLabelPosition::LowerRight,
    }
}

/// The x axis of a profile's budgets: fractions (every tweets profile before issue 25) or
/// examples per class.
fn budget_axis<B: Budgeted>(rows: &[B]) -> &'static str {
    if rows.iter().any(|r| r.budget_columns().1.is_some()) {
        "training examples per class"
    } else {
        "fraction of the training set"
    }
}

/// The budget's column in the summary's tables.
fn budget_column<B: Budgeted>(rows: &[B]) -> &'static str {
    if rows.iter().any(|r| r.budget_columns().1.is_some()) {
        "per class"
    } else {
        "fraction"
    }
}

/// Per method and budget, the runs whose best validation evaluation was their last one: a run
/// still improving when it stopped was cut short by its step budget, not by early stopping
/// (issue 25: under 10% is the target of a protocol trained to convergence).
fn last_evaluation_markdown(methods: &[String], runs: &[RunRow]) -> String {
    let mut budgets: Vec<f64> = runs.iter().map(|r| r.budget()).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    let header: Vec<String> = std::iter::once("method".to_string())
        .chain(
            budgets
                .iter()
                .map(|b| format!("{} {b}", budget_column(runs))),
        )
        .collect();
    let (mut last, mut all) = (0, 0);
    let body: Vec<Vec<String>> = methods
        .iter()
        .filter(|m| runs.iter().any(|r| &r.method == *m))
        .map(|m| {
            std::iter::once(m.clone())
                .chain(budgets.iter().map(|b| {
                    let of: Vec<&RunRow> = runs
                        .iter()
                        .filter(|r| &r.method == m && r.budget() == *b)
                        .collect();
                    let n = of.iter().filter(|r| r.best_epoch == r.epochs_run).count();
                    last += n;
                    all += of.len();
                    if of.is_empty() {
                        String::new()
                    } else {
                        format!("{n} / {}", of.len())
                    }
                }))
                .collect()
        })
        .collect();
    if all == 0 {
        return String::new();
    }
    format!(
        "## Runs still improving at their last evaluation\n\nPer method and budget, the runs whose \
         best validation macro-F1 came at their last evaluation (of all runs: {last} of {all}, \
         {:.0}%): those were stopped by their step or epoch budget while still improving, not \
         by early stopping. Table: `metrics.csv` (`best_epoch` = `epochs_run`).\n\n{}\n",
        100.0 * last as f64 / all as f64,
        crate::markdown::table(&header, body)
    )
}

fn paired_markdown(paired: &[PairedRow]) -> String {
    let mut s = "## Paired comparison\n\nEvery method of a (fraction, seed) trains on the same \
                 split and the same training subset, so each difference below is taken within a \
                 pair: the mean over seeds of (method − reference), with a paired 95% t-interval \
                 (none for a single pair), and the pairs won, tied and lost on test accuracy. \
                 Table: `paired.csv`.\n\n"
        .to_string();
    let header = [
        "method",
        "against",
        budget_column(paired),
        "pairs",
        "accuracy difference [95% CI]",
        "macro-F1 difference [95% CI]",
        "won / tied / lost",
    ];
    let rows = paired.iter().map(|p| {
        vec![
            p.method.clone(),
            p.against.clone(),
            p.budget().to_string(),
            p.pairs.to_string(),
            signed_ci(p.accuracy_diff, p.accuracy_diff_lo, p.accuracy_diff_hi),
            signed_ci(p.macro_f1_diff, p.macro_f1_diff_lo, p.macro_f1_diff_hi),
            format!("{} / {} / {}", p.wins, p.ties, p.losses),
        ]
    });
    s += &crate::markdown::table(&header, rows);
    s += "\n![paired differences](paired.png)\n\n";
    s
}

fn summary_markdown(groups: &[GroupRow]) -> String {
    let header = [
        "method",
        "trainable params",
        budget_column(groups),
        "train examples",
        "seeds",
        "test accuracy (mean ± sd)",
        "macro-F1 (mean ± sd)",
    ];
    let rows = groups.iter().map(|g| {
        vec![
            g.method.clone(),
            g.trainable_params.to_string(),
            g.budget().to_string(),
            g.train_examples.to_string(),
            g.seeds.to_string(),
            format!("{:.3} ± {:.3}", g.accuracy_mean, g.accuracy_sd),
            format!("{:.3} ± {:.3}", g.macro_f1_mean, g.macro_f1_sd),
        ]
    });
    let mut s = crate::markdown::table(&header, rows);
    if let Some(g) = groups.first() {
        s += &format!(
            "\nMajority-class rate on the test set: {:.3}.\n",
            g.majority_rate
        );
    }
    s += "\n![accuracy](accuracy.png)\n\nTables: `metrics.csv` (one row per run), `accuracy.csv` (per method and fraction), `timing.csv`.\n\n";
    s
}

/// The learning-rate grid: validation macro-F1 per method and rate (and budget, on a grid over
/// several), the chosen rate marked.
fn lr_grid_markdown(grid: &[LrGridRow]) -> String {
    let per_budget = grid.iter().any(|r| r.budget_columns() != (None, None));
    let (over, budget_head, budget_rule) = if per_budget {
        (
            "over the seeds of this profile at each budget; at each budget the rate".to_string(),
            format!(" {} |", budget_column(grid)),
            "---|",
        )
    } else {
        (
            "over the fractions and seeds of this profile; the rate".to_string(),
            String::new(),
            "",
        )
    };
    let mut out = format!(
        "\n## Learning-rate grid\n\nEach method at every rate of the grid (`full_lr` for full \
         fine-tuning, whose head keeps `lr`), {over} with the highest mean validation macro-F1 of \
         the best {} is chosen (**bold**). The test split plays no part in the choice. Table: \
         `lr-grid.csv`.\n\n\
         | method |{budget_head} lr | runs | validation macro-F1 (mean ± sd) | test accuracy (mean) |\n\
         |---|{budget_rule}---|---|---|---|\n",
        if per_budget { "evaluation" } else { "epoch" }
    );
    for r in grid {
        let lr = if r.chosen {
            format!("**{}**", r.lr)
        } else {
            r.lr.to_string()
        };
        let budget = if per_budget {
            format!(" {} |", r.budget())
        } else {
            String::new()
        };
        out += &format!(
            "| {} |{budget} {lr} | {} | {:.3} ± {:.3} | {:.3} |\n",
            r.method, r.runs, r.val_macro_f1_mean, r.val_macro_f1_sd, r.test_accuracy_mean
        );
    }
    out
}

fn scarcity_markdown(rows: &[ScarcityRow]) -> String {
    let mut s = "## Is the difference largest when data is scarce?\n\nPer seed, the mean paired \
                 difference (method − reference) over the smaller half of the fractions minus the \
                 same over the larger half; then the mean over seeds with a paired 95% \
                 t-interval. Positive: the method gains more (or loses less) against the \
                 reference when data is scarce. Seeds count only with runs of both methods at \
                 every fraction. Table: `scarcity.csv`.\n\n"
        .to_string();
    let header = [
        "method",
        "against",
        "small fractions",
        "large fractions",
        "seeds",
        "accuracy contrast [95% CI]",
        "macro-F1 contrast [95% CI]",
    ];
    let table = rows.iter().map(|r| {
        vec![
            r.method.clone(),
            r.against.clone(),
            r.small_fractions.clone(),
            r.large_fractions.clone(),
            r.seeds.to_string(),
            signed_ci(
                r.accuracy_contrast,
                r.accuracy_contrast_lo,
                r.accuracy_contrast_hi,
            ),
            signed_ci(
                r.macro_f1_contrast,
                r.macro_f1_contrast_lo,
                r.macro_f1_contrast_hi,
            ),
        ]
    });
    s += &crate::markdown::table(&header, table);
    s += "\n";
    s
}

/// A signed difference with its interval, `+0.012 [-0.003, +0.027]` (without one: `+0.012`).
fn signed_ci(m: f64, lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (Some(lo), Some(hi)) => format!("{m:+.3} [{lo:+.3}, {hi:+.3}]"),
        _ => format!("{m:+.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, against: &str, f: f64, diff: f64) -> PairedRow {
        PairedRow {
            method: method.into(),
            against: against.into(),
            train_fraction: Some(f),
            per_class: None,
            pairs: 3,
            accuracy_diff: diff,
            accuracy_diff_lo: Some(diff - 0.01),
            accuracy_diff_hi: Some(diff + 0.01),
            macro_f1_diff: diff,
            macro_f1_diff_lo: None,
            macro_f1_diff_hi: None,
            wins: 0,
            ties: 0,
            losses: 3,
        }
    }

    #[test]
    fn paired_panel_leaves_out_the_references_family_and_dodges_about_each_fraction() {
        let methods: Vec<String> = ["lora", "hora", "full", "lora-3e-3"]
            .map(String::from)
            .to_vec();
        let family = vec!["lora".to_string(), "lora-3e-3".to_string()];
        let paired: Vec<PairedRow> = ["lora", "hora", "full"]
            .iter()
            .map(|m| row(m, "lora-3e-3", 0.01, -0.2))
            .chain(["lora", "hora", "lora-3e-3"].map(|m| row(m, "full", 0.01, -0.05)))
            .collect();
        let labels = |p: &Panel| -> Vec<String> {
            p.curves
                .iter()
                .filter(|c| !c.label.is_empty())
                .map(|c| c.label.clone())
                .collect()
        };
        let against_variant = paired_panel(&methods, &paired, "lora-3e-3", &family);
        assert_eq!(labels(&against_variant), ["hora", "full"]);
        let against_full = paired_panel(&methods, &paired, "full", &family);
        assert_eq!(labels(&against_full), ["lora", "hora", "lora-3e-3"]);
        // Three methods at one fraction: one left of it, one on it, one right, equally spaced in
        // log10, and each error bar at its own point's x with the row's interval.
        let xs: Vec<f64> = against_full.curves[..3]
            .iter()
            .map(|c| c.points[0].0)
            .collect();
        assert!((xs[0] * xs[2] - 0.01 * 0.01).abs() < 1e-15 && xs[1] == 0.01);
        assert!(((xs[2] / xs[1]).log10() - DODGE).abs() < 1e-12);
        for c in &against_full.curves[..3] {
            assert_eq!(
                c.errors[0],
                (c.points[0].0, -0.05 - 0.01, -0.05, -0.05 + 0.01)
            );
        }
        // The zero line reaches past the outermost bars.
        let zero = against_full.curves.last().unwrap();
        assert!(zero.points[0].0 <= xs[0] && zero.points[1].0 >= xs[2]);
        // A ninth method comes round to the first colour: it is dashed.
        let many: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
        let rows: Vec<PairedRow> = many.iter().map(|m| row(m, "ref", 0.01, 0.0)).collect();
        let p = paired_panel(&many, &rows, "ref", &family);
        assert!(p.curves[..8].iter().all(|c| !c.dashed) && p.curves[8].dashed);
    }
}
