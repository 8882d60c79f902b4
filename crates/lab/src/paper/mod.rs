//! `hora paper`: the paper's figures and tables, drawn from the committed tables only (never
//! from raw records, never refitting), into one folder (`results/paper/` by default).
//!
//! Figures (each as PDF with its font embedded, and as a 300-dpi PNG, at one or two columns'
//! width): the rate curves of C2 (`c2-rates`), the identifiability ratios (`c2-identifiability`),
//! C3's accuracy and paired differences (`c3-accuracy`, `c3-paired`), the kernel's seconds per fit
//! (`scaling`), and the Voronoi curves of every other experiment with rate tables, from its paper
//! profile or, lacking one, its largest (`<experiment>-voronoi`). Tables (LaTeX with booktabs, and Markdown, from the same cells): the
//! slopes with their intervals, R(ε), the paired C3 table and the parameter counts.
//! Layout, typography and the checks a reader would make are in [`figure`].
pub mod figure;
pub mod tables;
pub mod text;

use figure::{Axis, FigureSpec, Panel, Scale, Series, Style, Ticks};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A committed CSV table: its rows as column → text.
pub struct Csv {
    pub path: PathBuf,
    pub rows: Vec<BTreeMap<String, String>>,
}

impl Csv {
    pub fn read(path: &Path) -> anyhow::Result<Csv> {
        let mut r = csv::Reader::from_path(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {} (run `hora metric` for its profile first): {e}",
                path.display()
            )
        })?;
        let headers = r.headers()?.clone();
        let mut rows = Vec::new();
        for rec in r.records() {
            let rec = rec.map_err(|e| anyhow::anyhow!("cannot parse {}: {e}", path.display()))?;
            rows.push(
                headers
                    .iter()
                    .zip(rec.iter())
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect(),
            );
        }
        Ok(Csv {
            path: path.to_path_buf(),
            rows,
        })
    }
}

/// A cell as text ("" when the column is absent).
pub fn cell<'a>(row: &'a BTreeMap<String, String>, col: &str) -> &'a str {
    row.get(col).map(String::as_str).unwrap_or("")
}

/// A cell as a number (`None` when empty or not a number).
pub fn num(row: &BTreeMap<String, String>, col: &str) -> Option<f64> {
    cell(row, col)
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// The family a method name belongs to and the style index of that family, so one method has
/// one colour and marker in every figure.
fn family_index(method: &str) -> usize {
    let base = method.split(['-', ' ']).next().unwrap_or(method);
    match (base, method) {
        (_, m) if m.starts_with("head-only") => 4,
        (_, m) if m.starts_with("mh-lora") => 3,
        ("lora", _) => 0,
        ("hora", _) => 1,
        ("replora", _) => 2,
        ("full", _) => 6,
        ("control", m) if m.contains("linear") => 5,
        ("control", _) => 4,
        ("linear", _) => 5,
        ("tanh", _) => 4,
        _ => 6,
    }
}

/// A method's style: its family's colour and marker; a variant of the family (another rate,
/// rank, generator or search) takes the next dash pattern.
fn style_of(method: &str, variant: usize) -> Style {
    Style::nth(family_index(method)).variant(variant)
}

/// `3·10^{−3}` for 0.003, `10^{−2}` for 0.01, `1.5·10^{−4}` for 0.00015.
pub fn sci(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let k = v.abs().log10().floor() as i32;
    let m = v / 10f64.powi(k);
    let m = (m * 100.0).round() / 100.0;
    let pow = figure::power_of_ten(k);
    if (m - 1.0).abs() < 1e-9 {
        pow
    } else {
        let mant = format!("{m}");
        format!("{}·{pow}", text::minus(&mant))
    }
}

/// A slope with its interval, as `−0.71 [−0.78, −0.63]`.
fn slope_text(s: f64, lo: f64, hi: f64) -> String {
    text::minus(&format!("{s:.2} [{lo:.2}, {hi:.2}]"))
}

/// The ticks of a measured grid of fractions, labelled in percent.
fn percent_ticks(values: &[f64]) -> Ticks {
    Ticks::Measured(
        values
            .iter()
            .map(|&v| {
                let p = v * 100.0;
                let s = if (p - p.round()).abs() < 1e-9 {
                    format!("{}%", p.round())
                } else {
                    format!("{p}%")
                };
                (v, s)
            })
            .collect(),
    )
}

/// The distinct values of a text column, in order of first appearance.
pub fn first_seen<'a>(
    rows: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
    col: &str,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        let v = cell(r, col);
        if !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    }
    out
}

/// The distinct pairs of two text columns, in order of first appearance.
pub fn first_seen_pairs(
    rows: &[BTreeMap<String, String>],
    a: &str,
    b: &str,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in rows {
        let k = (cell(r, a).to_string(), cell(r, b).to_string());
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// A series' points `(x·d, y)` and error bars `(x·d, lo, hi)` from the columns `cols = [x, y,
/// lo, hi]` of `rows` (`d` sets methods side by side on a log axis).
fn dodged(series: &mut Series, rows: &[&BTreeMap<String, String>], d: f64, cols: [&str; 4]) {
    let [x, y, lo, hi] = cols;
    series.points = rows
        .iter()
        .filter_map(|r| Some((num(r, x)? * d, num(r, y)?)))
        .collect();
    series.errors = rows
        .iter()
        .filter_map(|r| Some((num(r, x)? * d, num(r, lo)?, num(r, hi)?)))
        .collect();
}

/// The distinct values of a numeric column, in ascending order.
fn distinct(rows: &[BTreeMap<String, String>], col: &str) -> Vec<f64> {
    let mut v: Vec<f64> = rows.iter().filter_map(|r| num(r, col)).collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// Voronoi-loss panels of a rates table: one per setting, a band and a mean line per method, the
/// slope and its interval in the legend.
fn rate_panels(
    curves: &Csv,
    rates: &Csv,
    title: &dyn Fn(&str) -> String,
    settings: Option<&[&str]>,
) -> Vec<Panel> {
    let order: Vec<String> = first_seen(&curves.rows, "setting")
        .into_iter()
        .filter(|s| settings.is_none_or(|only| only.contains(&s.as_str())))
        .collect();
    let mut panels = Vec::new();
    for setting in order {
        let rows: Vec<&BTreeMap<String, String>> = curves
            .rows
            .iter()
            .filter(|r| cell(r, "setting") == setting && cell(r, "loss") == "voronoi")
            .collect();
        let methods = first_seen(rows.iter().copied(), "method");
        let mut used: BTreeMap<usize, usize> = BTreeMap::new();
        let mut series = Vec::new();
        for m in &methods {
            let pts: Vec<&&BTreeMap<String, String>> =
                rows.iter().filter(|r| cell(r, "method") == m).collect();
            let rate = rates.rows.iter().find(|r| {
                cell(r, "setting") == setting
                    && (cell(r, "method") == m || !r.contains_key("method"))
            });
            let slope = rate.and_then(|r| {
                Some(slope_text(
                    num(r, "slope")?,
                    num(r, "slope_lo")?,
                    num(r, "slope_hi")?,
                ))
            });
            let fam = family_index(m);
            let variant = used.entry(fam).or_insert(0);
            let mut s = Series::new(
                match slope {
                    Some(sl) => format!("{}: slope {sl}", display_method(m)),
                    None => display_method(m),
                },
                style_of(m, *variant),
            );
            *variant += 1;
            s.points = pts
                .iter()
                .filter_map(|r| Some((num(r, "n")?, num(r, "mean")?)))
                .collect();
            s.band = pts
                .iter()
                .filter_map(|r| Some((num(r, "n")?, num(r, "mean_lo")?, num(r, "mean_hi")?)))
                .collect();
            series.push(s);
        }
        // Powers of ten when the grid holds two of them; else the sizes run, as written.
        let ns = distinct(&rows.iter().map(|r| (*r).clone()).collect::<Vec<_>>(), "n");
        let powers = ns
            .iter()
            .filter(|n| (n.log10() - n.log10().round()).abs() < 1e-9)
            .count();
        let x_ticks = if powers >= 2 {
            Ticks::Decades
        } else {
            Ticks::Measured(ns.iter().map(|&n| (n, plain_number(n))).collect())
        };
        panels.push(Panel {
            title: title(&setting),
            x: Axis::new("sample size n", Scale::Log10, x_ticks),
            y: Axis::new(
                "Voronoi loss D (mean, 95% band)",
                Scale::Log10,
                Ticks::Decades,
            ),
            series,
            hlines: vec![],
        });
    }
    panels
}

/// How a simulator method reads in a legend: `replora-tanh` → `replora (tanh)`.
fn display_method(m: &str) -> String {
    let (name, rest) = m.split_once(", ").map_or((m, None), |(a, b)| (a, Some(b)));
    let mut out = name.to_string();
    for g in ["tanh", "identity", "linear"] {
        if let Some(base) = name.strip_suffix(&format!("-{g}")) {
            out = format!("{base} ({g})");
        }
    }
    match rest {
        Some(r) => format!("{out}, {r}"),
        None => out,
    }
}

/// The C3 methods' labels, from the experiment file: each says its rank and learning rate
/// (`lora (r = 8, lr 10^{−2})`), so a variant is never mistaken for its family.
fn finetune_labels(experiments: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let path = experiments.join("finetune-lowdata.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let doc: toml::Table = toml::from_str(&text)?;
    let get = |t: &toml::Table, path: &[&str]| -> Option<toml::Value> {
        let mut cur = t.get(path[0])?.clone();
        for k in &path[1..] {
            cur = cur.as_table()?.get(*k)?.clone();
        }
        Some(cur)
    };
    let rank = get(&doc, &["train", "rank"])
        .and_then(|v| v.as_integer())
        .unwrap_or(8);
    let mut out = BTreeMap::new();
    let lrs = get(&doc, &["profiles", "paper", "lr"])
        .and_then(|v| v.as_table().cloned())
        .unwrap_or_default();
    for (name, lr) in lrs {
        let lr = lr.as_float().unwrap_or(f64::NAN);
        let method = get(&doc, &["variants", &name, "method"])
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| name.clone());
        let r = get(&doc, &["variants", &name, "rank"])
            .and_then(|v| v.as_integer())
            .unwrap_or(rank);
        let label = match method.as_str() {
            "head-only" => format!("head-only (linear probe, lr {})", sci(lr)),
            "full" => format!("full fine-tuning (lr {})", sci(lr)),
            m => format!("{m} (r = {r}, lr {})", sci(lr)),
        };
        out.insert(name, label);
    }
    Ok(out)
}

/// The paper's figures, from the committed tables under `results`.
pub fn figures(results: &Path, experiments: &Path) -> anyhow::Result<Vec<FigureSpec>> {
    let mut out = Vec::new();
    let read = |e: &str, f: &str| Csv::read(&results.join(e).join("paper").join(f));

    // C2: the rate curves, exact and over-specified.
    let (ec, er) = (
        read("rates-exact", "curves.csv")?,
        read("rates-exact", "rates.csv")?,
    );
    let (oc, or) = (
        read("rates-overspecified", "curves.csv")?,
        read("rates-overspecified", "rates.csv")?,
    );
    let mut panels = rate_panels(&ec, &er, &|s| format!("m = 1 (exact), {s}"), None);
    panels.extend(rate_panels(
        &oc,
        &or,
        &|s| format!("m = 2 (over-specified), {s}"),
        None,
    ));
    out.push(FigureSpec {
        name: "c2-rates".into(),
        width_in: figure::TWO_COLUMNS,
        row_height_in: 2.3,
        cols: 3,
        panels,
        shared_legend: false,
    });

    // C2 at its root: R(ε) per family, exact and over-specified.
    let ratios = read("identifiability", "ratios.csv")?;
    let eps = distinct(&ratios.rows, "epsilon");
    let mut panels = Vec::new();
    // One style per family across both panels (the legend is shared).
    let mut used: BTreeMap<usize, usize> = BTreeMap::new();
    let mut assigned: BTreeMap<String, Style> = BTreeMap::new();
    for (setting, title) in [
        ("exact", "exactly specified (m = 1)"),
        (
            "overspecified",
            "over-specified (m = 2); hollow: still falling",
        ),
    ] {
        let mut fams: Vec<String> = Vec::new();
        // The families at the default search, and the longer searches of the over-specified
        // ones; the other variants (no box, self-attention) are in the table.
        for r in ratios.rows.iter().filter(|r| cell(r, "setting") == setting) {
            let f = cell(r, "family").to_string();
            let shown = !f.contains(", ") || f.ends_with(", long search");
            if shown && !fams.contains(&f) {
                fams.push(f);
            }
        }
        let mut series = Vec::new();
        for f in fams {
            let rows: Vec<&BTreeMap<String, String>> = ratios
                .rows
                .iter()
                .filter(|r| cell(r, "setting") == setting && cell(r, "family") == f)
                .filter(|r| num(r, "best_ratio").is_some())
                .collect();
            let style = *assigned.entry(f.clone()).or_insert_with(|| {
                let variant = used.entry(family_index(&f)).or_insert(0);
                *variant += 1;
                style_of(&f, *variant - 1)
            });
            let mut s = Series::new(
                if f.ends_with(", long search") {
                    format!("{} (rounds ×4)", display_method(&f))
                } else {
                    display_method(&f)
                },
                style,
            );
            s.points = rows
                .iter()
                .map(|r| {
                    (
                        num(r, "epsilon").unwrap_or(f64::NAN),
                        num(r, "best_ratio").unwrap_or(f64::NAN).max(RATIO_FLOOR),
                    )
                })
                .collect();
            s.hollow = rows
                .iter()
                .map(|r| cell(r, "upper_bound") == "true")
                .collect();
            series.push(s);
        }
        panels.push(Panel {
            title: title.to_string(),
            x: Axis::new(
                "ε, the Voronoi loss D held fixed",
                Scale::Log10,
                Ticks::Measured(eps.iter().map(|&e| (e, plain_number(e))).collect()),
            ),
            y: Axis::new(
                "smallest R(ε) = ‖f − f*‖ / D found",
                Scale::Log10,
                Ticks::Decades,
            ),
            series,
            hlines: vec![],
        });
    }
    out.push(FigureSpec {
        name: "c2-identifiability".into(),
        width_in: figure::TWO_COLUMNS,
        row_height_in: 2.6,
        cols: 2,
        panels,
        shared_legend: true,
    });

    // C3: accuracy and paired differences against the training fraction.
    let labels = finetune_labels(experiments)?;
    let acc = read("finetune-lowdata", "accuracy.csv")?;
    let fractions = distinct(&acc.rows, "train_fraction");
    let methods = first_seen(&acc.rows, "method");
    let label = |m: &str| labels.get(m).cloned().unwrap_or_else(|| m.to_string());
    let styles = finetune_styles(&methods);
    // The training split's size, from the committed split (its list of training indices).
    let split = results.join("finetune-lowdata").join("split.json");
    let train_size = std::fs::read(&split)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("train").and_then(|t| t.as_array()).map(Vec::len))
        .ok_or_else(|| anyhow::anyhow!("cannot read the training split of {}", split.display()))?;
    let fraction_axis = format!(
        "training fraction (share of the {} training tweets)",
        thousands(train_size)
    );
    // Methods side by side about each fraction, so their bars do not hide one another.
    let dodge = |k: usize, n: usize| 10f64.powf(0.018 * (k as f64 - (n as f64 - 1.0) / 2.0));
    let mut series = Vec::new();
    for (k, m) in methods.iter().enumerate() {
        let rows: Vec<&BTreeMap<String, String>> =
            acc.rows.iter().filter(|r| cell(r, "method") == m).collect();
        let mut s = Series::new(label(m), styles[k]);
        dodged(
            &mut s,
            &rows,
            dodge(k, methods.len()),
            [
                "train_fraction",
                "accuracy_mean",
                "accuracy_min",
                "accuracy_max",
            ],
        );
        series.push(s);
    }
    out.push(FigureSpec {
        name: "c3-accuracy".into(),
        width_in: figure::TWO_COLUMNS,
        row_height_in: 3.0,
        cols: 1,
        shared_legend: false,
        panels: vec![Panel {
            title: "test accuracy: mean over 5 seeds, bars from the lowest to the highest seed"
                .into(),
            x: Axis::new(&fraction_axis, Scale::Log10, percent_ticks(&fractions)),
            y: Axis::new("test accuracy", Scale::Linear, Ticks::Round),
            series,
            hlines: vec![],
        }],
    });

    let paired = read("finetune-lowdata", "paired.csv")?;
    let reference = C3_REFERENCE;
    let against = paired_against(&paired, reference);
    let shown: Vec<&String> = methods.iter().filter(|m| *m != reference).collect();
    let mut series = Vec::new();
    for (k, m) in shown.iter().enumerate() {
        let rows: Vec<&BTreeMap<String, String>> = against
            .iter()
            .copied()
            .filter(|r| cell(r, "method") == *m)
            .collect();
        let idx = methods.iter().position(|x| x == *m).unwrap_or(0);
        let mut s = Series::new(label(m), styles[idx]);
        s.line = false;
        dodged(
            &mut s,
            &rows,
            dodge(k, shown.len()),
            [
                "train_fraction",
                "accuracy_diff",
                "accuracy_diff_lo",
                "accuracy_diff_hi",
            ],
        );
        series.push(s);
    }
    let mut y = Axis::new(
        "test accuracy minus lora's at lr 0.003",
        Scale::Linear,
        Ticks::Round,
    );
    y.include = vec![0.0];
    out.push(FigureSpec {
        name: "c3-paired".into(),
        width_in: figure::TWO_COLUMNS,
        row_height_in: 3.0,
        cols: 1,
        shared_legend: false,
        panels: vec![Panel {
            title: format!(
                "paired difference against {} (mean over 5 seeds, 95% t-interval)",
                label(reference)
            ),
            x: Axis::new(&fraction_axis, Scale::Log10, percent_ticks(&fractions)),
            y,
            series,
            hlines: vec![0.0],
        }],
    });

    // The kernel: seconds per complete fit against n.
    let timing = read("scaling", "timing.csv")?;
    let mut series = Vec::new();
    let keys = first_seen_pairs(&timing.rows, "setting", "method");
    for (setting, method) in &keys {
        let rows: Vec<&BTreeMap<String, String>> = timing
            .rows
            .iter()
            .filter(|r| cell(r, "setting") == setting && cell(r, "method") == method)
            .collect();
        let variant = usize::from(setting != "exact");
        let mut s = Series::new(
            format!("{}, {setting}", display_method(method)),
            style_of(method, variant),
        );
        dodged(
            &mut s,
            &rows,
            1.0,
            ["n", "seconds_median", "seconds_min", "seconds_max"],
        );
        series.push(s);
    }
    out.push(FigureSpec {
        name: "scaling".into(),
        width_in: figure::ONE_COLUMN,
        row_height_in: 2.6,
        cols: 1,
        shared_legend: false,
        panels: vec![Panel {
            title: "one complete fit, one thread (median, min–max)".into(),
            x: Axis::new("sample size n", Scale::Log10, Ticks::Decades),
            y: Axis::new("seconds per fit", Scale::Log10, Ticks::Decades),
            series,
            hlines: vec![],
        }],
    });

    // Every other experiment with rate tables: the Voronoi curves of its paper profile, or of
    // its largest profile when it has no paper profile (named in the title).
    let taken = ["rates-exact", "rates-overspecified", "scaling"];
    for e in crate::experiment::available(experiments) {
        if taken.contains(&e.as_str()) {
            continue;
        }
        let has = |p: &str| {
            let dir = results.join(&e).join(p);
            dir.join("curves.csv").is_file() && dir.join("rates.csv").is_file()
        };
        let Some(profile) = ["paper", "medium", "quick"].into_iter().find(|p| has(p)) else {
            continue;
        };
        let at = |f: &str| Csv::read(&results.join(&e).join(profile).join(f));
        let (c, r) = (at("curves.csv")?, at("rates.csv")?);
        let title = |s: &str| match profile {
            "paper" => format!("{e}: {s}"),
            p => format!("{e} ({p} profile): {s}"),
        };
        let panels = rate_panels(&c, &r, &title, None);
        // Three panels in one row (their legends wrap below them), otherwise two a row.
        let cols = if panels.len() == 3 {
            3
        } else {
            panels.len().clamp(1, 2)
        };
        out.push(FigureSpec {
            name: format!("{e}-voronoi"),
            width_in: if panels.len() == 1 {
                figure::ONE_COLUMN
            } else {
                figure::TWO_COLUMNS
            },
            row_height_in: 2.4,
            cols,
            panels,
            shared_legend: false,
        });
    }
    Ok(out)
}

/// 30526 as `30,526`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The reference of C3's pre-registered comparison: lora at the rate that trains (3e-3).
pub const C3_REFERENCE: &str = "lora-3e-3";

/// The rows of a `paired.csv` taken against `reference`.
pub fn paired_against<'a>(paired: &'a Csv, reference: &str) -> Vec<&'a BTreeMap<String, String>> {
    paired
        .rows
        .iter()
        .filter(|r| cell(r, "against") == reference)
        .collect()
}

/// R below this is drawn at it (a flat set's R is rounding, about 10⁻¹⁶/ε).
pub const RATIO_FLOOR: f64 = 1e-17;

/// A measured grid value as written in the experiment (0.003, 0.3).
fn plain_number(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('e') {
        sci(v)
    } else {
        s
    }
}

/// C3's styles: each family its colour and marker, its variants the next dash patterns.
fn finetune_styles(methods: &[String]) -> Vec<Style> {
    let mut used: BTreeMap<usize, usize> = BTreeMap::new();
    methods
        .iter()
        .map(|m| {
            let fam = family_index(m);
            let v = used.entry(fam).or_insert(0);
            let s = style_of(m, *v);
            *v += 1;
            s
        })
        .collect()
}

/// What `hora paper` wrote.
pub struct Written {
    pub files: Vec<PathBuf>,
    /// Problems the figure checks found (none when the figures are sound).
    pub problems: Vec<String>,
}

/// Draw every figure (or those named in `only`) and write every table into `out`.
pub fn write(
    results: &Path,
    experiments: &Path,
    out: &Path,
    only: &[String],
) -> anyhow::Result<Written> {
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let specs = figures(results, experiments)?;
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    for o in only {
        if !names.contains(o) && !tables::NAMES.contains(&o.as_str()) {
            return Err(crate::LabError::Usage(format!(
                "unknown figure or table `{o}` (figures: {}; tables: {})",
                names.join(", "),
                tables::NAMES.join(", ")
            ))
            .into());
        }
    }
    let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for spec in specs.iter().filter(|s| wanted(&s.name)) {
        let (lay, _svg, png, pdf) = figure::render(spec)?;
        problems.extend(figure::problems(spec, &lay));
        for (ext, bytes) in [("pdf", pdf.as_slice()), ("png", png.as_slice())] {
            let path = out.join(format!("{}.{ext}", spec.name));
            fsio::write_atomic(&path, bytes)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            files.push(path);
        }
    }
    for (name, table) in tables::all(results, experiments)? {
        if !wanted(name) {
            continue;
        }
        for (ext, text) in [("tex", table.latex()), ("md", table.markdown())] {
            let path = out.join(format!("{name}.{ext}"));
            fsio::write_atomic(&path, text.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            files.push(path);
        }
    }
    Ok(Written { files, problems })
}
