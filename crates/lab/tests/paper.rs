//! `hora paper` on the committed tables: every figure passes the checks a reader would make
//! (read from the layout's own coordinates), the checks catch what they are for, the files are
//! what a paper needs, and the tables carry the committed numbers.
use lab::paper::figure::{self, Axis, FigureSpec, Mark, Panel, Scale, Series, Style, Ticks};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn committed() -> Vec<FigureSpec> {
    lab::paper::figures(&root().join("results"), &root().join("experiments")).unwrap()
}

/// Every figure kind drawn from the committed tables: no legend over a mark or a band, no two
/// series of a panel alike, every tick at a measured value or a power of ten, titles and
/// legends inside their panels.
#[test]
fn every_committed_figure_passes_the_readers_checks() {
    let specs = committed();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "c2-rates",
        "c2-identifiability",
        "c3-accuracy",
        "c3-paired",
        "scaling",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for spec in &specs {
        let lay = figure::layout(spec).unwrap();
        let problems = figure::problems(spec, &lay);
        assert!(
            problems.is_empty(),
            "{}:\n{}",
            spec.name,
            problems.join("\n")
        );
        // Every point of the data lies inside its plotting area.
        for (p, pl) in spec.panels.iter().zip(&lay.panels) {
            for m in &pl.marks {
                if let Mark::Box(b) = m {
                    let (x, y) = ((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0);
                    assert!(
                        pl.plot.contains(x, y),
                        "{} / {}: a point outside",
                        spec.name,
                        p.title
                    );
                }
            }
        }
        assert!((lay.width - spec.width_in * 72.0).abs() < 1e-9);
    }
}

/// The fractions of C3 are ticked where they were run (0.5%, 1%, 2%, 4%), not at 0.00631.
#[test]
fn c3_is_ticked_at_the_fractions_run() {
    let spec = committed()
        .into_iter()
        .find(|s| s.name == "c3-accuracy")
        .unwrap();
    let lay = figure::layout(&spec).unwrap();
    let ticks: Vec<(f64, String)> = lay.panels[0]
        .x_ticks
        .iter()
        .map(|t| (t.value, t.label.clone()))
        .collect();
    assert_eq!(
        ticks,
        vec![
            (0.005, "0.5%".to_string()),
            (0.01, "1%".to_string()),
            (0.02, "2%".to_string()),
            (0.04, "4%".to_string())
        ]
    );
    // Every variant says what it is: lora at each rate, hora at each rank.
    let labels: Vec<&str> = spec.panels[0]
        .series
        .iter()
        .map(|s| s.label.as_str())
        .collect();
    assert!(labels.contains(&"lora (r = 8, lr 10^{−2})"), "{labels:?}");
    assert!(labels.contains(&"lora (r = 8, lr 3·10^{−3})"), "{labels:?}");
    assert!(
        labels.contains(&"hora (r = 13, lr 3·10^{−3})"),
        "{labels:?}"
    );
}

fn line(label: &str, style: Style, pts: Vec<(f64, f64)>) -> Series {
    let mut s = Series::new(label, style);
    s.points = pts;
    s
}

fn spec_of(series: Vec<Series>, ticks: Ticks) -> FigureSpec {
    FigureSpec {
        name: "test".into(),
        width_in: figure::ONE_COLUMN,
        row_height_in: 2.4,
        cols: 1,
        panels: vec![Panel {
            title: "t".into(),
            x: Axis::new("x", Scale::Log10, ticks),
            y: Axis::new("y", Scale::Linear, Ticks::Round),
            series,
            hlines: vec![],
        }],
        shared_legend: false,
    }
}

/// Data in every corner: the legend goes below the plotting area, where it covers nothing.
/// Data in one corner only: the legend goes inside, in a free corner.
#[test]
fn the_legend_goes_where_no_data_lies() {
    let xs: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];
    let full = spec_of(
        vec![
            line(
                "rising",
                Style::nth(0),
                xs.iter().map(|&x| (x, x.log10())).collect(),
            ),
            line(
                "falling",
                Style::nth(1),
                xs.iter().map(|&x| (x, 3.0 - x.log10())).collect(),
            ),
        ],
        Ticks::Decades,
    );
    let lay = figure::layout(&full).unwrap();
    let l = lay.panels[0].legend.as_ref().unwrap();
    assert!(!l.inside, "{l:?}");
    assert!(l.rect.y0 > lay.panels[0].plot.y1);
    assert!(figure::problems(&full, &lay).is_empty());

    let low = spec_of(
        vec![line(
            "low",
            Style::nth(0),
            vec![(1.0, 0.0), (10.0, 0.1), (1000.0, 0.0), (100.0, 3.0)],
        )],
        Ticks::Decades,
    );
    let lay = figure::layout(&low).unwrap();
    let l = lay.panels[0].legend.as_ref().unwrap();
    assert!(l.inside, "{l:?}");
    assert!(!lay.panels[0].marks.iter().any(|m| m.touches(&l.rect)));
}

/// The checks fail when they should: a legend moved onto the data, two series alike, a tick
/// off the measured values.
#[test]
fn the_checks_catch_a_covered_point_a_repeated_style_and_a_stray_tick() {
    let xs = [1.0, 10.0, 100.0];
    let spec = spec_of(
        vec![
            line("a", Style::nth(0), xs.iter().map(|&x| (x, 1.0)).collect()),
            line("b", Style::nth(0), xs.iter().map(|&x| (x, 2.0)).collect()),
        ],
        Ticks::Measured(vec![
            (1.0, "1".into()),
            (10.0, "10".into()),
            (100.0, "100".into()),
        ]),
    );
    let mut lay = figure::layout(&spec).unwrap();
    let said = figure::problems(&spec, &lay).join("\n");
    assert!(
        said.contains("`a` and `b` share colour, marker and dash"),
        "{said}"
    );
    // Put the legend on the first point and a tick at a value that was not measured.
    let pl = &mut lay.panels[0];
    let first = pl
        .marks
        .iter()
        .find_map(|m| match m {
            Mark::Box(b) => Some(*b),
            _ => None,
        })
        .unwrap();
    let l = pl.legend.as_mut().unwrap();
    let (w, h) = (l.rect.x1 - l.rect.x0, l.rect.y1 - l.rect.y0);
    l.rect = figure::Rect {
        x0: first.x0,
        y0: first.y0,
        x1: first.x0 + w,
        y1: first.y0 + h,
    };
    pl.x_ticks[1].value = 31.6;
    let said = figure::problems(&spec, &lay).join("\n");
    assert!(said.contains("the legend covers a mark"), "{said}");
    assert!(
        said.contains("a tick at 31.6 is neither measured"),
        "{said}"
    );
}

/// A band counts as data: a legend over the middle of a band is caught even where no line or
/// point lies.
#[test]
fn a_band_is_data_too() {
    let band = Mark::Band(vec![(0.0, 10.0, 50.0), (100.0, 10.0, 50.0)]);
    let inside = figure::Rect {
        x0: 40.0,
        y0: 20.0,
        x1: 60.0,
        y1: 30.0,
    };
    let above = figure::Rect {
        x0: 40.0,
        y0: 0.0,
        x1: 60.0,
        y1: 9.0,
    };
    assert!(band.touches(&inside));
    assert!(!band.touches(&above));
    let seg = Mark::Segment((0.0, 0.0), (100.0, 100.0));
    assert!(
        seg.touches(&inside)
            || seg.touches(&figure::Rect {
                x0: 45.0,
                y0: 45.0,
                x1: 55.0,
                y1: 55.0
            })
    );
    assert!(!seg.touches(&figure::Rect {
        x0: 60.0,
        y0: 0.0,
        x1: 100.0,
        y1: 30.0
    }));
}

/// `hora paper` writes a vector PDF with its font embedded and a 300-dpi PNG of the paper's
/// width per figure, and LaTeX (booktabs) and Markdown per table, whose numbers are the
/// committed ones.
#[test]
fn paper_writes_pdf_png_and_latex_from_the_committed_tables() {
    let out = tempfile::tempdir().unwrap();
    let w = lab::paper::write(
        &root().join("results"),
        &root().join("experiments"),
        out.path(),
        &[
            "c2-rates".to_string(),
            "scaling".to_string(),
            "c2-slopes".to_string(),
        ],
    )
    .unwrap();
    assert!(w.problems.is_empty(), "{:?}", w.problems);
    let pdf = std::fs::read(out.path().join("c2-rates.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let text = String::from_utf8_lossy(&pdf);
    assert!(
        text.contains("/FontFile2") && text.contains("DejaVu"),
        "the font is not embedded"
    );
    // 6.8 in at 300 dpi; 3.3 in for one column.
    for (name, px) in [("c2-rates", 2040u32), ("scaling", 990)] {
        let png = std::fs::read(out.path().join(format!("{name}.png"))).unwrap();
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        assert_eq!(width, px, "{name}");
    }
    let tex = std::fs::read_to_string(out.path().join("c2-slopes.tex")).unwrap();
    assert!(tex.contains("\\toprule") && tex.contains("\\midrule") && tex.contains("\\bottomrule"));
    // The committed slope of hora on the exact truth, as the table prints it.
    let rates =
        std::fs::read_to_string(root().join("results/rates-exact/paper/rates.csv")).unwrap();
    let hora = rates.lines().find(|l| l.contains(",hora-tanh,")).unwrap();
    let cols: Vec<f64> = hora
        .split(',')
        .skip(7)
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    let cell = format!("{:.2} [{:.2}, {:.2}]", cols[0], cols[1], cols[2]).replace('-', "$-$");
    assert!(tex.contains(&cell), "{cell} not in\n{tex}");
    assert!(out.path().join("c2-slopes.md").is_file());
    assert!(
        !out.path().join("c3-accuracy.pdf").exists(),
        "only the named ones"
    );
}
