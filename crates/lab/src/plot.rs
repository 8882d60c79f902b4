//! Figures: panels of curves (mean line, 95% band, fitted dashed line, error bars) on linear or
//! log axes, saved as PNG and SVG with the DejaVu Sans font shipped in `crates/lab/assets`.
//!
//! Log axes are drawn as linear axes over log-transformed data with labels transformed back:
//! one code path for every scale, and straight power-law reference lines.
use anyhow::anyhow;
use plotters::chart::SeriesAnno;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The one font of every figure (DejaVu Sans, from Debian's fonts-dejavu-core).
pub(crate) static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Register the shipped font as "sans-serif" (once per process).
pub fn ensure_font() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "the shipped font assets/DejaVuSans.ttf does not load".to_string())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Tick labels for an axis: on log axes, whole or half powers once the range allows, so ticks
/// fall on 10, 31.6, 100, ... instead of arbitrary points.
fn label_count(scale: Scale, r: &std::ops::Range<f64>) -> usize {
    let span = r.end - r.start;
    match scale {
        Scale::Linear => 8,
        Scale::Log2 if span >= 1.0 => span.ceil() as usize + 1,
        _ if span >= 4.0 => span.ceil() as usize + 1,
        _ if span >= 1.0 => (2.0 * span).ceil() as usize + 1,
        _ => 6,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    Linear,
    Log10,
    Log2,
}

impl Scale {
    fn map(self, v: f64) -> Option<f64> {
        let t = match self {
            Scale::Linear => v,
            Scale::Log10 if v > 0.0 => v.log10(),
            Scale::Log2 if v > 0.0 => v.log2(),
            _ => return None,
        };
        t.is_finite().then_some(t)
    }
    fn label(self, t: f64) -> String {
        match self {
            Scale::Linear => number(t),
            Scale::Log10 => number(10f64.powf(t)),
            Scale::Log2 => number(2f64.powf(t)),
        }
    }
}

/// A number in at most three significant digits, scientific outside [1e-3, 1e6).
pub fn number(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{x:.1e}");
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

pub struct Axis {
    pub label: String,
    pub scale: Scale,
}

impl Axis {
    pub fn new(label: &str, scale: Scale) -> Self {
        Axis {
            label: label.into(),
            scale,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Curve {
    /// Legend text; empty for no legend entry.
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
    /// (x, lo, hi): a shaded band.
    pub band: Vec<(f64, f64, f64)>,
    /// (x, lo, mid, hi): vertical error bars.
    pub errors: Vec<(f64, f64, f64, f64)>,
    pub line: bool,
    pub dashed: bool,
    pub markers: bool,
}

impl Curve {
    pub fn new(label: impl Into<String>, color: RGBColor) -> Self {
        Curve {
            label: label.into(),
            color,
            points: vec![],
            band: vec![],
            errors: vec![],
            line: true,
            dashed: false,
            markers: true,
        }
    }
}

pub struct Panel {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub curves: Vec<Curve>,
    pub legend: SeriesLabelPosition,
}

/// Colours that stay distinct in print and for common colour blindness (Okabe–Ito).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(213, 94, 0),
    RGBColor(0, 114, 178),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];
pub const GREY: RGBColor = RGBColor(120, 120, 120);

/// Save `panels` in a grid of `cols` columns as `<stem>.png` and `<stem>.svg`.
pub fn save(stem: &Path, panels: &[Panel], cols: usize) -> anyhow::Result<Vec<PathBuf>> {
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let size = (620 * cols as u32, 460 * rows as u32);
    save_figure(stem, size, &Figure::Panels { panels, rows, cols })
}

/// One cell of a [`Grid`]: its colour and its lines of text.
pub type GridCell = (RGBColor, Vec<String>);

/// A table drawn as a figure: a title, column and row headings, and cells of one colour and a
/// few lines of text each (an empty cell: nothing ran there).
pub struct Grid {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<String>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<Option<GridCell>>>,
    /// What each colour means, in the order shown under the table.
    pub legend: Vec<(RGBColor, String)>,
}

/// Save `grid` as `<stem>.png` and `<stem>.svg`.
pub fn save_grid(stem: &Path, grid: &Grid) -> anyhow::Result<Vec<PathBuf>> {
    let size = (
        GRID_HEAD_W + GRID_CELL_W * grid.columns.len() as u32 + 20,
        GRID_TOP + GRID_CELL_H * grid.rows.len() as u32 + 70,
    );
    save_figure(stem, size, &Figure::Grid(grid))
}

const GRID_HEAD_W: u32 = 130;
const GRID_CELL_W: u32 = 215;
const GRID_CELL_H: u32 = 62;
const GRID_TOP: u32 = 80;

enum Figure<'a> {
    Panels {
        panels: &'a [Panel],
        rows: usize,
        cols: usize,
    },
    Grid(&'a Grid),
}

fn save_figure(stem: &Path, size: (u32, u32), figure: &Figure<'_>) -> anyhow::Result<Vec<PathBuf>> {
    ensure_font()?;
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    // Drawn in memory, then written with the workspace's one atomic write: a crash never leaves
    // half a figure, and a read-only folder gives a plain "cannot write <path>" error.
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        draw_figure(&root, figure)?;
        root.present()
            .map_err(|e| anyhow!("cannot draw {}: {e}", png.display()))?;
    }
    let mut png_bytes = Vec::new();
    {
        use image::ImageEncoder;
        image::codecs::png::PngEncoder::new(&mut png_bytes)
            .write_image(&pixels, size.0, size.1, image::ColorType::Rgb8)
            .map_err(|e| anyhow!("cannot encode {}: {e}", png.display()))?;
    }
    let mut svg_text = String::new();
    {
        let root = SVGBackend::with_string(&mut svg_text, size).into_drawing_area();
        draw_figure(&root, figure)?;
        root.present()
            .map_err(|e| anyhow!("cannot draw {}: {e}", svg.display()))?;
    }
    for (path, bytes) in [(&png, png_bytes.as_slice()), (&svg, svg_text.as_bytes())] {
        fsio::write_atomic(path, bytes)
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(vec![png, svg])
}

fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    figure: &Figure<'_>,
) -> anyhow::Result<()> {
    match figure {
        Figure::Panels { panels, rows, cols } => draw(root, panels, *rows, *cols),
        Figure::Grid(g) => draw_grid(root, g),
    }
}

fn draw_grid<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, g: &Grid) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let text = |size: f64| ("sans-serif", size).into_font().color(&BLACK);
    let px = |v: u32| v as i32;
    root.draw(&Text::new(g.title.clone(), (10, 12), text(17.0)))
        .map_err(err)?;
    for (c, name) in g.columns.iter().enumerate() {
        let x = px(GRID_HEAD_W + GRID_CELL_W * c as u32 + 6);
        root.draw(&Text::new(name.clone(), (x, px(GRID_TOP - 24)), text(14.0)))
            .map_err(err)?;
    }
    for (r, name) in g.rows.iter().enumerate() {
        let y = px(GRID_TOP + GRID_CELL_H * r as u32);
        root.draw(&Text::new(name.clone(), (10, y + 18), text(14.0)))
            .map_err(err)?;
        for c in 0..g.columns.len() {
            let x = px(GRID_HEAD_W + GRID_CELL_W * c as u32);
            let corners = [(x, y), (x + px(GRID_CELL_W) - 4, y + px(GRID_CELL_H) - 4)];
            match g
                .cells
                .get(r)
                .and_then(|row| row.get(c))
                .and_then(|v| v.as_ref())
            {
                Some((colour, lines)) => {
                    root.draw(&Rectangle::new(corners, colour.mix(0.35).filled()))
                        .map_err(err)?;
                    for (k, line) in lines.iter().enumerate() {
                        root.draw(&Text::new(
                            line.clone(),
                            (x + 6, y + 6 + 16 * k as i32),
                            text(13.0),
                        ))
                        .map_err(err)?;
                    }
                }
                None => {
                    root.draw(&Rectangle::new(corners, GREY.mix(0.6)))
                        .map_err(err)?;
                }
            }
        }
    }
    let y = px(GRID_TOP + GRID_CELL_H * g.rows.len() as u32 + 14);
    let mut x = 10;
    for (colour, name) in &g.legend {
        root.draw(&Rectangle::new(
            [(x, y), (x + 16, y + 16)],
            colour.mix(0.35).filled(),
        ))
        .map_err(err)?;
        root.draw(&Text::new(name.clone(), (x + 22, y + 1), text(13.0)))
            .map_err(err)?;
        x += 30 + 8 * name.chars().count() as i32;
    }
    Ok(())
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Panel],
    rows: usize,
    cols: usize,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, panel)?;
    }
    Ok(())
}

/// A range covering `values` with 5% padding (a unit range around a single value).
fn range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5)..(hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad)..(hi + pad)
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> anyhow::Result<()> {
    let (sx, sy) = (p.x.scale, p.y.scale);
    let pt = |x: f64, y: f64| Some((sx.map(x)?, sy.map(y)?));
    let curves: Vec<Curve> = p
        .curves
        .iter()
        .map(|c| Curve {
            points: c.points.iter().filter_map(|&(x, y)| pt(x, y)).collect(),
            band: c
                .band
                .iter()
                .filter_map(|&(x, lo, hi)| Some((sx.map(x)?, sy.map(lo)?, sy.map(hi)?)))
                .collect(),
            errors: c
                .errors
                .iter()
                .filter_map(|&(x, lo, mid, hi)| {
                    Some((sx.map(x)?, sy.map(lo)?, sy.map(mid)?, sy.map(hi)?))
                })
                .collect(),
            ..c.clone()
        })
        .collect();
    let xs = curves.iter().flat_map(|c| {
        c.points
            .iter()
            .map(|p| p.0)
            .chain(c.band.iter().map(|b| b.0))
            .chain(c.errors.iter().map(|e| e.0))
    });
    let ys = curves.iter().flat_map(|c| {
        c.points
            .iter()
            .map(|p| p.1)
            .chain(c.band.iter().flat_map(|b| [b.1, b.2]))
            .chain(c.errors.iter().flat_map(|e| [e.1, e.3]))
    });
    let (xr, yr) = (range(xs), range(ys));
    let (nx, ny) = (label_count(sx, &xr), label_count(sy, &yr));
    // A tick computed as lo + k·step lands a rounding error away from zero: label it 0.
    let (wx, wy) = (xr.end - xr.start, yr.end - yr.start);
    let snap = |t: f64, w: f64| if t.abs() < 1e-9 * w { 0.0 } else { t };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(xr, yr)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(p.x.label.as_str())
        .y_desc(p.y.label.as_str())
        .x_labels(nx)
        .y_labels(ny)
        .x_label_formatter(&|v| sx.label(snap(*v, wx)))
        .y_label_formatter(&|v| sy.label(snap(*v, wy)))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let mut legend = false;
    for c in &curves {
        let color = c.color;
        if c.band.len() >= 2 {
            let mut poly: Vec<(f64, f64)> = c.band.iter().map(|&(x, _, hi)| (x, hi)).collect();
            poly.extend(c.band.iter().rev().map(|&(x, lo, _)| (x, lo)));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    poly,
                    color.mix(0.18).filled(),
                )))
                .map_err(err)?;
        }
        let style = color.stroke_width(2);
        let has_line = c.line && c.points.len() >= 2;
        let has_errors = !c.errors.is_empty();
        let has_markers = c.markers && !c.points.is_empty();
        // The legend entry goes on the first element drawn: line, else error bars, else markers.
        let labelled = !c.label.is_empty();
        let (dashed, label) = (c.dashed, c.label.clone());
        let add_label = |a: &mut SeriesAnno<'_, DB>| {
            a.label(label.clone()).legend(move |(x, y)| {
                let len = if dashed { 8 } else { 20 };
                PathElement::new(vec![(x, y), (x + len, y)], color.stroke_width(2))
            });
        };
        if has_line {
            let a = if c.dashed {
                chart
                    .draw_series(DashedLineSeries::new(c.points.clone(), 9, 6, style))
                    .map_err(err)?
            } else {
                chart
                    .draw_series(LineSeries::new(c.points.clone(), style))
                    .map_err(err)?
            };
            if labelled {
                add_label(a);
            }
        }
        if has_errors {
            let bars = c
                .errors
                .iter()
                .map(|&(x, lo, mid, hi)| ErrorBar::new_vertical(x, lo, mid, hi, style, 8));
            let a = chart.draw_series(bars).map_err(err)?;
            if labelled && !has_line {
                add_label(a);
            }
        }
        if has_markers {
            let a = chart
                .draw_series(c.points.iter().map(|&q| Circle::new(q, 3, color.filled())))
                .map_err(err)?;
            if labelled && !has_line && !has_errors {
                add_label(a);
            }
        }
        legend |= labelled && (has_line || has_errors || has_markers);
    }
    if legend {
        chart
            .configure_series_labels()
            .position(p.legend.clone())
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1000.0), "1000");
        assert_eq!(number(316.2277), "316");
        assert_eq!(number(0.0316), "0.0316");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(1e-4), "1.0e-4");
    }

    #[test]
    fn draws_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Curve::new("hora-tanh: slope −0.50", PALETTE[0]);
        c.points = vec![(100.0, 0.1), (1000.0, 0.03), (10000.0, 0.01)];
        c.band = c
            .points
            .iter()
            .map(|&(x, y)| (x, 0.8 * y, 1.2 * y))
            .collect();
        let panel = Panel {
            title: "test".into(),
            x: Axis::new("n", Scale::Log10),
            y: Axis::new("loss", Scale::Log10),
            curves: vec![c],
            legend: SeriesLabelPosition::UpperRight,
        };
        let files = save(&dir.path().join("fig"), &[panel], 2).unwrap();
        for f in files {
            assert!(
                std::fs::metadata(&f).unwrap().len() > 1000,
                "{}",
                f.display()
            );
        }
    }
}
