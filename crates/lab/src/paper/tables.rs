//! The paper's tables, from the committed tables: each cell written once (with the figures'
//! markup: `^{…}` superscripts, typographic minus), rendered as LaTeX (booktabs) and Markdown.
use super::{cell, num, sci, Csv};
use std::path::Path;

/// The tables `hora paper` writes, by name.
pub const NAMES: [&str; 4] = ["c2-slopes", "c2-identifiability", "c3-paired", "c3-params"];

/// A table: a caption, a header and rows of cells.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    /// Columns aligned left (text) rather than right (numbers).
    pub left: usize,
    pub rows: Vec<Vec<String>>,
}

/// A cell's markup as LaTeX (text mode).
pub fn latex_cell(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '^' if it.peek() == Some(&'{') => {
                it.next();
                let inner: String = it.by_ref().take_while(|&d| d != '}').collect();
                out += &format!("\\textsuperscript{{{}}}", latex_cell(&inner));
            }
            '\u{2212}' => out += "$-$",
            '·' => out += "$\\cdot$",
            'ε' => out += "$\\varepsilon$",
            '≤' => out += "$\\leq$",
            '≈' => out += "$\\approx$",
            '–' => out += "--",
            '%' | '&' | '#' | '_' | '$' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A cell's markup as Markdown (HTML superscripts).
pub fn markdown_cell(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '^' && it.peek() == Some(&'{') {
            it.next();
            let inner: String = it.by_ref().take_while(|&d| d != '}').collect();
            out += &format!("<sup>{}</sup>", markdown_cell(&inner));
        } else if c == '|' {
            out += "\\|";
        } else {
            out.push(c);
        }
    }
    out
}

impl Table {
    pub fn latex(&self) -> String {
        let spec: String = (0..self.header.len())
            .map(|i| if i < self.left { 'l' } else { 'r' })
            .collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .map(|c| latex_cell(c))
                .collect::<Vec<_>>()
                .join(" & ")
                + " \\\\\n"
        };
        let mut out = String::from(
            "% Written by `hora paper` from the committed tables; needs \\usepackage{booktabs}.\n",
        );
        out += "\\begin{table}[t]\n\\centering\n\\small\n";
        out += &format!("\\caption{{{}}}\n", latex_cell(&self.caption));
        out += &format!("\\begin{{tabular}}{{{spec}}}\n\\toprule\n");
        out += &line(&self.header);
        out += "\\midrule\n";
        for r in &self.rows {
            out += &line(r);
        }
        out += "\\bottomrule\n\\end{tabular}\n\\end{table}\n";
        out
    }

    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| {
            format!(
                "| {} |\n",
                cells
                    .iter()
                    .map(|c| markdown_cell(c))
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        };
        let mut out = format!("{}\n\n", markdown_cell(&self.caption));
        out += &line(&self.header);
        out += &format!(
            "|{}|\n",
            (0..self.header.len())
                .map(|i| if i < self.left { "---" } else { "---:" })
                .collect::<Vec<_>>()
                .join("|")
        );
        for r in &self.rows {
            out += &line(r);
        }
        out
    }
}

fn interval(v: Option<f64>, lo: Option<f64>, hi: Option<f64>, digits: usize) -> String {
    match (v, lo, hi) {
        (Some(v), Some(lo), Some(hi)) => {
            super::text::minus(&format!("{v:.digits$} [{lo:.digits$}, {hi:.digits$}]"))
        }
        (Some(v), _, _) => super::text::minus(&format!("{v:.digits$}")),
        _ => "–".into(),
    }
}

/// Every table, by name.
pub fn all(results: &Path, experiments: &Path) -> anyhow::Result<Vec<(&'static str, Table)>> {
    let read = |e: &str, f: &str| Csv::read(&results.join(e).join("paper").join(f));
    let mut out = Vec::new();

    let mut rows = Vec::new();
    for (exp, m) in [("rates-exact", "1"), ("rates-overspecified", "2")] {
        for r in read(exp, "rates.csv")?.rows {
            let target = num(&r, "target_loss");
            let reach = match (num(&r, "n_at_target"), num(&r, "n_at_target_extrapolated")) {
                (Some(n), _) => format!("{}", n.round()),
                (None, Some(n)) => format!("≈{} (extrapolated)", sci(n)),
                _ => "–".into(),
            };
            rows.push(vec![
                format!("{} ({})", cell(&r, "setting"), exp),
                m.to_string(),
                cell(&r, "method").to_string(),
                interval(
                    num(&r, "slope"),
                    num(&r, "slope_lo"),
                    num(&r, "slope_hi"),
                    2,
                ),
                interval(
                    num(&r, "median_slope"),
                    num(&r, "median_slope_lo"),
                    num(&r, "median_slope_hi"),
                    2,
                ),
                interval(
                    num(&r, "regression_slope"),
                    num(&r, "regression_slope_lo"),
                    num(&r, "regression_slope_hi"),
                    2,
                ),
                match target {
                    Some(t) => format!("{reach} (D = {t})"),
                    None => reach,
                },
            ]);
        }
    }
    out.push((
        "c2-slopes",
        Table {
            caption: "Slopes of log D against log n (OLS, 95% bootstrap intervals over \
                      replicates), paper profiles, n = 10^{3}…10^{5}"
                .into(),
            header: [
                "truth (experiment)",
                "m",
                "method",
                "slope of mean D",
                "slope of median D",
                "slope of regression error",
                "n to reach D",
            ]
            .map(String::from)
            .to_vec(),
            left: 3,
            rows,
        },
    ));

    let ratios = read("identifiability", "ratios.csv")?;
    let mut eps = super::distinct(&ratios.rows, "epsilon");
    eps.reverse();
    let keys = super::first_seen_pairs(&ratios.rows, "family", "setting");
    let rows = keys
        .iter()
        .map(|(f, s)| {
            let mut row = vec![f.clone(), s.clone()];
            for e in &eps {
                let hit = ratios.rows.iter().find(|r| {
                    cell(r, "family") == f
                        && cell(r, "setting") == s
                        && num(r, "epsilon") == Some(*e)
                });
                row.push(
                    match hit.and_then(|r| num(r, "best_ratio").map(|v| (v, r))) {
                        Some((v, r)) if cell(r, "upper_bound") == "true" => format!("≤{}", sci(v)),
                        Some((v, _)) => sci(v),
                        None => "–".into(),
                    },
                );
            }
            row
        })
        .collect();
    let mut header = vec!["family".to_string(), "setting".to_string()];
    header.extend(eps.iter().map(|e| format!("ε = {e}")));
    out.push((
        "c2-identifiability",
        Table {
            caption: "Smallest R(ε) = ‖f − f*‖ / D found on D = ε (≤: the search was still \
                      falling when it stopped)"
                .into(),
            header,
            left: 2,
            rows,
        },
    ));

    let labels = super::finetune_labels(experiments)?;
    let label = |m: &str| labels.get(m).cloned().unwrap_or_else(|| m.to_string());
    let paired = read("finetune-lowdata", "paired.csv")?;
    let reference = super::C3_REFERENCE;
    let rows_of = super::paired_against(&paired, reference);
    let fractions = super::distinct(&paired.rows, "train_fraction");
    let methods = super::first_seen(rows_of.iter().copied(), "method");
    let rows = methods
        .iter()
        .map(|m| {
            let mut row = vec![label(m)];
            for f in &fractions {
                let hit = rows_of
                    .iter()
                    .find(|r| cell(r, "method") == m && num(r, "train_fraction") == Some(*f));
                row.push(match hit {
                    Some(r) => format!(
                        "{} ({}/{}/{})",
                        interval(
                            num(r, "accuracy_diff"),
                            num(r, "accuracy_diff_lo"),
                            num(r, "accuracy_diff_hi"),
                            3
                        ),
                        cell(r, "wins"),
                        cell(r, "ties"),
                        cell(r, "losses")
                    ),
                    None => "–".into(),
                });
            }
            row
        })
        .collect();
    let mut header = vec!["method".to_string()];
    header.extend(fractions.iter().map(|f| format!("{}%", f * 100.0)));
    out.push((
        "c3-paired",
        Table {
            caption: format!(
                "Paired difference in test accuracy against {} (mean over 5 seeds [95% \
                 t-interval], pairs won/tied/lost), by training fraction",
                label(reference)
            ),
            header,
            left: 1,
            rows,
        },
    ));

    let acc = read("finetune-lowdata", "accuracy.csv")?;
    let mut seen = Vec::new();
    let lora = acc
        .rows
        .iter()
        .find(|r| cell(r, "method") == "lora")
        .and_then(|r| num(r, "trainable_params"));
    let mut rows = Vec::new();
    for r in &acc.rows {
        let m = cell(r, "method").to_string();
        if seen.contains(&m) {
            continue;
        }
        seen.push(m.clone());
        let p = num(r, "trainable_params");
        rows.push(vec![
            label(&m),
            p.map_or("–".into(), |p| format!("{}", p as u64)),
            match (p, lora) {
                (Some(p), Some(l)) if l > 0.0 => format!("{:.2}", p / l),
                _ => "–".into(),
            },
        ]);
    }
    out.push((
        "c3-params",
        Table {
            caption: "Trainable parameters of each method on MiniLM (22.6M parameters; \
                      adapters on query and value of all 6 layers, the 3-class head included)"
                .into(),
            header: ["method", "trainable parameters", "relative to lora (r = 8)"]
                .map(String::from)
                .to_vec(),
            left: 1,
            rows,
        },
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_becomes_latex_and_markdown() {
        assert_eq!(
            latex_cell("3·10^{\u{2212}3} ≤ 5% a_b"),
            "3$\\cdot$10\\textsuperscript{$-$3} $\\leq$ 5\\% a\\_b"
        );
        assert_eq!(markdown_cell("10^{5} | x"), "10<sup>5</sup> \\| x");
    }

    #[test]
    fn a_table_renders_with_booktabs_rules() {
        let t = Table {
            caption: "c".into(),
            header: vec!["a".into(), "b".into()],
            left: 1,
            rows: vec![vec!["x".into(), "\u{2212}0.50".into()]],
        };
        let tex = t.latex();
        assert!(tex.contains("\\begin{tabular}{lr}\n\\toprule\na & b \\\\\n\\midrule\nx & $-$0.50 \\\\\n\\bottomrule"), "{tex}");
        assert_eq!(
            t.markdown(),
            "c\n\n| a | b |\n|---|---:|\n| x | \u{2212}0.50 |\n"
        );
    }
}
