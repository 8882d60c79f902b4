//! The figure and `summary.md` of a single-point identifiability file, from `ratios.csv`.
use super::metrics::{RatioRow, PLOT_FLOOR};
use crate::kind::Report;
use crate::layout::Dirs;
use crate::plot::{self, Axis, Curve, Panel, Scale, PALETTE};
use crate::store;
use plotters::prelude::SeriesLabelPosition;

/// `ratios.png`/`.svg` (R(ε) per family, one panel per setting) and the summary's tables.
pub(super) fn write(families: &[&str], dirs: &Dirs) -> anyhow::Result<Report> {
    let rows: Vec<RatioRow> = store::read_csv(&dirs.file("ratios.csv"))?;
    let settings = ["exact", "overspecified"];

    let mut panels = Vec::new();
    for setting in settings {
        let mut curves = Vec::new();
        for (i, fam) in families.iter().enumerate() {
            let pts: Vec<&RatioRow> = rows
                .iter()
                .filter(|r| r.setting == setting && r.family == *fam && r.best_ratio.is_some())
                .collect();
            if pts.is_empty() {
                continue;
            }
            let color = PALETTE[i % PALETTE.len()];
            let mut c = Curve::new(*fam, color);
            c.dashed = i >= PALETTE.len();
            c.points = pts
                .iter()
                .map(|r| (r.epsilon, r.best_ratio.unwrap().max(PLOT_FLOOR)))
                .collect();
            curves.push(c);
            let ub: Vec<(f64, f64)> = pts
                .iter()
                .filter(|r| r.upper_bound)
                .map(|r| (r.epsilon, r.best_ratio.unwrap().max(PLOT_FLOOR)))
                .collect();
            if !ub.is_empty() {
                let mut u = Curve::new("", color);
                u.line = false;
                u.points = ub;
                u.errors = u
                    .points
                    .iter()
                    .map(|(x, y)| (*x, *y, *y, *y * 4.0))
                    .collect();
                curves.push(u);
            }
        }
        if curves.is_empty() {
            continue;
        }
        panels.push(Panel {
            title: format!("{setting}: smallest R(ε) = ‖f − f*‖ / D found"),
            x: Axis::new("ε (Voronoi loss held at)", Scale::Log10),
            y: Axis::new("R(ε)", Scale::Log10),
            curves,
            legend: SeriesLabelPosition::LowerLeft,
        });
    }
    let figures = plot::save(&dirs.file("ratios"), &panels, 2)?;
    Ok(Report {
        summary: summary(&rows, families, settings),
        figures,
    })
}

fn summary(rows: &[RatioRow], families: &[&str], settings: [&str; 2]) -> String {
    let mut eps: Vec<f64> = rows.iter().map(|r| r.epsilon).collect();
    eps.sort_by(|a, b| b.total_cmp(a));
    eps.dedup();
    let mut out = String::new();
    for setting in settings {
        let body: Vec<Vec<String>> = families
            .iter()
            .filter_map(|f| {
                let cells: Vec<String> = eps
                    .iter()
                    .map(|e| {
                        rows.iter()
                            .find(|r| r.setting == setting && r.family == *f && r.epsilon == *e)
                            .map_or("".into(), |r| match r.best_ratio {
                                None => "no start".into(),
                                Some(v) if r.upper_bound => format!("≤ {}", plot::number(v)),
                                Some(v) => plot::number(v),
                            })
                    })
                    .collect();
                cells
                    .iter()
                    .any(|c| !c.is_empty())
                    .then(|| std::iter::once(f.to_string()).chain(cells).collect())
            })
            .collect();
        if body.is_empty() {
            continue;
        }
        let header: Vec<String> = std::iter::once("family".to_string())
            .chain(eps.iter().map(|e| format!("ε = {}", plot::number(*e))))
            .collect();
        out.push_str(&format!(
            "\n### {setting}: smallest R(ε) = ‖f − f*‖ / D found over the starts\n\n"
        ));
        out.push_str(&crate::markdown::table(&header, body));
        out.push('\n');
    }
    out.push_str(
        "\n`≤`: the best start was still falling when its rounds ran out (an upper bound). \
         A value near 10⁻¹⁶/ε is 0 to rounding: the misfit vanished while D = ε (a flat set). \
         Every start's trajectory is in the raw records; `ratios.csv` names the best start, \
         the atom it moved most, and D/ε at the end.\n\n![R(ε)](ratios.png)\n",
    );
    out
}
