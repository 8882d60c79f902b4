//! Type for the paper's figures: rich text with real superscripts and subscripts (`10^{3}`,
//! `n^{−1/2}`, `R_{min}`), widths measured with the shipped font, and the PDF conversion, which
//! embeds that font.
use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Register the shipped font (once).
pub fn ensure_font() -> anyhow::Result<()> {
    crate::plot::ensure_font()
}

/// The typographic minus for every hyphen-minus that stands for one: before a digit, a decimal
/// point or the end of a superscript.
pub fn minus(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let prev = if i == 0 { None } else { Some(chars[i - 1]) };
        let numeric = next.is_some_and(|n| n.is_ascii_digit() || n == '.');
        let starts = prev.is_none_or(|p| matches!(p, ' ' | '(' | '[' | '{' | ',' | '='));
        if c == '-' && numeric && starts {
            out.push('\u{2212}');
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shift3 {
    Normal,
    Sup,
    Sub,
}

/// Runs of text at the baseline, raised or lowered.
#[derive(Clone, Debug, PartialEq)]
pub struct Rich {
    pub runs: Vec<(String, Shift3)>,
}

impl Rich {
    /// `a^{b}c_{d}`: braces after `^` or `_` hold a superscript or a subscript; a `^` or `_`
    /// without a brace is kept as it is.
    pub fn parse(s: &str) -> Rich {
        let mut runs: Vec<(String, Shift3)> = Vec::new();
        let mut cur = String::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if (c == '^' || c == '_') && it.peek() == Some(&'{') {
                it.next();
                let mut inner = String::new();
                for d in it.by_ref() {
                    if d == '}' {
                        break;
                    }
                    inner.push(d);
                }
                if !cur.is_empty() {
                    runs.push((std::mem::take(&mut cur), Shift3::Normal));
                }
                runs.push((inner, if c == '^' { Shift3::Sup } else { Shift3::Sub }));
            } else {
                cur.push(c);
            }
        }
        if !cur.is_empty() {
            runs.push((cur, Shift3::Normal));
        }
        Rich { runs }
    }

    /// The text without its markup (what a screen reader or a search finds).
    pub fn plain(&self) -> String {
        self.runs.iter().map(|(t, _)| t.as_str()).collect()
    }
}

/// The size of a raised or lowered run relative to the text around it.
const SMALL: f64 = 0.7;

/// plotters' font size for a type size in points at `scale` pixels per point (plotters divides
/// by 1.24 to get the em size).
fn font_size(pt: f64, scale: f64) -> f64 {
    pt * scale * 1.24
}

/// Width of a run of plain text, in points.
fn run_width(text: &str, pt: f64) -> f64 {
    if text.is_empty() {
        return 0.0;
    }
    // Measured at a large size and scaled, so the integer layout box rounds away nothing.
    let big = 100.0;
    let font = FontDesc::new(
        FontFamily::Name("sans-serif"),
        font_size(big, 1.0),
        FontStyle::Normal,
    );
    match font.box_size(text) {
        Ok((w, _)) => w as f64 * pt / big,
        Err(_) => 0.55 * pt * text.chars().count() as f64,
    }
}

/// Width of rich text, in points.
pub fn width(r: &Rich, pt: f64) -> f64 {
    r.runs
        .iter()
        .map(|(t, s)| run_width(t, if *s == Shift3::Normal { pt } else { SMALL * pt }))
        .sum()
}

/// Draw rich text anchored at `at` (points).
pub fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Rich,
    at: (f64, f64),
    pt: f64,
    (h, v): (HPos, VPos),
    scale: f64,
) -> anyhow::Result<()> {
    let w = width(r, pt);
    let mut x = match h {
        HPos::Left => at.0,
        HPos::Center => at.0 - w / 2.0,
        HPos::Right => at.0 - w,
    };
    // Every run is placed by the top of the normal text's box.
    let top = match v {
        VPos::Top => at.1,
        VPos::Center => at.1 - pt / 2.0,
        VPos::Bottom => at.1 - pt,
    };
    for (t, s) in &r.runs {
        let (size, y) = match s {
            Shift3::Normal => (pt, top),
            Shift3::Sup => (SMALL * pt, top - 0.12 * pt),
            Shift3::Sub => (SMALL * pt, top + 0.45 * pt),
        };
        let style = TextStyle::from((FontFamily::Name("sans-serif"), font_size(size, scale)))
            .pos(Pos::new(HPos::Left, VPos::Top));
        root.draw(&Text::new(
            t.clone(),
            ((x * scale).round() as i32, (y * scale).round() as i32),
            style,
        ))
        .map_err(|e| anyhow!("drawing text `{t}` failed: {e:?}"))?;
        x += run_width(t, size);
    }
    Ok(())
}

/// Draw a plain label turned a quarter left (a y-axis label), centred on `at` (points).
pub fn draw_vertical<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    label: &str,
    at: (f64, f64),
    pt: f64,
    scale: f64,
) -> anyhow::Result<()> {
    let text = Rich::parse(label).plain();
    let style = TextStyle::from((FontFamily::Name("sans-serif"), font_size(pt, scale)))
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(
        text.clone(),
        (
            ((at.0 - pt) * scale).round() as i32,
            (at.1 * scale).round() as i32,
        ),
        style,
    ))
    .map_err(|e| anyhow!("drawing text `{text}` failed: {e:?}"))
}

/// A PDF of an SVG drawn at `scale` SVG units per point, with the shipped font embedded.
pub fn svg_to_pdf(svg: &str, scale: f64) -> anyhow::Result<Vec<u8>> {
    let mut options = svg2pdf::usvg::Options::default();
    {
        let db = options.fontdb_mut();
        db.load_font_data(crate::plot::FONT.to_vec());
        db.set_sans_serif_family("DejaVu Sans");
    }
    let tree = svg2pdf::usvg::Tree::from_str(svg, &options)
        .map_err(|e| anyhow!("the SVG does not parse for the PDF: {e}"))?;
    let page = svg2pdf::PageOptions {
        dpi: (72.0 * scale) as f32,
    };
    svg2pdf::to_pdf(&tree, svg2pdf::ConversionOptions::default(), page)
        .map(|pdf| sorted_resources(&pdf))
        .map_err(|e| anyhow!("the PDF conversion failed: {e:?}"))
}

/// The PDF with every run of resource-dictionary lines (`/gs3 11 0 R`) in sorted order, so the
/// same figure gives the same bytes (svg2pdf writes them in hash order). Lines are only permuted
/// within their run, so every object keeps its length and the cross-reference offsets stay true.
pub fn sorted_resources(pdf: &[u8]) -> Vec<u8> {
    fn is_ref(line: &[u8]) -> bool {
        let t = line.trim_ascii();
        let Some(rest) = t.strip_prefix(b"/") else {
            return false;
        };
        let parts: Vec<&[u8]> = rest.split(|b| *b == b' ').collect();
        parts.len() == 4
            && parts[0].iter().all(|b| b.is_ascii_alphanumeric())
            && !parts[1].is_empty()
            && parts[1].iter().all(u8::is_ascii_digit)
            && parts[2] == b"0"
            && parts[3] == b"R"
    }
    let lines: Vec<&[u8]> = pdf.split(|b| *b == b'\n').collect();
    let mut out: Vec<&[u8]> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        if is_ref(lines[i]) {
            let start = i;
            while i < lines.len() && is_ref(lines[i]) {
                i += 1;
            }
            let mut run = lines[start..i].to_vec();
            run.sort();
            out.extend(run);
        } else {
            out.push(lines[i]);
            i += 1;
        }
    }
    out.join(&b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_becomes_raised_and_lowered_runs() {
        assert_eq!(
            Rich::parse("n^{−1/2} R_{min} x^2").runs,
            vec![
                ("n".to_string(), Shift3::Normal),
                ("−1/2".to_string(), Shift3::Sup),
                (" R".to_string(), Shift3::Normal),
                ("min".to_string(), Shift3::Sub),
                (" x^2".to_string(), Shift3::Normal),
            ]
        );
        assert_eq!(Rich::parse("10^{3}").plain(), "103");
    }

    #[test]
    fn minus_signs_are_typographic_and_hyphens_stay() {
        assert_eq!(minus("-0.5 [-0.7, -0.3]"), "−0.5 [−0.7, −0.3]");
        assert_eq!(minus("replora-tanh"), "replora-tanh");
        assert_eq!(minus("lr 3e-3"), "lr 3e-3");
    }

    #[test]
    fn resource_lines_are_sorted_within_their_run_only() {
        let pdf = b"<<\n  /xo4 16 0 R\n  /xo1 10 0 R\n>>\nstream\n/b 2 0 R\nx\n/a 1 0 R\n";
        let sorted = sorted_resources(pdf);
        assert_eq!(
            sorted,
            b"<<\n  /xo1 10 0 R\n  /xo4 16 0 R\n>>\nstream\n/b 2 0 R\nx\n/a 1 0 R\n".to_vec()
        );
        assert_eq!(sorted.len(), pdf.len());
    }

    #[test]
    fn wider_text_measures_wider() {
        ensure_font().unwrap();
        let a = width(&Rich::parse("10"), 7.0);
        let b = width(&Rich::parse("10^{5}"), 7.0);
        assert!(a > 5.0 && a < 12.0, "{a}");
        assert!(b > a && b < a + 5.0, "{a} {b}");
        assert!((width(&Rich::parse("10"), 14.0) - 2.0 * a).abs() < 0.2);
    }
}
