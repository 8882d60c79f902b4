//! Figures and `summary.md` of a `finetune` profile, drawn from `accuracy.csv`.
use super::metrics::GroupRow;
use super::FinetuneKind;
use crate::kind::Report;
use crate::layout::Dirs;
use crate::plot::{self, Axis, Curve, Panel, Scale, GREY, PALETTE};
use crate::store::read_csv;
use plotters::prelude::SeriesLabelPosition;

pub(super) fn write(kind: &FinetuneKind, dirs: &Dirs) -> anyhow::Result<Report> {
    let groups: Vec<GroupRow> = read_csv(&dirs.file("accuracy.csv"))?;
    let panel = |title: &str, y: &str, majority: bool, get: fn(&GroupRow) -> (f64, f64, f64)| {
        let mut curves = Vec::new();
        for (i, m) in kind.methods.iter().enumerate() {
            let g: Vec<&GroupRow> = groups.iter().filter(|r| &r.method == m).collect();
            if g.is_empty() {
                continue;
            }
            let params = g[0].trainable_params;
            let mut c = Curve::new(
                format!("{m} ({} trainable)", plot::number(params as f64)),
                PALETTE[i % PALETTE.len()],
            );
            c.points = g.iter().map(|r| (r.train_fraction, get(r).0)).collect();
            c.band = g
                .iter()
                .map(|r| (r.train_fraction, get(r).1, get(r).2))
                .collect();
            curves.push(c);
        }
        // The majority-class rate is an accuracy: the floor of the accuracy panel only.
        if let Some(first) = groups.first().filter(|_| majority) {
            let (lo, hi) = groups.iter().fold((f64::INFINITY, 0f64), |(a, b), r| {
                (a.min(r.train_fraction), b.max(r.train_fraction))
            });
            let mut c = Curve::new("majority class", GREY);
            c.points = vec![(lo, first.majority_rate), (hi, first.majority_rate)];
            c.dashed = true;
            c.markers = false;
            curves.push(c);
        }
        Panel {
            title: title.into(),
            x: Axis::new("fraction of the training set", Scale::Log10),
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
    Ok(Report {
        figures: plot::save(&dirs.file("accuracy"), &panels, 2)?,
        summary: summary_markdown(&groups),
    })
}

fn summary_markdown(groups: &[GroupRow]) -> String {
    let header = [
        "method",
        "trainable params",
        "fraction",
        "train examples",
        "seeds",
        "test accuracy (mean ± sd)",
        "macro-F1 (mean ± sd)",
    ];
    let rows = groups.iter().map(|g| {
        vec![
            g.method.clone(),
            g.trainable_params.to_string(),
            g.train_fraction.to_string(),
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
