//! `hora reproduce`: compare the tables of a fresh run with the committed ones.
//!
//! Every `.csv` table of the committed profile folder is compared with the fresh run's: byte for
//! byte first; when the bytes differ, cell by cell (rows in order), giving the largest relative
//! difference per numeric column and naming any text cell that differs. Wherever a committed
//! table has a column `X` with an interval `X_lo`, `X_hi` (a slope and its bootstrap interval in
//! `rates.csv`, a mean and its band in `curves.csv`), the fresh `X` is checked against the
//! committed interval. Columns a kind computes from per-start logs ([`LogCoverage`], named by
//! the kind: `Kind::log_coverage`) are set aside in rows where the committed records logged
//! fewer starts than the fresh run.
use crate::error::LabError;
use anyhow::Context;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The largest relative difference of one numeric column, `|a − b| / max(|a|, |b|)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDiff {
    pub column: String,
    pub max_rel: f64,
}

/// How one table compares.
#[derive(Clone, Debug, PartialEq)]
pub enum TableStatus {
    Identical,
    /// Same shape, different values: per numeric column that differs, its largest relative
    /// difference; text cells that differ, as `column (row k): committed → fresh`.
    Differs {
        columns: Vec<ColumnDiff>,
        text: Vec<String>,
        /// Rows whose [`LogCoverage`] columns were left out: the committed records logged
        /// fewer starts than the fresh run.
        fuller_rows: usize,
    },
    /// Identical but for the [`LogCoverage`] columns of `rows` rows, where the fresh run's
    /// records log starts that the committed ones (written before starts were logged) lack.
    Fuller {
        rows: usize,
        count: String,
    },
    /// Different header or number of rows.
    Shape(String),
    /// The fresh run has no such table.
    MissingFresh,
    /// Wall-clock times ([`MACHINE_DEPENDENT`]): shown, never a mismatch.
    MachineDependent,
}

/// Tables that hold wall-clock times: they differ between machines and runs by nature.
pub const MACHINE_DEPENDENT: &[&str] = &["timing.csv"];

/// Columns of a table computed only over the fits whose record logs every start, with the
/// column that counts those fits.
pub struct LogCoverage {
    pub file: &'static str,
    pub count: &'static str,
    pub columns: &'static [&'static str],
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableComparison {
    pub file: String,
    pub status: TableStatus,
}

/// A fresh value against a committed interval.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalCheck {
    pub file: String,
    /// The row's identifying cells (its text columns and `n`).
    pub row: String,
    pub column: String,
    pub committed: f64,
    pub fresh: f64,
    pub lo: f64,
    pub hi: f64,
}

impl IntervalCheck {
    pub fn inside(&self) -> bool {
        self.fresh >= self.lo && self.fresh <= self.hi
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    pub tables: Vec<TableComparison>,
    pub intervals: Vec<IntervalCheck>,
}

impl Comparison {
    /// At least one table, and every table's status passes `ok`.
    fn all_tables(&self, ok: impl Fn(&TableStatus) -> bool) -> bool {
        !self.tables.is_empty() && self.tables.iter().all(|t| ok(&t.status))
    }

    /// Every table byte-identical (wall-clock tables aside).
    pub fn identical(&self) -> bool {
        self.all_tables(|s| matches!(s, TableStatus::Identical | TableStatus::MachineDependent))
    }

    /// Every table byte-identical (wall-clock tables aside) but for start-log columns that the
    /// fresh run fills where the committed records were written before starts were logged.
    pub fn identical_but_fuller(&self) -> bool {
        self.all_tables(|s| {
            matches!(
                s,
                TableStatus::Identical | TableStatus::MachineDependent | TableStatus::Fuller { .. }
            )
        })
    }

    /// Same tables, same shapes, and every fresh value inside its committed interval.
    pub fn within_intervals(&self) -> bool {
        self.all_tables(|s| {
            matches!(
                s,
                TableStatus::Identical
                    | TableStatus::Differs { .. }
                    | TableStatus::Fuller { .. }
                    | TableStatus::MachineDependent
            )
        }) && self.intervals.iter().all(IntervalCheck::inside)
    }

    /// A plain-text report: one line per table, the interval checks per table and column, and
    /// every check that fails.
    pub fn report(&self) -> String {
        let mut s = String::new();
        for t in &self.tables {
            match &t.status {
                TableStatus::Identical => writeln!(s, "  {}: byte-identical", t.file),
                TableStatus::MachineDependent => {
                    writeln!(s, "  {}: wall-clock times, not compared", t.file)
                }
                TableStatus::MissingFresh => {
                    writeln!(s, "  {}: not produced by the fresh run", t.file)
                }
                TableStatus::Shape(why) => writeln!(s, "  {}: different shape ({why})", t.file),
                TableStatus::Fuller { rows, count } => writeln!(
                    s,
                    "  {}: byte-identical but for the start-log columns of {}, which the fresh \
                     run fills (`{count}` lower in the committed table: its records were \
                     written before starts were logged)",
                    t.file,
                    plural(*rows, "row")
                ),
                TableStatus::Differs {
                    columns,
                    text,
                    fuller_rows,
                } => {
                    let cols = columns
                        .iter()
                        .map(|c| format!("{} {:.1e}", c.column, c.max_rel))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let _ = writeln!(
                        s,
                        "  {}: values differ; largest relative difference per column: {}",
                        t.file,
                        if cols.is_empty() { "none" } else { &cols }
                    );
                    for x in text.iter().take(5) {
                        let _ = writeln!(s, "    text differs: {x}");
                    }
                    if text.len() > 5 {
                        let _ = writeln!(s, "    ... and {} more text cells", text.len() - 5);
                    }
                    if *fuller_rows > 0 {
                        let _ = writeln!(
                            s,
                            "    (the start-log columns of {} are left out: the committed \
                             records logged fewer starts)",
                            plural(*fuller_rows, "row")
                        );
                    }
                    Ok(())
                }
            }
            .expect("writing to a String");
        }
        let mut groups: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
        for c in &self.intervals {
            let e = groups.entry((&c.file, &c.column)).or_default();
            e.0 += usize::from(c.inside());
            e.1 += 1;
        }
        for ((file, column), (inside, all)) in &groups {
            let _ = writeln!(
                s,
                "  {file}: {inside} of {all} fresh `{column}` inside the committed [{column}_lo, {column}_hi]"
            );
        }
        for c in self.intervals.iter().filter(|c| !c.inside()) {
            let _ = writeln!(
                s,
                "    outside: {} {} [{}]: fresh {:.4} (committed {:.4}, interval [{:.4}, {:.4}])",
                c.file, c.column, c.row, c.fresh, c.committed, c.lo, c.hi
            );
        }
        s
    }
}

/// `1 row`, `2 rows`.
fn plural(k: usize, noun: &str) -> String {
    format!("{k} {noun}{}", if k == 1 { "" } else { "s" })
}

struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn read_table(path: &Path) -> anyhow::Result<Table> {
    let what = || format!("reading the table {}", path.display());
    let mut r = csv::Reader::from_path(path).with_context(what)?;
    let header = r
        .headers()
        .with_context(what)?
        .iter()
        .map(String::from)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.map(|r| r.iter().map(String::from).collect()))
        .collect::<Result<Vec<Vec<String>>, _>>()
        .with_context(what)?;
    Ok(Table { header, rows })
}

fn number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

fn rel_diff(a: f64, b: f64) -> f64 {
    if a == b || (a.is_nan() && b.is_nan()) {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

fn compare_table(
    file: &str,
    committed: &Table,
    fresh: &Table,
    coverages: &[LogCoverage],
    out: &mut Comparison,
) -> TableStatus {
    if committed.header != fresh.header {
        return TableStatus::Shape(format!(
            "columns {} committed, {} fresh",
            committed.header.join(","),
            fresh.header.join(",")
        ));
    }
    if committed.rows.len() != fresh.rows.len() {
        return TableStatus::Shape(format!(
            "{} rows committed, {} fresh",
            committed.rows.len(),
            fresh.rows.len()
        ));
    }
    let h = &committed.header;
    let col = |name: &str| h.iter().position(|c| c == name);
    let intervals: Vec<(usize, usize, usize)> = h
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, col(&format!("{c}_lo"))?, col(&format!("{c}_hi"))?)))
        .collect();
    // The start-log columns of this table, if it has them all.
    let coverage = coverages.iter().find(|c| c.file == file).and_then(|c| {
        let cols = c
            .columns
            .iter()
            .map(|n| col(n))
            .collect::<Option<Vec<_>>>()?;
        Some((c.count, col(c.count)?, cols))
    });
    let mut max_rel = vec![0.0f64; h.len()];
    let mut text = Vec::new();
    let mut fuller_rows = 0;
    for (k, (a, b)) in committed.rows.iter().zip(&fresh.rows).enumerate() {
        let skip: &[usize] = match &coverage {
            Some((_, count, cols)) => match (number(&a[*count]), number(&b[*count])) {
                (Some(c), Some(f)) if c < f => {
                    fuller_rows += 1;
                    cols
                }
                _ => &[],
            },
            None => &[],
        };
        // A row is named by its text cells and its n.
        let label = a
            .iter()
            .zip(h)
            .filter(|(v, c)| c.as_str() == "n" || (number(v).is_none() && !v.is_empty()))
            .map(|(v, _)| v.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        for (j, (x, y)) in a.iter().zip(b).enumerate() {
            if skip.contains(&j) {
                continue;
            }
            match (number(x), number(y)) {
                (Some(u), Some(v)) => max_rel[j] = max_rel[j].max(rel_diff(u, v)),
                _ if x != y => text.push(format!("{} (row {}): {x} → {y}", h[j], k + 1)),
                _ => {}
            }
        }
        for &(j, lo, hi) in &intervals {
            if let (Some(c), Some(f), Some(lo), Some(hi)) =
                (number(&a[j]), number(&b[j]), number(&a[lo]), number(&a[hi]))
            {
                out.intervals.push(IntervalCheck {
                    file: file.to_string(),
                    row: label.clone(),
                    column: h[j].clone(),
                    committed: c,
                    fresh: f,
                    lo,
                    hi,
                });
            }
        }
    }
    let columns = h
        .iter()
        .zip(&max_rel)
        .filter(|(_, m)| **m > 0.0)
        .map(|(c, m)| ColumnDiff {
            column: c.clone(),
            max_rel: *m,
        })
        .collect::<Vec<_>>();
    match &coverage {
        Some((count, _, _)) if columns.is_empty() && text.is_empty() && fuller_rows > 0 => {
            TableStatus::Fuller {
                rows: fuller_rows,
                count: count.to_string(),
            }
        }
        _ => TableStatus::Differs {
            columns,
            text,
            fuller_rows,
        },
    }
}

/// The `.csv` tables of a committed profile folder, sorted; a user error when there are none
/// (`hint` says what to run instead).
pub fn committed_tables(committed: &Path, hint: &str) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<String> = match std::fs::read_dir(committed) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".csv"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("listing {}", committed.display())),
    };
    files.sort();
    if files.is_empty() {
        return Err(LabError::Usage(format!(
            "nothing committed to compare with: {} holds no tables{hint}",
            committed.display()
        ))
        .into());
    }
    Ok(files)
}

/// Compare every `.csv` table of `committed` with the same file in `fresh`.
pub fn compare_dirs(
    committed: &Path,
    fresh: &Path,
    coverages: &[LogCoverage],
) -> anyhow::Result<Comparison> {
    let files = committed_tables(committed, "")?;
    let mut out = Comparison::default();
    for file in files {
        let (c, f) = (committed.join(&file), fresh.join(&file));
        let status = if MACHINE_DEPENDENT.contains(&file.as_str()) {
            TableStatus::MachineDependent
        } else if !f.exists() {
            TableStatus::MissingFresh
        } else {
            let read =
                |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            if read(&c)? == read(&f)? {
                TableStatus::Identical
            } else {
                compare_table(
                    &file,
                    &read_table(&c)?,
                    &read_table(&f)?,
                    coverages,
                    &mut out,
                )
            }
        };
        out.tables.push(TableComparison { file, status });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::rates::ESTIMATOR_LOG_COVERAGE as COV;

    fn table(rows: &[&str]) -> Table {
        let mut it = rows
            .iter()
            .map(|r| r.split(',').map(String::from).collect());
        Table {
            header: it.next().unwrap(),
            rows: it.collect(),
        }
    }

    const HEADER: &str = "setting,method,n,fits,logged_fits,near_best_mean,flat_width_median,\
                          flat_wide_fraction,best_from_prior_fraction,voronoi_mean";

    #[test]
    fn start_log_columns_count_only_where_both_runs_logged_the_same_fits() {
        let committed = table(&[
            HEADER,
            "a,lora,100,2,0,,,,,0.5",
            "a,lora,1000,2,2,2.0,0.1,0.0,0.5,0.25",
        ]);
        // The fresh run logs every start: the first row's start-log columns fill in.
        let fresh = table(&[
            HEADER,
            "a,lora,100,2,2,1.5,0.2,0.5,0.0,0.5",
            "a,lora,1000,2,2,2.0,0.1,0.0,0.5,0.25",
        ]);
        let mut out = Comparison::default();
        let st = compare_table("estimator.csv", &committed, &fresh, COV, &mut out);
        assert_eq!(
            st,
            TableStatus::Fuller {
                rows: 1,
                count: "logged_fits".into()
            }
        );
        // The same difference in a table without the rule is a difference.
        let st = compare_table("other.csv", &committed, &fresh, COV, &mut out);
        assert!(
            matches!(st, TableStatus::Differs { fuller_rows: 0, .. }),
            "{st:?}"
        );
        // A loss that moved in a filled-in row is still reported, and so is a start-log
        // column where both runs logged the same fits.
        let moved = table(&[
            HEADER,
            "a,lora,100,2,2,1.5,0.2,0.5,0.0,0.6",
            "a,lora,1000,2,2,3.0,0.1,0.0,0.5,0.25",
        ]);
        match compare_table("estimator.csv", &committed, &moved, COV, &mut out) {
            TableStatus::Differs {
                columns,
                text,
                fuller_rows,
            } => {
                let names: Vec<&str> = columns.iter().map(|c| c.column.as_str()).collect();
                assert_eq!(names, ["near_best_mean", "voronoi_mean"]);
                assert!(text.is_empty(), "{text:?}");
                assert_eq!(fuller_rows, 1);
            }
            st => panic!("{st:?}"),
        }
        // Fewer logged fits in the fresh run is not a fuller run: compared as usual.
        let fewer = table(&[
            HEADER,
            "a,lora,100,2,0,,,,,0.5",
            "a,lora,1000,2,1,2.0,0.1,0.0,0.5,0.25",
        ]);
        assert!(matches!(
            compare_table("estimator.csv", &committed, &fewer, COV, &mut out),
            TableStatus::Differs { fuller_rows: 0, .. }
        ));
        let cmp = Comparison {
            tables: vec![
                TableComparison {
                    file: "estimator.csv".into(),
                    status: TableStatus::Fuller {
                        rows: 1,
                        count: "logged_fits".into(),
                    },
                },
                TableComparison {
                    file: "metrics.csv".into(),
                    status: TableStatus::Identical,
                },
            ],
            intervals: Vec::new(),
        };
        assert!(!cmp.identical());
        assert!(cmp.identical_but_fuller());
        assert!(cmp
            .report()
            .contains("byte-identical but for the start-log columns of 1 row,"));
    }
}
