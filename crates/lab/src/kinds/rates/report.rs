//! Figures and `summary.md` of a `rates` profile, drawn from `curves.csv` and `rates.csv`.
use super::super::curves::report::{estimator_markdown, loss_curves, rate_table, Line};
use super::metrics::{
    CurveIds, CurveRow, EstimatorRow, PairedRow, RateRow, TimingRow, ESTIMATOR_TABLE, PAIRED_TABLE,
    TIMING_TABLE,
};
use super::RatesKind;
use crate::kind::Report;
use crate::layout::Dirs;
use crate::plot::{self, Axis, Curve, Panel, Scale, GREY, PALETTE};
use crate::store::{read_csv, read_rows};
use hmoe::Family;
use plotters::prelude::{RGBColor, SeriesLabelPosition};
use std::collections::{BTreeMap, BTreeSet};

/// A row of `rates.csv`: a curve's columns, then the shared statistics.
type Rate = RateRow<CurveIds>;

pub(super) fn write(kind: &RatesKind, profile: &str, dirs: &Dirs) -> anyhow::Result<Report> {
    let curves: Vec<CurveRow> = read_csv(&dirs.file("curves.csv"))?;
    let rates: Vec<Rate> = read_rows(&dirs.file("rates.csv"))?;
    let methods = method_order(kind);
    let colours = method_colours(kind);
    let color = |m: &str| colours.get(m).copied().unwrap_or(PALETTE[7]);
    let cols = if kind.settings.len() > 2 {
        2
    } else {
        kind.settings.len()
    };
    let mut files = Vec::new();
    for (loss, title) in [
        ("voronoi", "Voronoi loss"),
        ("regression", "regression-function error"),
    ] {
        let panels: Vec<Panel> = kind
            .settings
            .iter()
            .map(|s| loss_panel(kind, &s.name, loss, title, &curves, &rates, &color))
            .collect();
        files.extend(plot::save(&dirs.file(loss), &panels, cols)?);
    }
    let heads: BTreeSet<usize> = rates.iter().map(|(ids, _)| ids.heads).collect();
    if heads.len() > 1 {
        let panels = vec![
            heads_panel(&rates, &methods, &color, "Voronoi loss", "voronoi"),
            heads_panel(&rates, &methods, &color, "regression error", "regression"),
        ];
        files.extend(plot::save(&dirs.file("heads"), &panels, 2)?);
    }
    let mut summary = summary_markdown(kind, profile, &rates, heads.len() > 1);
    let estimator: Vec<EstimatorRow> = read_csv(&dirs.file(ESTIMATOR_TABLE))?;
    summary += &estimator_markdown(&kind.report, &estimator);
    // Read only when the experiment pairs settings: a paired.csv left from an earlier version
    // of the file is not this experiment's.
    let paired_path = dirs.file(PAIRED_TABLE);
    if !kind.paired_settings().is_empty() {
        let paired: Vec<PairedRow> = read_csv(&paired_path)?;
        if !paired.is_empty() {
            files.extend(plot::save(
                &dirs.file("paired"),
                &paired_panels(&paired, &color),
                cols.max(1),
            )?);
            summary += &paired_markdown(&paired);
        }
    }
    if kind.report.timing {
        let timing: Vec<TimingRow> = read_csv(&dirs.file(TIMING_TABLE))?;
        files.extend(plot::save(
            &dirs.file("seconds"),
            &[seconds_panel(kind, &timing, &color)],
            1,
        )?);
        summary += &timing_markdown(&timing);
    }
    Ok(Report {
        figures: files,
        summary,
    })
}

/// Seconds per fit against n, one line per setting × method (median, min–max bars).
fn seconds_panel(
    kind: &RatesKind,
    timing: &[TimingRow],
    color: &dyn Fn(&str) -> RGBColor,
) -> Panel {
    let mut curves = Vec::new();
    for s in &kind.settings {
        for m in &s.methods {
            let m = m.to_string();
            let rows: Vec<&TimingRow> = timing
                .iter()
                .filter(|t| t.setting == s.name && t.method == m)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let mut c = Curve::new(format!("{m}, m = {}", s.model().atoms), color(&m));
            c.dashed = s.model().atoms > 1;
            c.points = rows
                .iter()
                .map(|t| (t.n as f64, t.seconds_median))
                .collect();
            c.errors = rows
                .iter()
                .map(|t| (t.n as f64, t.seconds_min, t.seconds_median, t.seconds_max))
                .collect();
            curves.push(c);
        }
    }
    Panel {
        title: "wall-clock seconds per fit (median, min–max over replicates)".into(),
        x: Axis::new("sample size n", Scale::Log10),
        y: Axis::new("seconds per fit", Scale::Log10),
        curves,
        legend: SeriesLabelPosition::UpperLeft,
    }
}

fn timing_markdown(timing: &[TimingRow]) -> String {
    let mut s = "## Seconds per fit

Wall-clock seconds of one fit (all its starts), on the \
                 machine in the provenance below; times depend on the machine and its load, so \
                 `hora reproduce` never counts them as a mismatch.

"
    .to_string();
    let header = [
        "setting",
        "method",
        "m",
        "n",
        "fits",
        "median s",
        "min s",
        "max s",
        "iterations (median)",
    ];
    let rows = timing.iter().map(|t| {
        vec![
            t.setting.clone(),
            t.method.clone(),
            t.atoms.to_string(),
            t.n.to_string(),
            t.fits.to_string(),
            format!("{:.3}", t.seconds_median),
            format!("{:.3}", t.seconds_min),
            format!("{:.3}", t.seconds_max),
            format!("{:.0}", t.iterations_median),
        ]
    });
    s += &crate::markdown::table(&header, rows);
    s += "
![seconds per fit](seconds.png)

";
    s
}

/// A colour per family (lora, replora, hora), so a family looks the same in every panel; a
/// setting that fits two variants of one family gives the later ones colours of their own.
fn method_colours(kind: &RatesKind) -> BTreeMap<String, RGBColor> {
    let mut map = BTreeMap::new();
    let mut extra = 3;
    for s in &kind.settings {
        for (i, m) in s.methods.iter().enumerate() {
            let name = m.to_string();
            if map.contains_key(&name) {
                continue;
            }
            let shared = s.methods[..i].iter().any(|o| o.family == m.family);
            let colour = if shared {
                extra += 1;
                PALETTE[(extra - 1) % PALETTE.len()]
            } else {
                PALETTE[match m.family {
                    Family::Lora => 0,
                    Family::Replora => 1,
                    Family::Hora => 2,
                }]
            };
            map.insert(name, colour);
        }
    }
    map
}

/// Methods in the order they first appear in the file: the same colour in every panel.
fn method_order(kind: &RatesKind) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in &kind.settings {
        for m in &s.methods {
            let m = m.to_string();
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

fn loss_panel(
    kind: &RatesKind,
    setting: &str,
    loss: &str,
    title: &str,
    curves: &[CurveRow],
    rates: &[Rate],
    color: &dyn Fn(&str) -> RGBColor,
) -> Panel {
    let s = kind
        .settings
        .iter()
        .find(|s| s.name == setting)
        .expect("setting of the kind");
    let lines: Vec<Line> = s
        .methods
        .iter()
        .map(|m| {
            let m = m.to_string();
            let fit = rates
                .iter()
                .find(|(ids, _)| ids.setting == setting && ids.method == m)
                .map_or((None, None, None, None), |(_, r)| r.fit_of(loss));
            Line {
                setting: setting.to_string(),
                label: m.clone(),
                color: color(&m),
                method: m,
                fit,
            }
        })
        .collect();
    Panel {
        title: format!(
            "{title}: {} (truth {}, H={}, m={})",
            setting,
            s.truth,
            s.model().heads,
            s.model().atoms
        ),
        x: Axis::new("sample size n", Scale::Log10),
        y: Axis::new(&format!("mean {title} (95% band)"), Scale::Log10),
        curves: loss_curves(&lines, loss, curves),
        legend: SeriesLabelPosition::LowerLeft,
    }
}

fn heads_panel(
    rates: &[Rate],
    methods: &[String],
    color: &dyn Fn(&str) -> RGBColor,
    what: &str,
    loss: &str,
) -> Panel {
    let mut out = Vec::new();
    for (i, m) in methods.iter().enumerate() {
        let mut c = Curve::new(m.clone(), color(m));
        // Methods sit side by side around each H so their intervals do not overlap.
        let dodge = 2f64.powf(0.06 * (i as f64 - (methods.len() as f64 - 1.0) / 2.0));
        for (ids, r) in rates.iter().filter(|(ids, _)| &ids.method == m) {
            if let (Some(s), Some(lo), Some(hi), _) = r.fit_of(loss) {
                let h = ids.heads as f64 * dodge;
                c.points.push((h, s));
                c.errors.push((h, lo, s, hi));
            }
        }
        c.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !c.points.is_empty() {
            out.push(c);
        }
    }
    for (label, p, color) in [
        ("−1/2", -0.5, GREY),
        ("−1/4", -0.25, RGBColor(180, 180, 180)),
    ] {
        let hs: Vec<f64> = rates.iter().map(|(ids, _)| ids.heads as f64).collect();
        let (lo, hi) = (
            hs.iter().cloned().fold(f64::INFINITY, f64::min),
            hs.iter().cloned().fold(0.0, f64::max),
        );
        let mut r = Curve::new(label, color);
        r.points = vec![(lo, p), (hi, p)];
        r.dashed = true;
        r.markers = false;
        out.push(r);
    }
    Panel {
        title: format!("fitted slope of the {what} vs heads"),
        x: Axis::new("heads H", Scale::Log2),
        y: Axis::new("slope of log loss on log n (95% CI)", Scale::Linear),
        curves: out,
        legend: SeriesLabelPosition::UpperRight,
    }
}

fn summary_markdown(kind: &RatesKind, profile: &str, rates: &[Rate], heads: bool) -> String {
    let p = &kind.profiles[profile];
    let mut s = format!(
        "Grid: n ∈ {{{}}}, {} replicates per point; slopes are OLS of log(mean loss) on log n with \
         95% bootstrap intervals over replicates ({} resamples).\n\n",
        p.ns.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
        p.replicates,
        kind.report.bootstrap
    );
    let own = |ids: &CurveIds| {
        let (h, m) = (ids.heads.to_string(), ids.atoms.to_string());
        vec![
            ids.setting.clone(),
            ids.truth.clone(),
            h,
            m,
            ids.method.clone(),
        ]
    };
    s += &rate_table(
        &["setting", "truth", "H", "m", "method"],
        kind.report.target_loss,
        rates.iter().map(|(ids, r)| (own(ids), r)),
    );
    s += "\nFor a truth inside the shared families, THEORY.md §5 predicts a Voronoi-loss slope of about \
          −1/2 for every method when m = 1; when m ≥ 2, about −1/2 for replora and hora but a slope \
          drifting toward 0 for lora; and about −1/2 for the regression error throughout. The table \
          reports what the fits gave, whether or not it agrees.\n\n";
    s += "## Figures\n\n![Voronoi loss](voronoi.png)\n\n![regression error](regression.png)\n\n";
    if heads {
        s += "![slope vs heads](heads.png)\n\n";
    }
    s += "Tables: `metrics.csv` (one row per fit), `curves.csv` (means and bands), `rates.csv` (slopes).\n\n";
    s
}

/// One panel per setting paired with a reference: per method, the median over pairs of the
/// Voronoi-loss ratio to the reference with its quartiles as a band, and 1 for scale.
fn paired_panels(rows: &[PairedRow], color: &dyn Fn(&str) -> RGBColor) -> Vec<Panel> {
    let mut settings: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !settings.contains(&(&r.setting, &r.reference)) {
            settings.push((&r.setting, &r.reference));
        }
    }
    settings
        .iter()
        .map(|&(setting, reference)| {
            let mine: Vec<&PairedRow> = rows.iter().filter(|r| r.setting == setting).collect();
            let mut methods: Vec<&str> = Vec::new();
            for r in &mine {
                if !methods.contains(&r.method.as_str()) {
                    methods.push(&r.method);
                }
            }
            let mut curves: Vec<Curve> = methods
                .iter()
                .map(|m| {
                    let mut c = Curve::new(*m, color(m));
                    for r in mine.iter().filter(|r| r.method == *m) {
                        c.points.push((r.n as f64, r.ratio_median));
                        c.band.push((r.n as f64, r.ratio_q25, r.ratio_q75));
                    }
                    c
                })
                .collect();
            let mut one = Curve::new("", GREY);
            one.dashed = true;
            one.markers = false;
            one.points = mine.iter().map(|r| (r.n as f64, 1.0)).collect();
            one.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            one.points.dedup();
            curves.push(one);
            Panel {
                title: format!("{setting} against {reference} (same draws)"),
                x: Axis::new("sample size n", Scale::Log10),
                y: Axis::new("Voronoi loss ratio (median, quartiles)", Scale::Log10),
                curves,
                legend: SeriesLabelPosition::UpperRight,
            }
        })
        .collect()
}

fn paired_markdown(rows: &[PairedRow]) -> String {
    let mut s = String::from(
        "## Paired settings\n\nSettings that share their draws (`draws` in the experiment file) see \
         the same truth, the same samples and the same starts, so each fit is paired with the \
         reference setting's fit of the same method, n and replicate, and every difference is the \
         estimator's. Ratio: this setting's Voronoi loss over the reference's. Table: \
         `paired.csv`; figure: `paired.png`.\n\n![paired](paired.png)\n\n",
    );
    let header = [
        "setting",
        "reference",
        "method",
        "n",
        "pairs",
        "identical",
        "loss lower",
        "loss ratio: median [quartiles]",
        "ratio of means",
        "objective lower",
        "objective change (median, relative)",
    ];
    let pct = |v: f64| format!("{:.0}%", 100.0 * v);
    let table = rows.iter().map(|r| {
        vec![
            r.setting.clone(),
            r.reference.clone(),
            r.method.clone(),
            r.n.to_string(),
            r.pairs.to_string(),
            r.identical.to_string(),
            pct(r.lower_fraction),
            format!(
                "{} [{}, {}]",
                plot::number(r.ratio_median),
                plot::number(r.ratio_q25),
                plot::number(r.ratio_q75)
            ),
            plot::number(r.ratio_of_means),
            pct(r.objective_lower_fraction),
            format!("{:.1e}", r.objective_rel_diff_median),
        ]
    });
    s += &crate::markdown::table(&header, table);
    s += "\n";
    s
}
