//! The report's charts as PNG files, drawn with `plotters` into a pixel buffer and encoded by
//! the `image` crate: line charts (accuracy and teacher weights per epoch, with reference
//! lines), labelled scatter charts (accuracy against size and latency) and per-category dot
//! charts with a spread (accuracy per method over seeds). Text uses DejaVu Sans, compiled in,
//! so a chart looks the same on every machine.

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::OnceLock;

const SIZE: (u32, u32) = (900, 520);
const FONT: &str = "sans-serif";

/// Distinct colours for series, in order (a colour-blind-safe qualitative palette).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(240, 228, 66),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Registers the compiled-in font once.
fn font() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).map_err(|_| "the DejaVu Sans font did not load".to_string())
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

/// A named line of (x, y) points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A horizontal reference line.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub label: String,
    pub y: f64,
}

/// A labelled point of a scatter chart, in a named group (drawn in one colour).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub group: String,
    pub label: String,
    pub x: f64,
    pub y: f64,
}

/// Draws into an RGB buffer and writes it to `path` as PNG (atomically).
fn render(path: &Path, draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>) -> Result<()> {
    font()?;
    let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        draw(root.clone())?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let img = image::RgbImage::from_raw(SIZE.0, SIZE.1, buf).context("chart buffer")?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).context("encoding the chart")?;
    crate::fsio::write_atomic(path, png.get_ref()).with_context(|| format!("writing {}", path.display()))
}

/// Every chart's frame: the title, margins, and room for the axis labels (`x_area` pixels under
/// the plot, more for rotated category names).
fn frame<'a, 'b>(root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>, title: &str, x_area: u32) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, (FONT, 22)).margin(12).x_label_area_size(x_area).y_label_area_size(60);
    b
}

fn e<E: std::fmt::Display>(err: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {err}")
}

/// The range of `values` with a margin, never empty.
fn span(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let margin = ((hi - lo) * pad).max(1e-3);
    (lo - margin, hi + margin)
}

/// Lines over x (epochs) with dashed horizontal references; y in percent when `percent`.
pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series], refs: &[Reference], percent: bool) -> Result<()> {
    let scale = if percent { 100.0 } else { 1.0 };
    let xs = span(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)), 0.0);
    let ys = span(series.iter().flat_map(|s| s.points.iter().map(|p| p.1 * scale)).chain(refs.iter().map(|r| r.y * scale)), 0.08);
    // A narrow range would make small wobbles look like swings: at least 5 points (or 0.05).
    let min_span = if percent { 5.0 } else { 0.05 };
    let ys = if ys.1 - ys.0 < min_span { ((ys.0 + ys.1 - min_span) / 2.0, (ys.0 + ys.1 + min_span) / 2.0) } else { ys };
    let ys = if percent { (ys.0.max(0.0), ys.1.min(100.0)) } else { (ys.0.max(0.0), ys.1) };
    render(path, |root| {
        let mut chart = frame(&root, title, 40).build_cartesian_2d(xs.0..xs.1.max(xs.0 + 1.0), ys.0..ys.1).map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(e)?;
        for (i, s) in series.iter().enumerate() {
            let c = colour(i);
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (x, y * scale)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(e)?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(e)?;
        }
        for (i, r) in refs.iter().enumerate() {
            let c = colour(series.len() + i);
            let y = r.y * scale;
            // Dashes: short segments along the reference.
            let n = 60;
            let step = (xs.1 - xs.0).max(1.0) / n as f64;
            let dashes =
                (0..n).step_by(2).map(move |k| PathElement::new(vec![(xs.0 + k as f64 * step, y), (xs.0 + (k + 1) as f64 * step, y)], c.stroke_width(1)));
            chart
                .draw_series(dashes)
                .map_err(e)?
                .label(format!("{} ({:.2}{})", r.label, y, if percent { "%" } else { "" }))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], c.stroke_width(1)));
        }
        let all: Vec<(f64, f64)> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|&(x, y)| (x, y * scale)))
            .chain(refs.iter().flat_map(|r| [(xs.0, r.y * scale), (xs.1, r.y * scale)]))
            .collect();
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(emptiest_corner(&all, xs, ys))
            .draw()
            .map_err(e)?;
        Ok(())
    })
}

/// Three significant digits, as an axis label.
pub fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

/// Bytes as KiB or MiB, as an axis label.
pub fn bytes(v: f64) -> String {
    if v >= 1048576.0 {
        format!("{} MiB", significant(v / 1048576.0))
    } else {
        format!("{} KiB", significant(v / 1024.0))
    }
}

/// The corner of the plot (in data fractions) with the fewest points, for the legend.
fn emptiest_corner(points: &[(f64, f64)], xs: (f64, f64), ys: (f64, f64)) -> SeriesLabelPosition {
    let frac = |v: f64, (lo, hi): (f64, f64)| (v - lo) / (hi - lo).max(1e-12);
    let count = |right: bool, upper: bool| points.iter().filter(|&&(x, y)| (frac(x, xs) > 0.5) == right && (frac(y, ys) > 0.5) == upper).count();
    [
        (SeriesLabelPosition::LowerRight, count(true, false)),
        (SeriesLabelPosition::UpperRight, count(true, true)),
        (SeriesLabelPosition::LowerLeft, count(false, false)),
        (SeriesLabelPosition::UpperLeft, count(false, true)),
    ]
    .into_iter()
    .min_by_key(|(_, n)| *n)
    .map_or(SeriesLabelPosition::LowerRight, |(p, _)| p)
}

/// Labelled points, one colour per group, each label beside its point; x on a log scale when
/// `log_x`, its ticks written by `x_format`; y in percent.
pub fn scatter_chart(path: &Path, title: &str, x_label: &str, y_label: &str, points: &[Point], log_x: bool, x_format: fn(f64) -> String) -> Result<()> {
    let tx = |x: f64| if log_x { x.max(1e-12).log10() } else { x };
    let xs = span(points.iter().map(|p| tx(p.x)), 0.15);
    let ys = span(points.iter().map(|p| p.y * 100.0), 0.3);
    let ys = if ys.1 - ys.0 < 2.0 { ((ys.0 + ys.1) / 2.0 - 1.0, (ys.0 + ys.1) / 2.0 + 1.0) } else { ys };
    let groups: Vec<&str> = points.iter().fold(Vec::new(), |mut g, p| {
        if !g.contains(&p.group.as_str()) {
            g.push(p.group.as_str());
        }
        g
    });
    let at: Vec<(f64, f64)> = points.iter().map(|p| (tx(p.x), p.y * 100.0)).collect();
    let legend = emptiest_corner(&at, xs, ys);
    render(path, |root| {
        let mut chart = frame(&root, title, 40).build_cartesian_2d(xs.0..xs.1, ys.0..ys.1).map_err(e)?;
        let fmt = |v: &f64| x_format(if log_x { 10f64.powf(*v) } else { *v });
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).x_label_formatter(&fmt).label_style((FONT, 14)).axis_desc_style((FONT, 15)).draw().map_err(e)?;
        for (gi, g) in groups.iter().enumerate() {
            let c = colour(gi);
            let mine: Vec<(usize, &Point)> = points.iter().enumerate().filter(|(_, p)| p.group == *g).collect();
            chart
                .draw_series(mine.iter().map(|(i, _)| Circle::new(at[*i], 6, c.filled())))
                .map_err(e)?
                .label(g.to_string())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
            // The label above and to the right of its point.
            chart.draw_series(mine.iter().map(|(i, p)| EmptyElement::at(at[*i]) + Text::new(p.label.clone(), (8, -18), (FONT, 13).into_font()))).map_err(e)?;
        }
        chart.configure_series_labels().label_font((FONT, 13)).background_style(WHITE.mix(0.85)).border_style(BLACK).position(legend).draw().map_err(e)?;
        Ok(())
    })
}

/// One column per category: each value as a small dot, the mean as a large one, and a bar
/// from the smallest to the largest value (the spread over seeds); y in percent.
pub fn dot_chart(path: &Path, title: &str, y_label: &str, categories: &[(String, Vec<f64>)]) -> Result<()> {
    let ys = span(categories.iter().flat_map(|(_, v)| v.iter().map(|x| x * 100.0)), 0.1);
    let n = categories.len().max(1);
    let names: Vec<String> = categories.iter().map(|(n, _)| n.clone()).collect();
    render(path, |root| {
        let mut chart = frame(&root, title, 110).build_cartesian_2d(-0.5..(n as f64 - 0.5), ys.0..ys.1).map_err(e)?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(n)
            .x_label_formatter(&label)
            .x_label_style((FONT, 13).into_font().transform(FontTransform::Rotate90))
            .disable_x_mesh()
            .y_desc(y_label)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(e)?;
        for (i, (_, values)) in categories.iter().enumerate() {
            if values.is_empty() {
                continue;
            }
            let c = colour(0);
            let x = i as f64;
            let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            chart.draw_series(std::iter::once(ErrorBar::new_vertical(x, lo * 100.0, mean * 100.0, hi * 100.0, c.stroke_width(2), 12))).map_err(e)?;
            chart.draw_series(values.iter().map(|v| Circle::new((x, v * 100.0), 3, colour(1).filled()))).map_err(e)?;
            chart.draw_series(std::iter::once(Circle::new((x, mean * 100.0), 6, c.filled()))).map_err(e)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels of `png` that are neither white nor grey: what the data drew.
    fn coloured_pixels(png: &Path) -> usize {
        let img = image::open(png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), SIZE);
        img.pixels().filter(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap() > 60).count()
    }

    #[test]
    fn charts_are_drawn_with_their_data() {
        let t = tempfile::tempdir().unwrap();
        let series = vec![Series { label: "student".into(), points: vec![(1.0, 0.2), (2.0, 0.4), (3.0, 0.5)] }];
        let refs = vec![Reference { label: "best teacher".into(), y: 0.8 }];
        let lines = t.path().join("lines.png");
        line_chart(&lines, "test accuracy", "epoch", "top-1 (%)", &series, &refs, true).unwrap();
        let empty = t.path().join("empty.png");
        line_chart(&empty, "test accuracy", "epoch", "top-1 (%)", &[], &[], true).unwrap();
        assert!(coloured_pixels(&lines) > coloured_pixels(&empty) + 500, "the series and reference are drawn");
        let pts = vec![
            Point { group: "float".into(), label: "student.onnx".into(), x: 1.2e6, y: 0.5 },
            Point { group: "quantized".into(), label: "w8a8".into(), x: 3.1e5, y: 0.49 },
        ];
        let scatter = t.path().join("scatter.png");
        scatter_chart(&scatter, "accuracy vs size", "file size", "top-1 (%)", &pts, true, bytes).unwrap();
        assert_eq!((significant(0.31623), significant(31.623), significant(1234.6)), ("0.316".into(), "31.6".into(), "1235".into()));
        assert_eq!((bytes(300_000.0), bytes(1_200_000.0)), ("293 KiB".into(), "1.14 MiB".into()));
        assert!(coloured_pixels(&scatter) > 100);
        let dots = t.path().join("dots.png");
        dot_chart(&dots, "methods", "best top-1 (%)", &[("aver".into(), vec![0.68, 0.69, 0.70]), ("kd".into(), vec![0.66, 0.67])]).unwrap();
        assert!(coloured_pixels(&dots) > 100);
    }
}
