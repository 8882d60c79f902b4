//! The paper's figures: a layout computed in points (1/72 in) from the data, then drawn at any
//! scale (SVG at 1 px = 1 pt, PNG at 300 dpi) and converted to PDF.
//!
//! Everything a reader checks is decided here from the drawing's own coordinates and kept in
//! the [`Layout`] (so the tests read it, not pixels):
//! - **ticks** at measured values ([`Ticks::Measured`]) or at powers of ten on a log axis, labelled
//!   `10³` with a real superscript;
//! - **styles**: a colour-blind-safe palette (Okabe–Ito without its yellow), one marker per
//!   colour, and a dash pattern once the colours run out, so no two series share all three;
//! - **legends**: each panel's legend goes to the first inside corner whose box no drawn mark
//!   (marker, line, band, error bar) touches, found from the marks' positions; when every corner
//!   is taken it goes below the panel, outside the plotting area.
use super::text::{self, Rich};
use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

/// Points per inch.
pub const PT: f64 = 72.0;
/// The PNG resolution.
pub const PNG_DPI: f64 = 300.0;
/// One column and two columns of a paper, in inches.
pub const ONE_COLUMN: f64 = 3.3;
pub const TWO_COLUMNS: f64 = 6.8;

/// Type sizes, in points.
const TICK_PT: f64 = 7.0;
const LABEL_PT: f64 = 8.0;
const TITLE_PT: f64 = 8.0;
const LEGEND_PT: f64 = 6.5;

/// Okabe–Ito's palette (`plot::PALETTE`) without its yellow, too light on white: vermillion,
/// blue, bluish green, reddish purple, orange, sky blue, black.
pub const COLORS: [RGBColor; 7] = {
    let p = crate::plot::PALETTE;
    [p[0], p[1], p[2], p[3], p[4], p[5], p[7]]
};
pub const GREY: RGBColor = RGBColor(110, 110, 110);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    TriangleDown,
    Cross,
    Plus,
    None,
}

const MARKERS: [Marker; 7] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
    Marker::TriangleDown,
    Marker::Cross,
    Marker::Plus,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dash {
    Solid,
    Dashed,
    Dotted,
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Style {
    pub color: RGBColor,
    pub marker: Marker,
    pub dash: Dash,
}

impl Style {
    /// The `i`-th style: colour and marker cycle together, the dash changes once the colours
    /// have all been used, so the first 21 styles are pairwise distinct.
    pub fn nth(i: usize) -> Style {
        Style {
            color: COLORS[i % COLORS.len()],
            marker: MARKERS[i % MARKERS.len()],
            dash: [Dash::Solid, Dash::Dashed, Dash::Dotted][(i / COLORS.len()) % 3],
        }
    }
    /// A grey reference line (no marker).
    pub fn reference() -> Style {
        Style {
            color: GREY,
            marker: Marker::None,
            dash: Dash::Dotted,
        }
    }
    /// What tells two series apart: colour, marker and, when a line is drawn, its dash (a
    /// series of markers alone shows no dash).
    pub fn key(&self, line: bool) -> ((u8, u8, u8), Marker, Option<Dash>) {
        (
            (self.color.0, self.color.1, self.color.2),
            self.marker,
            line.then_some(self.dash),
        )
    }
    /// The `v`-th variant of a style: the next dash pattern and, from the second variant on,
    /// another marker, so variants differ with or without a line.
    pub fn variant(self, v: usize) -> Style {
        let base = MARKERS.iter().position(|m| *m == self.marker).unwrap_or(0);
        Style {
            color: self.color,
            // 3 and 7 are coprime: the first seven variants have seven different markers.
            marker: MARKERS[(base + 3 * v) % MARKERS.len()],
            dash: [Dash::Solid, Dash::Dashed, Dash::Dotted][v % 3],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    Linear,
    Log10,
}

impl Scale {
    fn map(self, v: f64) -> Option<f64> {
        let t = match self {
            Scale::Linear => v,
            Scale::Log10 if v > 0.0 => v.log10(),
            Scale::Log10 => return None,
        };
        t.is_finite().then_some(t)
    }
}

/// Where an axis puts its ticks.
#[derive(Clone, Debug, PartialEq)]
pub enum Ticks {
    /// At these values (the measured grid: fractions, ε), each labelled by its own text.
    Measured(Vec<(f64, String)>),
    /// At the powers of ten inside the range (log axes), every `k`-th when there are many.
    Decades,
    /// At round values of a linear axis.
    Round,
}

#[derive(Clone, Debug)]
pub struct Axis {
    /// Rich text (`^{…}`, `_{…}`): what is measured, with its symbol.
    pub label: String,
    pub scale: Scale,
    pub ticks: Ticks,
    /// Values the range must include besides the data (a reference at 0).
    pub include: Vec<f64>,
}

impl Axis {
    pub fn new(label: &str, scale: Scale, ticks: Ticks) -> Axis {
        Axis {
            label: label.into(),
            scale,
            ticks,
            include: vec![],
        }
    }
}

/// One series of a panel.
#[derive(Clone, Debug)]
pub struct Series {
    /// Rich-text legend entry; empty for none.
    pub label: String,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
    pub line: bool,
    /// (x, lo, hi): a shaded band.
    pub band: Vec<(f64, f64, f64)>,
    /// (x, lo, hi): vertical error bars (a point sits at the series' own y).
    pub errors: Vec<(f64, f64, f64)>,
    /// Points drawn hollow (an upper bound, a search still falling).
    pub hollow: Vec<bool>,
}

impl Series {
    pub fn new(label: impl Into<String>, style: Style) -> Series {
        Series {
            label: label.into(),
            style,
            points: vec![],
            line: true,
            band: vec![],
            errors: vec![],
            hollow: vec![],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    /// Horizontal reference lines (y values), drawn thin and grey.
    pub hlines: Vec<f64>,
}

/// A figure: panels in a grid, at a paper width.
#[derive(Clone, Debug)]
pub struct FigureSpec {
    pub name: String,
    pub width_in: f64,
    /// Height of one row of panels (the plotting area and its axes), in inches.
    pub row_height_in: f64,
    pub cols: usize,
    pub panels: Vec<Panel>,
    /// One legend for all panels, below them (panels that show the same series).
    pub shared_legend: bool,
}

/// An axis-aligned rectangle in points, y downwards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Rect {
    pub fn intersects(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
    pub fn contains(&self, x: f64, y: f64) -> bool {
        (self.x0..=self.x1).contains(&x) && (self.y0..=self.y1).contains(&y)
    }
    fn inflate(&self, d: f64) -> Rect {
        Rect {
            x0: self.x0 - d,
            y0: self.y0 - d,
            x1: self.x1 + d,
            y1: self.y1 + d,
        }
    }
}

/// Something drawn from the data, in points: what a legend must not cover.
#[derive(Clone, Debug, PartialEq)]
pub enum Mark {
    /// A marker's box.
    Box(Rect),
    /// A line segment.
    Segment((f64, f64), (f64, f64)),
    /// A band between two polylines over the same xs: (x, y_top, y_bottom) in points.
    Band(Vec<(f64, f64, f64)>),
}

impl Mark {
    /// Whether the mark touches `r`.
    pub fn touches(&self, r: &Rect) -> bool {
        match self {
            Mark::Box(b) => b.intersects(r),
            Mark::Segment(a, b) => segment_hits(*a, *b, r),
            Mark::Band(cols) => cols.windows(2).any(|w| {
                let ((xa, ta, ba), (xb, tb, bb)) = (w[0], w[1]);
                let (lo, hi) = (xa.min(xb), xa.max(xb));
                if hi < r.x0 || lo > r.x1 {
                    return false;
                }
                // The band's extent over the part of [xa, xb] inside the rectangle: both ends
                // of that part, linearly interpolated (the band is straight in between).
                let at = |x: f64| {
                    let t = if xb == xa { 0.0 } else { (x - xa) / (xb - xa) };
                    (ta + t * (tb - ta), ba + t * (bb - ba))
                };
                let (u, v) = (lo.max(r.x0), hi.min(r.x1));
                let (t1, b1) = at(u);
                let (t2, b2) = at(v);
                let top = t1.min(t2).min(b1).min(b2);
                let bottom = t1.max(t2).max(b1).max(b2);
                top < r.y1 && bottom > r.y0
            }),
        }
    }
}

/// Whether the segment a–b meets the rectangle (Liang–Barsky clipping).
fn segment_hits(a: (f64, f64), b: (f64, f64), r: &Rect) -> bool {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - r.x0),
        (dx, r.x1 - a.0),
        (-dy, a.1 - r.y0),
        (dy, r.y1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return false;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
            if t0 > t1 {
                return false;
            }
        }
    }
    true
}

/// One tick of an axis: its data value, its position (points) and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    pub value: f64,
    pub at: f64,
    pub label: String,
}

/// One legend entry: its lines of rich text (a long entry wraps after its first `: `), how it
/// is drawn, and where its sample sits (points: the left end, the first line's middle).
#[derive(Clone, Debug)]
pub struct Entry {
    pub lines: Vec<String>,
    pub style: Style,
    pub line: bool,
    pub at: (f64, f64),
}

/// A legend's box and entries.
#[derive(Clone, Debug)]
pub struct Legend {
    pub rect: Rect,
    /// Inside the plotting area (a free corner), or outside it (below).
    pub inside: bool,
    pub entries: Vec<Entry>,
}

const LEGEND_LINE: f64 = LEGEND_PT * 1.35;
const LEGEND_SAMPLE: f64 = 14.0;

impl Legend {
    /// Entries laid out in `ncols` columns (row by row) from the top left `(x0, y0)`; returns
    /// the legend and its size.
    fn build(
        items: &[(String, Style, bool)],
        wrap_at: Option<f64>,
        ncols_max: Option<f64>,
        (x0, y0): (f64, f64),
        inside: bool,
    ) -> Legend {
        let text_w = |l: &str| text::width(&Rich::parse(l), LEGEND_PT);
        let mut entries: Vec<Entry> = items
            .iter()
            .map(|(label, style, line)| {
                let full = PAD + LEGEND_SAMPLE + PAD + text_w(label) + PAD;
                let lines = match (wrap_at, label.split_once(": ")) {
                    (Some(max), Some((a, b))) if full > max => {
                        vec![format!("{a}:"), format!("  {b}")]
                    }
                    _ => vec![label.clone()],
                };
                Entry {
                    lines,
                    style: *style,
                    line: *line,
                    at: (0.0, 0.0),
                }
            })
            .collect();
        let col_w = entries
            .iter()
            .flat_map(|e| e.lines.iter())
            .map(|l| LEGEND_SAMPLE + PAD + text_w(l) + 2.0 * PAD)
            .fold(0.0, f64::max);
        let ncols = match ncols_max {
            Some(avail) => ((avail - PAD) / col_w).floor().max(1.0) as usize,
            None => 1,
        }
        .clamp(1, entries.len().max(1));
        let mut y = y0 + PAD / 2.0;
        for row in entries.chunks_mut(ncols) {
            let h = row.iter().map(|e| e.lines.len()).max().unwrap_or(1) as f64 * LEGEND_LINE;
            for (c, e) in row.iter_mut().enumerate() {
                e.at = (x0 + PAD + c as f64 * col_w, y + LEGEND_LINE / 2.0);
            }
            y += h;
        }
        Legend {
            rect: Rect {
                x0,
                y0,
                x1: x0 + PAD + col_w * ncols as f64,
                y1: y + PAD / 2.0,
            },
            inside,
            entries,
        }
    }

    fn moved(mut self, dx: f64, dy: f64) -> Legend {
        self.rect.x0 += dx;
        self.rect.x1 += dx;
        self.rect.y0 += dy;
        self.rect.y1 += dy;
        for e in &mut self.entries {
            e.at.0 += dx;
            e.at.1 += dy;
        }
        self
    }
}

/// A panel as laid out.
#[derive(Clone, Debug)]
pub struct PanelLayout {
    pub plot: Rect,
    pub title_at: (f64, f64),
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    /// Every mark drawn from the data.
    pub marks: Vec<Mark>,
    pub legend: Option<Legend>,
    /// Data ranges in the axes' transformed coordinates.
    x_range: (f64, f64),
    y_range: (f64, f64),
}

/// A figure as laid out, in points.
#[derive(Clone, Debug)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    pub panels: Vec<PanelLayout>,
    /// The figure's shared legend, when it has one.
    pub legend: Option<Legend>,
}

/// Marker size (points, half the box).
const MARKER_R: f64 = 2.0;
/// Gaps, in points.
const PAD: f64 = 4.0;

impl PanelLayout {
    fn to_px(&self, spec: &Panel, x: f64, y: f64) -> Option<(f64, f64)> {
        let (tx, ty) = (spec.x.scale.map(x)?, spec.y.scale.map(y)?);
        let p = &self.plot;
        let fx = (tx - self.x_range.0) / (self.x_range.1 - self.x_range.0);
        let fy = (ty - self.y_range.0) / (self.y_range.1 - self.y_range.0);
        Some((p.x0 + fx * (p.x1 - p.x0), p.y1 - fy * (p.y1 - p.y0)))
    }
}

/// The range of transformed values, padded by 5% (a unit range around a single value).
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// A round step for about `n` ticks over `span`.
fn round_step(span: f64, n: f64) -> f64 {
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// `10^{k}` as rich text.
pub fn power_of_ten(k: i32) -> String {
    match k {
        0 => "1".into(),
        1 => "10".into(),
        _ => format!("10^{{{}}}", text::minus(&k.to_string())),
    }
}

/// A tick label for a value on a linear axis.
fn linear_label(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let s = format!("{:.*}", decimals, v);
    let s = if s.starts_with('-') && s.trim_start_matches(['-', '0', '.']).is_empty() {
        s[1..].to_string()
    } else {
        s
    };
    text::minus(&s)
}

fn ticks(axis: &Axis, range: (f64, f64)) -> Vec<(f64, String)> {
    let inside = |t: f64| t >= range.0 - 1e-9 && t <= range.1 + 1e-9;
    match (&axis.ticks, axis.scale) {
        (Ticks::Measured(vals), scale) => vals
            .iter()
            .filter(|(v, _)| scale.map(*v).is_some_and(inside))
            .cloned()
            .collect(),
        (Ticks::Decades, Scale::Log10) => {
            let (lo, hi) = (range.0.ceil() as i32, range.1.floor() as i32);
            let n = (hi - lo + 1).max(1);
            let every = match n {
                0..=7 => 1,
                8..=14 => 2,
                15..=21 => 3,
                _ => 4,
            };
            (lo..=hi)
                .filter(|k| k.rem_euclid(every) == 0)
                .map(|k| (10f64.powi(k), power_of_ten(k)))
                .collect()
        }
        (_, _) => {
            let step = round_step(range.1 - range.0, 5.0);
            let first = (range.0 / step).ceil() as i64;
            let last = (range.1 / step).floor() as i64;
            (first..=last)
                .map(|k| {
                    let v = k as f64 * step;
                    (v, linear_label(v, step))
                })
                .collect()
        }
    }
}

/// Lay out a figure: the panels' ranges, ticks, plotting areas, marks and legends.
pub fn layout(spec: &FigureSpec) -> anyhow::Result<Layout> {
    text::ensure_font()?;
    let width = spec.width_in * PT;
    let cols = spec.cols.clamp(1, spec.panels.len().max(1));
    let rows = spec.panels.len().div_ceil(cols).max(1);
    let cell_w = width / cols as f64;
    let row_h = spec.row_height_in * PT;
    let mut panels = Vec::new();
    // First pass: everything but the vertical offsets of rows (legends below a panel make its
    // row taller).
    for (i, p) in spec.panels.iter().enumerate() {
        let (c, r) = (i % cols, i / cols);
        let xs = p
            .series
            .iter()
            .flat_map(|s| {
                s.points
                    .iter()
                    .map(|q| q.0)
                    .chain(s.band.iter().map(|b| b.0))
                    .chain(s.errors.iter().map(|e| e.0))
            })
            .chain(p.x.include.iter().copied())
            .filter_map(|v| p.x.scale.map(v));
        let mut x_range = padded(xs);
        if let Ticks::Measured(vals) = &p.x.ticks {
            // Measured ticks are all shown: the range covers them.
            let t: Vec<f64> = vals.iter().filter_map(|(v, _)| p.x.scale.map(*v)).collect();
            if let (Some(lo), Some(hi)) = (
                t.iter().copied().reduce(f64::min),
                t.iter().copied().reduce(f64::max),
            ) {
                let pad = 0.06 * (hi - lo).max(1e-9);
                x_range = (x_range.0.min(lo - pad), x_range.1.max(hi + pad));
            }
        }
        let ys = p
            .series
            .iter()
            .flat_map(|s| {
                s.points
                    .iter()
                    .map(|q| q.1)
                    .chain(s.band.iter().flat_map(|b| [b.1, b.2]))
                    .chain(s.errors.iter().flat_map(|e| [e.1, e.2]))
            })
            .chain(p.hlines.iter().copied())
            .chain(p.y.include.iter().copied())
            .filter_map(|v| p.y.scale.map(v));
        let y_range = decades_in(&p.y, padded(ys));
        let x_range = decades_in(&p.x, x_range);
        let xt = ticks(&p.x, x_range);
        let yt = ticks(&p.y, y_range);
        let y_tick_w = yt
            .iter()
            .map(|(_, l)| text::width(&Rich::parse(l), TICK_PT))
            .fold(0.0, f64::max);
        let left = c as f64 * cell_w + PAD + LABEL_PT * 1.2 + PAD + y_tick_w + PAD;
        let right = (c + 1) as f64 * cell_w - PAD * 2.0;
        let top = r as f64 * row_h + TITLE_PT * 1.3 + PAD;
        let bottom = (r + 1) as f64 * row_h - (TICK_PT * 1.3 + PAD + LABEL_PT * 1.3 + PAD);
        let plot = Rect {
            x0: left,
            y0: top,
            x1: right,
            y1: bottom,
        };
        let mut pl = PanelLayout {
            plot,
            title_at: ((left + right) / 2.0, r as f64 * row_h + PAD / 2.0),
            x_ticks: vec![],
            y_ticks: vec![],
            marks: vec![],
            legend: None,
            x_range,
            y_range,
        };
        pl.x_ticks = xt
            .into_iter()
            .filter_map(|(v, label)| {
                let (x, _) = pl.to_px(p, v, y_value_inside(p, y_range))?;
                Some(Tick {
                    value: v,
                    at: x,
                    label,
                })
            })
            .collect();
        pl.y_ticks = yt
            .into_iter()
            .filter_map(|(v, label)| {
                let (_, y) = pl.to_px(p, x_value_inside(p, x_range), v)?;
                Some(Tick {
                    value: v,
                    at: y,
                    label,
                })
            })
            .collect();
        pl.marks = marks(p, &pl);
        pl.legend = if spec.shared_legend {
            None
        } else {
            place_legend(p, &pl, (c as f64 * cell_w, (c + 1) as f64 * cell_w))
        };
        panels.push(pl);
    }
    // Second pass: a row is as tall as its tallest legend below a panel needs.
    let mut offset = 0.0;
    let mut height = 0.0;
    for r in 0..rows {
        let extra = panels
            .iter()
            .skip(r * cols)
            .take(cols)
            .filter_map(|p| p.legend.as_ref().filter(|l| !l.inside))
            .map(|l| l.rect.y1 - l.rect.y0 + PAD)
            .fold(0.0, f64::max);
        for p in panels.iter_mut().skip(r * cols).take(cols) {
            shift(p, offset);
        }
        offset += extra;
        height = (r + 1) as f64 * row_h + offset;
    }
    // A shared legend: every labelled series once, below the panels, as wide as the figure.
    let mut legend = None;
    if spec.shared_legend {
        let mut all: Vec<(String, Style, bool)> = Vec::new();
        for p in &spec.panels {
            for it in items(p) {
                if !all.iter().any(|a| a.0 == it.0) {
                    all.push(it);
                }
            }
        }
        if !all.is_empty() {
            let l = Legend::build(
                &all,
                Some(width - 2.0 * PAD),
                Some(width - 2.0 * PAD),
                (PAD, height),
                false,
            );
            height = l.rect.y1 + PAD;
            legend = Some(l);
        }
    }
    Ok(Layout {
        width,
        height,
        panels,
        legend,
    })
}

/// A range of a log axis ticked at powers of ten, widened to the enclosing powers when it holds
/// fewer than two (a range of 6·10⁻⁴ to 2·10⁻³ is drawn from 10⁻⁴ to 10⁻², not with one tick).
fn decades_in(axis: &Axis, r: (f64, f64)) -> (f64, f64) {
    if axis.ticks != Ticks::Decades || axis.scale != Scale::Log10 {
        return r;
    }
    if r.1.floor() - r.0.ceil() >= 1.0 {
        return r;
    }
    (
        r.0.floor().min(r.1.floor() - 1.0),
        r.1.ceil().max(r.0.ceil() + 1.0),
    )
}

/// A data value whose transform lies inside the range (for mapping the other coordinate).
fn y_value_inside(p: &Panel, r: (f64, f64)) -> f64 {
    inverse(p.y.scale, (r.0 + r.1) / 2.0)
}
fn x_value_inside(p: &Panel, r: (f64, f64)) -> f64 {
    inverse(p.x.scale, (r.0 + r.1) / 2.0)
}
fn inverse(s: Scale, t: f64) -> f64 {
    match s {
        Scale::Linear => t,
        Scale::Log10 => 10f64.powf(t),
    }
}

fn shift(p: &mut PanelLayout, dy: f64) {
    if dy == 0.0 {
        return;
    }
    let mv = |r: &mut Rect| {
        r.y0 += dy;
        r.y1 += dy;
    };
    mv(&mut p.plot);
    p.title_at.1 += dy;
    for t in &mut p.y_ticks {
        t.at += dy;
    }
    for m in &mut p.marks {
        match m {
            Mark::Box(b) => mv(b),
            Mark::Segment(a, b) => {
                a.1 += dy;
                b.1 += dy;
            }
            Mark::Band(cols) => {
                for c in cols {
                    c.1 += dy;
                    c.2 += dy;
                }
            }
        }
    }
    if let Some(l) = p.legend.take() {
        p.legend = Some(l.moved(0.0, dy));
    }
}

/// Every mark a panel draws from its data, in points.
fn marks(p: &Panel, pl: &PanelLayout) -> Vec<Mark> {
    let mut out = Vec::new();
    let px = |x: f64, y: f64| pl.to_px(p, x, y);
    for s in &p.series {
        let pts: Vec<(f64, f64)> = s.points.iter().filter_map(|&(x, y)| px(x, y)).collect();
        if s.line {
            for w in pts.windows(2) {
                out.push(Mark::Segment(w[0], w[1]));
            }
        }
        if s.style.marker != Marker::None {
            for &(x, y) in &pts {
                out.push(Mark::Box(
                    Rect {
                        x0: x,
                        y0: y,
                        x1: x,
                        y1: y,
                    }
                    .inflate(MARKER_R),
                ));
            }
        }
        let band: Vec<(f64, f64, f64)> = s
            .band
            .iter()
            .filter_map(|&(x, lo, hi)| {
                let (a, top) = px(x, hi)?;
                let (_, bottom) = px(x, lo)?;
                Some((a, top, bottom))
            })
            .collect();
        if band.len() >= 2 {
            out.push(Mark::Band(band));
        }
        for &(x, lo, hi) in &s.errors {
            if let (Some(a), Some(b)) = (px(x, lo), px(x, hi)) {
                out.push(Mark::Segment(a, b));
                for end in [a, b] {
                    out.push(Mark::Segment((end.0 - 1.5, end.1), (end.0 + 1.5, end.1)));
                }
            }
        }
    }
    for &y in &p.hlines {
        let (a, b) = (
            px(inverse(p.x.scale, pl.x_range.0), y),
            px(inverse(p.x.scale, pl.x_range.1), y),
        );
        if let (Some(a), Some(b)) = (a, b) {
            out.push(Mark::Segment(a, b));
        }
    }
    out
}

/// The legend entries of a panel.
fn items(p: &Panel) -> Vec<(String, Style, bool)> {
    p.series
        .iter()
        .filter(|s| !s.label.is_empty())
        .map(|s| (s.label.clone(), s.style, s.line))
        .collect()
}

/// The legend of a panel: its size from its entries; its place the first inside corner that no
/// mark touches (upper right, upper left, lower left, lower right), else below the panel, within
/// the panel's cell (`cell`: its left and right edges), long entries wrapped.
fn place_legend(p: &Panel, pl: &PanelLayout, cell: (f64, f64)) -> Option<Legend> {
    let items = items(p);
    if items.is_empty() {
        return None;
    }
    let plot = pl.plot;
    let inset = 2.0;
    let probe = Legend::build(&items, None, None, (0.0, 0.0), true);
    let (w, h) = (probe.rect.x1, probe.rect.y1);
    let corners = [
        (plot.x1 - inset - w, plot.y0 + inset),
        (plot.x0 + inset, plot.y0 + inset),
        (plot.x0 + inset, plot.y1 - inset - h),
        (plot.x1 - inset - w, plot.y1 - inset - h),
    ];
    for (x, y) in corners {
        let rect = Rect {
            x0: x,
            y0: y,
            x1: x + w,
            y1: y + h,
        };
        let fits = rect.x0 >= plot.x0 && rect.y1 <= plot.y1;
        // A little air around the box counts as the box.
        if fits && !pl.marks.iter().any(|m| m.touches(&rect.inflate(1.0))) {
            return Some(probe.moved(x, y));
        }
    }
    let avail = cell.1 - cell.0 - 2.0 * PAD;
    let below = plot.y1 + TICK_PT * 1.3 + PAD + LABEL_PT * 1.3 + PAD;
    let x0 = cell.0 + PAD;
    Some(Legend::build(
        &items,
        Some(avail),
        Some(avail),
        (x0, below),
        false,
    ))
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Draw a laid-out figure at `scale` pixels per point.
pub fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    spec: &FigureSpec,
    layout: &Layout,
    scale: f64,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let s = |v: f64| (v * scale).round() as i32;
    let thin = (0.5 * scale).max(1.0) as u32;
    let line_w = (1.0 * scale).max(1.0) as u32;
    for (p, pl) in spec.panels.iter().zip(&layout.panels) {
        let r = pl.plot;
        // Axes: a frame, ticks outside, labels.
        root.draw(&Rectangle::new(
            [(s(r.x0), s(r.y0)), (s(r.x1), s(r.y1))],
            BLACK.stroke_width(thin),
        ))
        .map_err(err)?;
        for t in &pl.x_ticks {
            root.draw(&PathElement::new(
                vec![(s(t.at), s(r.y1)), (s(t.at), s(r.y1 + 2.5))],
                BLACK.stroke_width(thin),
            ))
            .map_err(err)?;
            text::draw(
                root,
                &Rich::parse(&t.label),
                (t.at, r.y1 + 3.5),
                TICK_PT,
                (HPos::Center, VPos::Top),
                scale,
            )?;
        }
        for t in &pl.y_ticks {
            root.draw(&PathElement::new(
                vec![(s(r.x0 - 2.5), s(t.at)), (s(r.x0), s(t.at))],
                BLACK.stroke_width(thin),
            ))
            .map_err(err)?;
            text::draw(
                root,
                &Rich::parse(&t.label),
                (r.x0 - 3.5, t.at),
                TICK_PT,
                (HPos::Right, VPos::Center),
                scale,
            )?;
        }
        text::draw(
            root,
            &Rich::parse(&p.x.label),
            ((r.x0 + r.x1) / 2.0, r.y1 + TICK_PT * 1.3 + PAD),
            LABEL_PT,
            (HPos::Center, VPos::Top),
            scale,
        )?;
        let y_tick_w = pl
            .y_ticks
            .iter()
            .map(|t| text::width(&Rich::parse(&t.label), TICK_PT))
            .fold(0.0, f64::max);
        text::draw_vertical(
            root,
            &p.y.label,
            (r.x0 - 3.5 - y_tick_w - PAD, (r.y0 + r.y1) / 2.0),
            LABEL_PT,
            scale,
        )?;
        text::draw(
            root,
            &Rich::parse(&p.title),
            pl.title_at,
            TITLE_PT,
            (HPos::Center, VPos::Top),
            scale,
        )?;
        // Data, clipped to the plotting area.
        let area = root.clone().shrink(
            (s(r.x0), s(r.y0)),
            (
                (s(r.x1) - s(r.x0)).max(1) as u32,
                (s(r.y1) - s(r.y0)).max(1) as u32,
            ),
        );
        let local = |(x, y): (f64, f64)| (s(x) - s(r.x0), s(y) - s(r.y0));
        for &y in &p.hlines {
            if let (Some(a), Some(b)) = (
                pl.to_px(p, inverse(p.x.scale, pl.x_range.0), y),
                pl.to_px(p, inverse(p.x.scale, pl.x_range.1), y),
            ) {
                area.draw(&PathElement::new(
                    vec![local(a), local(b)],
                    GREY.stroke_width(thin),
                ))
                .map_err(err)?;
            }
        }
        for ser in &p.series {
            let color = ser.style.color;
            let band: Vec<(f64, f64, f64)> = ser
                .band
                .iter()
                .filter_map(|&(x, lo, hi)| {
                    let (a, top) = pl.to_px(p, x, hi)?;
                    let (_, bottom) = pl.to_px(p, x, lo)?;
                    Some((a, top, bottom))
                })
                .collect();
            if band.len() >= 2 {
                let mut poly: Vec<(i32, i32)> =
                    band.iter().map(|&(x, t, _)| local((x, t))).collect();
                poly.extend(band.iter().rev().map(|&(x, _, b)| local((x, b))));
                area.draw(&Polygon::new(poly, color.mix(0.16).filled()))
                    .map_err(err)?;
            }
            for &(x, lo, hi) in &ser.errors {
                if let (Some(a), Some(b)) = (pl.to_px(p, x, lo), pl.to_px(p, x, hi)) {
                    area.draw(&PathElement::new(
                        vec![local(a), local(b)],
                        color.stroke_width(line_w),
                    ))
                    .map_err(err)?;
                    for e in [a, b] {
                        area.draw(&PathElement::new(
                            vec![local((e.0 - 1.5, e.1)), local((e.0 + 1.5, e.1))],
                            color.stroke_width(line_w),
                        ))
                        .map_err(err)?;
                    }
                }
            }
            let pts: Vec<(f64, f64)> = ser
                .points
                .iter()
                .filter_map(|&(x, y)| pl.to_px(p, x, y))
                .collect();
            if ser.line && pts.len() >= 2 {
                draw_line(
                    &area,
                    &pts.iter().map(|&q| local(q)).collect::<Vec<_>>(),
                    ser.style,
                    line_w,
                    scale,
                )?;
            }
            for (k, &q) in pts.iter().enumerate() {
                let hollow = ser.hollow.get(k).copied().unwrap_or(false);
                draw_marker(&area, local(q), ser.style, hollow, scale)?;
            }
        }
        if let Some(l) = &pl.legend {
            draw_legend(root, l, scale, line_w)?;
        }
    }
    if let Some(l) = &layout.legend {
        draw_legend(root, l, scale, line_w)?;
    }
    Ok(())
}

fn draw_line<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    pts: &[(i32, i32)],
    style: Style,
    width: u32,
    scale: f64,
) -> anyhow::Result<()> {
    let stroke = style.color.stroke_width(width);
    match style.dash {
        Dash::Solid => area
            .draw(&PathElement::new(pts.to_vec(), stroke))
            .map_err(err),
        Dash::Dashed | Dash::Dotted => {
            let (on, off) = if style.dash == Dash::Dashed {
                (4.0 * scale, 2.5 * scale)
            } else {
                (1.0 * scale, 1.8 * scale)
            };
            for seg in dashes(pts, on, off) {
                area.draw(&PathElement::new(seg, stroke)).map_err(err)?;
            }
            Ok(())
        }
    }
}

/// A polyline cut into dashes of length `on` separated by `off` (pixels).
fn dashes(pts: &[(i32, i32)], on: f64, off: f64) -> Vec<Vec<(i32, i32)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(i32, i32)> = Vec::new();
    let (mut drawing, mut left) = (true, on);
    for w in pts.windows(2) {
        let (a, b) = (
            (w[0].0 as f64, w[0].1 as f64),
            (w[1].0 as f64, w[1].1 as f64),
        );
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let mut t = 0.0;
        while t < len {
            let step = left.min(len - t);
            let p0 = (a.0 + (b.0 - a.0) * t / len, a.1 + (b.1 - a.1) * t / len);
            let t1 = t + step;
            let p1 = (a.0 + (b.0 - a.0) * t1 / len, a.1 + (b.1 - a.1) * t1 / len);
            if drawing {
                if cur.is_empty() {
                    cur.push((p0.0.round() as i32, p0.1.round() as i32));
                }
                cur.push((p1.0.round() as i32, p1.1.round() as i32));
            }
            left -= step;
            t = t1;
            if left <= 1e-9 {
                if drawing && !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                drawing = !drawing;
                left = if drawing { on } else { off };
            }
        }
    }
    if cur.len() >= 2 {
        out.push(cur);
    }
    out
}

fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    style: Style,
    hollow: bool,
    scale: f64,
) -> anyhow::Result<()> {
    let r = (MARKER_R * scale).round() as i32;
    let w = (0.8 * scale).max(1.0) as u32;
    let shape = if hollow {
        style.color.stroke_width(w)
    } else {
        style.color.filled()
    };
    let poly = |pts: Vec<(i32, i32)>| -> anyhow::Result<()> {
        if hollow {
            let mut closed = pts.clone();
            closed.push(pts[0]);
            area.draw(&PathElement::new(closed, shape)).map_err(err)
        } else {
            area.draw(&Polygon::new(pts, shape)).map_err(err)
        }
    };
    match style.marker {
        Marker::None => Ok(()),
        Marker::Circle => area.draw(&Circle::new((x, y), r, shape)).map_err(err),
        Marker::Square => poly(vec![
            (x - r, y - r),
            (x + r, y - r),
            (x + r, y + r),
            (x - r, y + r),
        ]),
        Marker::Triangle => poly(vec![(x, y - r - 1), (x + r + 1, y + r), (x - r - 1, y + r)]),
        Marker::TriangleDown => poly(vec![(x, y + r + 1), (x + r + 1, y - r), (x - r - 1, y - r)]),
        Marker::Diamond => poly(vec![
            (x, y - r - 1),
            (x + r + 1, y),
            (x, y + r + 1),
            (x - r - 1, y),
        ]),
        Marker::Cross | Marker::Plus => {
            let stroke = style.color.stroke_width((1.0 * scale).max(1.0) as u32);
            let arms = if style.marker == Marker::Cross {
                [
                    ((x - r, y - r), (x + r, y + r)),
                    ((x - r, y + r), (x + r, y - r)),
                ]
            } else {
                [((x - r, y), (x + r, y)), ((x, y - r), (x, y + r))]
            };
            for (a, b) in arms {
                area.draw(&PathElement::new(vec![a, b], stroke))
                    .map_err(err)?;
            }
            Ok(())
        }
    }
}

fn draw_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    l: &Legend,
    scale: f64,
    line_w: u32,
) -> anyhow::Result<()> {
    let s = |v: f64| (v * scale).round() as i32;
    let r = l.rect;
    root.draw(&Rectangle::new(
        [(s(r.x0), s(r.y0)), (s(r.x1), s(r.y1))],
        WHITE.filled(),
    ))
    .map_err(err)?;
    root.draw(&Rectangle::new(
        [(s(r.x0), s(r.y0)), (s(r.x1), s(r.y1))],
        RGBColor(180, 180, 180).stroke_width((0.4 * scale).max(1.0) as u32),
    ))
    .map_err(err)?;
    for e in &l.entries {
        let (x, y) = e.at;
        if e.line {
            draw_line(
                root,
                &[(s(x), s(y)), (s(x + LEGEND_SAMPLE), s(y))],
                e.style,
                line_w,
                scale,
            )?;
        }
        draw_marker(
            root,
            (s(x + LEGEND_SAMPLE / 2.0), s(y)),
            e.style,
            false,
            scale,
        )?;
        for (k, line) in e.lines.iter().enumerate() {
            text::draw(
                root,
                &Rich::parse(line),
                (x + LEGEND_SAMPLE + PAD, y + k as f64 * LEGEND_LINE),
                LEGEND_PT,
                (HPos::Left, VPos::Center),
                scale,
            )?;
        }
    }
    Ok(())
}

/// SVG units per point.
const SVG_SCALE: f64 = 4.0;

/// Draw a figure as SVG (4 units per point), PNG (300 dpi) and PDF (from the SVG, its font embedded);
/// returns the three files' bytes.
pub fn render(spec: &FigureSpec) -> anyhow::Result<(Layout, String, Vec<u8>, Vec<u8>)> {
    let lay = layout(spec)?;
    // SVG coordinates are whole units: four per point keep every position within 1/4 pt.
    let size_svg = (
        (lay.width * SVG_SCALE).ceil() as u32,
        (lay.height * SVG_SCALE).ceil() as u32,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size_svg).into_drawing_area();
        draw(&root, spec, &lay, SVG_SCALE)?;
        root.present().map_err(err)?;
    }
    let k = PNG_DPI / PT;
    let size_px = (
        (lay.width * k).ceil() as u32,
        (lay.height * k).ceil() as u32,
    );
    let mut pixels = vec![0u8; size_px.0 as usize * size_px.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size_px).into_drawing_area();
        draw(&root, spec, &lay, k)?;
        root.present().map_err(err)?;
    }
    let mut png = Vec::new();
    {
        use image::ImageEncoder;
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&pixels, size_px.0, size_px.1, image::ColorType::Rgb8)
            .map_err(|e| anyhow!("cannot encode the PNG of {}: {e}", spec.name))?;
    }
    let pdf = text::svg_to_pdf(&svg, SVG_SCALE).map_err(|e| anyhow!("{}: {e}", spec.name))?;
    Ok((lay, svg, png, pdf))
}

/// What a reader would object to in a laid-out figure: a legend over a mark, two labelled
/// series of a panel in the same style, a tick off the measured values or the powers of ten.
pub fn problems(spec: &FigureSpec, lay: &Layout) -> Vec<String> {
    let mut out = Vec::new();
    let cols = spec.cols.clamp(1, spec.panels.len().max(1));
    let cell_w = lay.width / cols as f64;
    if let Some(l) = &lay.legend {
        // One label, one style, in every panel; no two entries alike.
        let mut styles: std::collections::BTreeMap<&str, Style> = Default::default();
        for s in spec
            .panels
            .iter()
            .flat_map(|p| &p.series)
            .filter(|s| !s.label.is_empty())
        {
            if let Some(first) = styles.insert(&s.label, s.style) {
                if first != s.style {
                    out.push(format!(
                        "{}: `{}` is drawn in two styles across the panels of a shared legend",
                        spec.name, s.label
                    ));
                }
            }
        }
        let mut keys = std::collections::BTreeMap::new();
        for e in &l.entries {
            if let Some(first) = keys.insert(e.style.key(e.line), e.lines.join(" ")) {
                out.push(format!(
                    "{}: `{first}` and `{}` share colour, marker and dash in the legend",
                    spec.name,
                    e.lines.join(" ")
                ));
            }
        }
        for (q, other) in spec.panels.iter().zip(&lay.panels) {
            if let Some(m) = other.marks.iter().find(|m| m.touches(&l.rect)) {
                out.push(format!(
                    "{}: the shared legend covers a mark of panel `{}`: {m:?}",
                    spec.name, q.title
                ));
            }
            if l.rect.intersects(&other.plot) {
                out.push(format!(
                    "{}: the shared legend overlaps a plotting area",
                    spec.name
                ));
            }
        }
        if l.rect.x0 < -0.5 || l.rect.x1 > lay.width + 0.5 || l.rect.y1 > lay.height + 0.5 {
            out.push(format!(
                "{}: the shared legend leaves the figure",
                spec.name
            ));
        }
    }
    for (i, (p, pl)) in spec.panels.iter().zip(&lay.panels).enumerate() {
        let name = format!("{} / {}", spec.name, p.title);
        let cell = ((i % cols) as f64 * cell_w, (i % cols + 1) as f64 * cell_w);
        let title_w = text::width(&Rich::parse(&p.title), TITLE_PT);
        if pl.title_at.0 - title_w / 2.0 < cell.0 - 0.5
            || pl.title_at.0 + title_w / 2.0 > cell.1 + 0.5
        {
            out.push(format!("{name}: the title is wider than its panel"));
        }
        if let Some(l) = &pl.legend {
            if !l.inside && (l.rect.x0 < cell.0 - 0.5 || l.rect.x1 > cell.1 + 0.5) {
                out.push(format!("{name}: the legend below is wider than its panel"));
            }
            for (q, other) in spec.panels.iter().zip(&lay.panels) {
                if let Some(m) = other.marks.iter().find(|m| m.touches(&l.rect)) {
                    out.push(format!(
                        "{name}: the legend covers a mark of panel `{}`: {m:?}",
                        q.title
                    ));
                }
                if !l.inside && l.rect.intersects(&other.plot) {
                    out.push(format!("{name}: the legend below overlaps a plotting area"));
                }
            }
            if l.rect.x0 < -0.5 || l.rect.x1 > lay.width + 0.5 || l.rect.y1 > lay.height + 0.5 {
                out.push(format!("{name}: the legend leaves the figure"));
            }
        }
        let mut seen = std::collections::BTreeMap::new();
        for s in p.series.iter().filter(|s| !s.label.is_empty()) {
            if let Some(first) = seen.insert(s.style.key(s.line), s.label.clone()) {
                out.push(format!(
                    "{name}: `{first}` and `{}` share colour, marker and dash",
                    s.label
                ));
            }
        }
        for (axis, ticks) in [(&p.x, &pl.x_ticks), (&p.y, &pl.y_ticks)] {
            for t in ticks {
                let ok = match &axis.ticks {
                    Ticks::Measured(vals) => vals.iter().any(|(v, _)| *v == t.value),
                    Ticks::Decades => {
                        let k = t.value.log10();
                        (k - k.round()).abs() < 1e-12
                    }
                    Ticks::Round => true,
                };
                if !ok {
                    out.push(format!(
                        "{name}: a tick at {} is neither measured nor a power of ten",
                        t.value
                    ));
                }
            }
            if ticks.len() < 2 {
                out.push(format!("{name}: an axis with fewer than two ticks"));
            }
        }
    }
    out
}
