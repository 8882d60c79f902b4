//! Figures and `summary.md` of a `controls` profile, drawn from `curves.csv`, `rates.csv` and
//! `estimator.csv` with the `rates` kind's panels and tables.
use super::super::curves::metrics::RateRow;
use super::super::curves::report::{estimator_markdown, loss_curves, rate_table, Line};
use super::super::curves::{CurveRow, EstimatorRow};
use super::metrics::{method, CurveIds};
use super::ControlsKind;
use crate::kind::Report;
use crate::layout::Dirs;
use crate::plot::{self, Axis, Panel, Scale, PALETTE};
use crate::store::{read_csv, read_rows};
use plotters::prelude::SeriesLabelPosition;

pub(super) fn write(kind: &ControlsKind, profile: &str, dirs: &Dirs) -> anyhow::Result<Report> {
    let curves: Vec<CurveRow> = read_csv(&dirs.file("curves.csv"))?;
    let rates: Vec<RateRow<CurveIds>> = read_rows(&dirs.file("rates.csv"))?;
    // One panel per expert type, one line per setting (exact, over-specified, ...).
    let mut experts = Vec::new();
    for s in &kind.settings {
        if !experts.contains(&s.model().expert) {
            experts.push(s.model().expert);
        }
    }
    let mut files = Vec::new();
    for (loss, title) in [
        ("voronoi", "Voronoi loss"),
        ("regression", "regression-function error"),
    ] {
        let panels: Vec<Panel> = experts
            .iter()
            .map(|&e| {
                let lines: Vec<Line> = kind
                    .settings
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.model().expert == e)
                    .map(|(i, s)| {
                        let fit = rates
                            .iter()
                            .find(|(ids, _)| ids.setting == s.name)
                            .map_or((None, None, None, None), |(_, r)| r.fit_of(loss));
                        Line {
                            setting: s.name.clone(),
                            method: method(&s.template),
                            label: format!("{} (k = {})", s.name, s.model().k_fit),
                            color: PALETTE[i % PALETTE.len()],
                            fit,
                        }
                    })
                    .collect();
                let k_true = kind.settings[0].model().k_true;
                Panel {
                    title: format!("{title}: {e} experts, k* = {k_true}"),
                    x: Axis::new("sample size n", Scale::Log10),
                    y: Axis::new(&format!("mean {title} (95% band)"), Scale::Log10),
                    curves: loss_curves(&lines, loss, &curves),
                    legend: SeriesLabelPosition::LowerLeft,
                }
            })
            .collect();
        files.extend(plot::save(&dirs.file(loss), &panels, experts.len().min(2))?);
    }
    let mut summary = summary_markdown(kind, profile, &rates);
    let estimator: Vec<EstimatorRow> = read_csv(&dirs.file("estimator.csv"))?;
    summary += &estimator_markdown(&kind.report, &estimator);
    Ok(Report {
        figures: files,
        summary,
    })
}

fn summary_markdown(kind: &ControlsKind, profile: &str, rates: &[RateRow<CurveIds>]) -> String {
    let p = &kind.profiles[profile];
    let mut s = format!(
        "The classic softmax-gated MoE regression (THEORY.md §4a), fitted by the HMoE's \
         estimator. Grid: n ∈ {{{}}}, {} replicates per point; slopes are OLS of log(mean loss) \
         on log n with 95% bootstrap intervals over replicates ({} resamples).\n\n",
        p.ns.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        p.replicates,
        kind.report.bootstrap
    );
    let own = |ids: &CurveIds| {
        let k = (ids.k_true.to_string(), ids.k_fit.to_string());
        vec![ids.setting.clone(), ids.expert.clone(), k.0, k.1]
    };
    s += &rate_table(
        &["setting", "experts", "k*", "k fitted"],
        kind.report.target_loss,
        rates.iter().map(|(ids, r)| (own(ids), r)),
    );
    s +=
        "\nTHEORY.md §5a: exactly specified, every setting should give about −1/2. Over-specified \
          with linear experts, an exact flat set (equal gates, a symmetric split of the expert) \
          makes the estimator a set, so the reported Voronoi loss is the optimiser's pick from it; \
          with tanh experts the inverse bound is expected to hold (about −1/2 for this loss). The \
          regression error should fall as about −1/2 throughout. The table reports what the fits \
          gave, whether or not it agrees.\n\n";
    s += "## Figures\n\n![Voronoi loss](voronoi.png)\n\n![regression error](regression.png)\n\n";
    s += "Tables: `metrics.csv` (one row per fit), `curves.csv` (means and bands), `rates.csv` \
          (slopes), `estimator.csv` (the estimator's audit).\n\n";
    s
}
