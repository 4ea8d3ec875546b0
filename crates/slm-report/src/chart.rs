//! The line chart: series of (x, y) points drawn over axes with ticks, labels and a legend.
//!
//! Owns the chart's data model ([`LineChart`], [`Series`]), which points are drawn (non-finite
//! ones are skipped and break the line; a log-scale y axis rejects values ≤ 0), the layout of
//! title, axes, tick labels and legend on the canvas, and the colours. Drawing primitives live
//! in [`crate::canvas`], tick placement and number formatting in [`crate::ticks`], the file in
//! [`crate::png_out`].

use std::path::Path;

use slm_core::{Error, Result};

use crate::canvas::{Canvas, Rect, Rgb};
use crate::font;
use crate::png_out;
use crate::ticks::{format_compact, log_ticks, nice_ticks};

/// Series colours, in order of addition (the ninth series reuses the first colour).
/// Tableau 10 without its grey and olive, which read poorly against the grid and text.
pub const PALETTE: [Rgb; 8] = [
    Rgb(31, 119, 180),  // blue
    Rgb(255, 127, 14),  // orange
    Rgb(44, 160, 44),   // green
    Rgb(214, 39, 40),   // red
    Rgb(148, 103, 189), // purple
    Rgb(140, 86, 75),   // brown
    Rgb(227, 119, 194), // pink
    Rgb(23, 190, 207),  // cyan
];

/// Series with at most this many drawable points get markers under [`Markers::Auto`].
pub const AUTO_MARKER_MAX_POINTS: usize = 20;

/// Default image size in pixels.
pub const DEFAULT_WIDTH: u32 = 800;
pub const DEFAULT_HEIGHT: u32 = 500;

/// Accepted image sizes in pixels (each side).
const MIN_WIDTH: u32 = 240;
const MIN_HEIGHT: u32 = 160;
const MAX_SIDE: u32 = 8192;

const BACKGROUND: Rgb = Rgb::WHITE;
const TITLE_COLOUR: Rgb = Rgb(20, 20, 20);
const LABEL_COLOUR: Rgb = Rgb(40, 40, 40);
const TICK_LABEL_COLOUR: Rgb = Rgb(80, 80, 80);
const FRAME_COLOUR: Rgb = Rgb(110, 110, 110);
const GRID_COLOUR: Rgb = Rgb(230, 230, 230);
const LEGEND_BORDER: Rgb = Rgb(190, 190, 190);

/// Text is the 5×7 font at twice its size; the title at three times.
const TEXT_SCALE: u32 = 2;
const TITLE_SCALE: u32 = 3;
const LINE_WIDTH: f64 = 2.0;
const MARKER_RADIUS: f64 = 3.5;
const TICK_LEN: i32 = 5;
const PAD: i32 = 14;
/// Longest series name shown in the legend, in characters.
const LEGEND_NAME_MAX: usize = 40;

/// One line of the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// When to draw a marker at each point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Markers {
    /// For series with at most [`AUTO_MARKER_MAX_POINTS`] drawable points.
    #[default]
    Auto,
    Always,
    /// Never, except for a series with a single point (which would otherwise be invisible).
    Never,
}

/// A line chart rendered to an RGB buffer or a PNG file.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Logarithmic y axis (every drawn y must then be > 0).
    pub log_y: bool,
    pub markers: Markers,
    pub width: u32,
    pub height: u32,
}

impl LineChart {
    /// An empty 800×500 chart with linear axes.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        LineChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            log_y: false,
            markers: Markers::Auto,
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
        }
    }

    /// Adds a series; its colour is the next one in [`PALETTE`].
    pub fn add(&mut self, name: impl Into<String>, points: impl IntoIterator<Item = (f64, f64)>) {
        self.series.push(Series {
            name: name.into(),
            points: points.into_iter().collect(),
        });
    }

    /// The colour of the `index`-th series.
    pub fn series_colour(index: usize) -> Rgb {
        PALETTE[index % PALETTE.len()]
    }

    /// Renders the chart and writes it to `path` as PNG, atomically, creating missing
    /// parent directories.
    pub fn render_png(&self, path: &Path) -> Result<()> {
        let (width, height, rgb) = self.render_rgb()?;
        png_out::write_png(path, width, height, &rgb)
    }

    /// Renders the chart: `(width, height, pixels)` with 3 bytes (R, G, B) per pixel, rows
    /// top to bottom.
    ///
    /// Fails with [`Error::InvalidArgument`] when there is nothing to plot (no finite point in
    /// any series), when `log_y` is set and a finite y is ≤ 0, or for an unusable size.
    pub fn render_rgb(&self) -> Result<(u32, u32, Vec<u8>)> {
        self.check_size()?;
        let data = self.prepare()?;
        let frame = Frame::fit(self, &data)?;
        let mut canvas = Canvas::new(self.width, self.height, BACKGROUND);
        frame.draw_axes(&mut canvas, self);
        for s in &data {
            frame.draw_series(&mut canvas, s);
        }
        frame.draw_legend(&mut canvas, &data);
        Ok((self.width, self.height, canvas.into_pixels()))
    }

    fn check_size(&self) -> Result<()> {
        let ok_w = (MIN_WIDTH..=MAX_SIDE).contains(&self.width);
        let ok_h = (MIN_HEIGHT..=MAX_SIDE).contains(&self.height);
        if ok_w && ok_h {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "chart size {}x{} is outside {MIN_WIDTH}x{MIN_HEIGHT} to {MAX_SIDE}x{MAX_SIDE}",
                self.width, self.height
            )))
        }
    }

    /// The drawable points of every series, y already on the axis scale (log10 for `log_y`);
    /// a non-finite point becomes `None` and breaks the line.
    fn prepare(&self) -> Result<Vec<Prepared>> {
        let mut out = Vec::with_capacity(self.series.len());
        let mut total = 0;
        for (i, s) in self.series.iter().enumerate() {
            let mut points = Vec::with_capacity(s.points.len());
            let mut count = 0;
            for &(x, y) in &s.points {
                if !x.is_finite() || !y.is_finite() {
                    points.push(None);
                    continue;
                }
                let y = if self.log_y {
                    if y <= 0.0 {
                        return Err(Error::invalid(format!(
                            "log_y needs positive y values, but series `{}` has y = {y} at x = {x}",
                            s.name
                        )));
                    }
                    y.log10()
                } else {
                    y
                };
                points.push(Some((x, y)));
                count += 1;
            }
            total += count;
            let markers = match self.markers {
                Markers::Always => true,
                Markers::Auto => count <= AUTO_MARKER_MAX_POINTS,
                Markers::Never => count == 1,
            };
            out.push(Prepared {
                name: s.name.clone(),
                colour: Self::series_colour(i),
                points,
                markers,
            });
        }
        if total == 0 {
            return Err(Error::invalid(if self.series.is_empty() {
                "nothing to plot: the chart has no series".to_string()
            } else {
                "nothing to plot: no series has a finite (x, y) point".to_string()
            }));
        }
        Ok(out)
    }
}

/// A series ready to draw.
struct Prepared {
    name: String,
    colour: Rgb,
    /// (x, y on the axis scale); `None` where the input point was not finite.
    points: Vec<Option<(f64, f64)>>,
    markers: bool,
}

/// A tick: its position on the axis scale and its label.
struct Tick {
    at: f64,
    label: String,
}

/// Where everything goes: the plot rectangle, the data ranges it shows, and the ticks.
struct Frame {
    plot: Rect,
    /// Shown x range.
    x0: f64,
    x1: f64,
    /// Shown y range on the axis scale (log10 of the value for a log axis).
    y0: f64,
    y1: f64,
    x_ticks: Vec<Tick>,
    y_ticks: Vec<Tick>,
}

/// Height of a line of axis text in pixels.
const TEXT_H: i32 = (font::GLYPH_H * TEXT_SCALE) as i32;

/// Width in pixels of `text` at `scale`.
fn text_w(text: &str, scale: u32) -> i32 {
    (font::text_width(text) * scale) as i32
}

impl Frame {
    fn fit(chart: &LineChart, data: &[Prepared]) -> Result<Frame> {
        let (x0, x1, y0, y1) = ranges(data)?;
        let (w, h) = (chart.width as i32, chart.height as i32);

        let title_h = if chart.title.is_empty() {
            0
        } else {
            (font::GLYPH_H * TITLE_SCALE) as i32 + 14
        };
        let top = PAD + title_h + TEXT_H / 2;
        let x_label_h = if chart.x_label.is_empty() {
            0
        } else {
            TEXT_H + 10
        };
        let bottom = TICK_LEN + 6 + TEXT_H + x_label_h + PAD;
        let plot_h = h - top - bottom;

        let max_y = (plot_h / 45).clamp(2, 10) as usize;
        let y_ticks: Vec<Tick> = if chart.log_y {
            log_ticks(10f64.powf(y0), 10f64.powf(y1), max_y)
                .into_iter()
                .map(|v| Tick {
                    at: v.log10(),
                    label: format_compact(v),
                })
                .collect()
        } else {
            nice_ticks(y0, y1, max_y)
                .into_iter()
                .map(|v| Tick {
                    at: v,
                    label: format_compact(v),
                })
                .collect()
        };
        let y_label_w = y_ticks
            .iter()
            .map(|t| text_w(&t.label, TEXT_SCALE))
            .max()
            .unwrap_or(0);
        let y_title_w = if chart.y_label.is_empty() {
            0
        } else {
            TEXT_H + 12
        };
        let left = PAD + y_title_w + y_label_w + 6 + TICK_LEN;

        // The last x label may stick out past the plot; widen the right margin if it would be cut.
        let mut right = PAD + 10;
        let mut x_ticks = Vec::new();
        for _ in 0..2 {
            let plot_w = w - left - right;
            x_ticks = fit_x_ticks(x0, x1, plot_w);
            let overhang = match x_ticks.last() {
                Some(t) => {
                    let px = (t.at - x0) / (x1 - x0) * plot_w as f64;
                    (px + text_w(&t.label, TEXT_SCALE) as f64 / 2.0 - plot_w as f64).ceil() as i32
                }
                None => 0,
            };
            if overhang + 4 <= right {
                break;
            }
            right = overhang + 4;
        }
        let plot = Rect::new(left, top, w - left - right, plot_h);
        if plot.w < 40 || plot.h < 40 {
            return Err(Error::invalid(format!(
                "chart size {}x{} leaves no room for the plot (labels too long?)",
                chart.width, chart.height
            )));
        }
        Ok(Frame {
            plot,
            x0,
            x1,
            y0,
            y1,
            x_ticks,
            y_ticks,
        })
    }

    /// Pixel column (continuous) of x.
    fn px(&self, x: f64) -> f64 {
        self.plot.x as f64 + (x - self.x0) / (self.x1 - self.x0) * self.plot.w as f64
    }

    /// Pixel row (continuous) of y on the axis scale.
    fn py(&self, y: f64) -> f64 {
        self.plot.bottom() as f64 - (y - self.y0) / (self.y1 - self.y0) * self.plot.h as f64
    }

    fn draw_axes(&self, canvas: &mut Canvas, chart: &LineChart) {
        let p = self.plot;
        // Grid, tick marks and tick labels.
        for t in &self.x_ticks {
            let cx = (self.px(t.at).floor() as i32).clamp(p.x, p.right() - 1);
            canvas.fill_rect(Rect::new(cx, p.y, 1, p.h), GRID_COLOUR);
            canvas.fill_rect(Rect::new(cx, p.bottom() + 1, 1, TICK_LEN), FRAME_COLOUR);
            let lw = text_w(&t.label, TEXT_SCALE);
            let ly = p.bottom() + 1 + TICK_LEN + 5;
            canvas.text(cx - lw / 2, ly, &t.label, TEXT_SCALE, TICK_LABEL_COLOUR);
        }
        for t in &self.y_ticks {
            let cy = (self.py(t.at).floor() as i32).clamp(p.y, p.bottom() - 1);
            canvas.fill_rect(Rect::new(p.x, cy, p.w, 1), GRID_COLOUR);
            canvas.fill_rect(Rect::new(p.x - 1 - TICK_LEN, cy, TICK_LEN, 1), FRAME_COLOUR);
            let lw = text_w(&t.label, TEXT_SCALE);
            let lx = p.x - 1 - TICK_LEN - 6 - lw;
            canvas.text(lx, cy - TEXT_H / 2, &t.label, TEXT_SCALE, TICK_LABEL_COLOUR);
        }
        canvas.stroke_rect(Rect::new(p.x - 1, p.y - 1, p.w + 2, p.h + 2), FRAME_COLOUR);

        // Title over the plot, axis labels beside it.
        let centre_x = p.x + p.w / 2;
        if !chart.title.is_empty() {
            let tw = text_w(&chart.title, TITLE_SCALE);
            let cw = canvas.width() as i32;
            // Centred over the plot, pulled in to stay on the canvas (centred on it if too wide).
            let tx = (centre_x - tw / 2)
                .min(cw - PAD - tw)
                .max(PAD.min((cw - tw) / 2));
            canvas.text(tx, PAD, &chart.title, TITLE_SCALE, TITLE_COLOUR);
        }
        if !chart.x_label.is_empty() {
            let lw = text_w(&chart.x_label, TEXT_SCALE);
            let ly = canvas.height() as i32 - PAD - TEXT_H;
            canvas.text(
                centre_x - lw / 2,
                ly,
                &chart.x_label,
                TEXT_SCALE,
                LABEL_COLOUR,
            );
        }
        if !chart.y_label.is_empty() {
            let lh = text_w(&chart.y_label, TEXT_SCALE);
            let ly = (p.y + p.h / 2 - lh / 2).max(0);
            canvas.text_up(PAD, ly, &chart.y_label, TEXT_SCALE, LABEL_COLOUR);
        }
    }

    fn draw_series(&self, canvas: &mut Canvas, s: &Prepared) {
        let mut run: Vec<(f64, f64)> = Vec::new();
        for point in s.points.iter().chain(std::iter::once(&None)) {
            match point {
                Some((x, y)) => run.push((self.px(*x), self.py(*y))),
                None => {
                    canvas.polyline(&run, LINE_WIDTH, s.colour, self.plot);
                    run.clear();
                }
            }
        }
        if s.markers {
            for (x, y) in s.points.iter().flatten() {
                draw_marker(canvas, self.px(*x), self.py(*y), s.colour, self.plot);
            }
        }
    }

    /// A legend box in the plot corner that hides the least of what is drawn there.
    fn draw_legend(&self, canvas: &mut Canvas, data: &[Prepared]) {
        let entries: Vec<(&Prepared, String)> = data
            .iter()
            .filter(|s| !s.name.is_empty())
            .map(|s| (s, shorten(&s.name, LEGEND_NAME_MAX)))
            .collect();
        if entries.is_empty() {
            return;
        }
        const SWATCH: i32 = 28;
        const ROW: i32 = TEXT_H + 8;
        const INSET: i32 = 10;
        const PAD_IN: i32 = 8;
        let name_w = entries
            .iter()
            .map(|(_, n)| text_w(n, TEXT_SCALE))
            .max()
            .unwrap_or(0);
        let w = PAD_IN + SWATCH + 8 + name_w + PAD_IN + 2;
        let h = PAD_IN + entries.len() as i32 * ROW - 8 + PAD_IN;
        let p = self.plot;
        let candidates = [
            Rect::new(p.right() - INSET - w, p.y + INSET, w, h),
            Rect::new(p.x + INSET, p.y + INSET, w, h),
            Rect::new(p.right() - INSET - w, p.bottom() - INSET - h, w, h),
            Rect::new(p.x + INSET, p.bottom() - INSET - h, w, h),
        ];
        let mut best = candidates[0];
        let mut best_ink = usize::MAX;
        for c in candidates {
            let ink = ink_in(canvas, c);
            if ink < best_ink {
                best = c;
                best_ink = ink;
            }
        }
        let r = best;
        canvas.fill_rect(r, BACKGROUND);
        canvas.stroke_rect(r, LEGEND_BORDER);
        for (row, (s, name)) in entries.iter().enumerate() {
            let top = r.y + PAD_IN + row as i32 * ROW;
            let cy = top as f64 + TEXT_H as f64 / 2.0;
            let sx = (r.x + PAD_IN) as f64;
            canvas.polyline(
                &[(sx, cy), (sx + SWATCH as f64, cy)],
                LINE_WIDTH,
                s.colour,
                r,
            );
            if s.markers {
                draw_marker(canvas, sx + SWATCH as f64 / 2.0, cy, s.colour, r);
            }
            canvas.text(
                r.x + PAD_IN + SWATCH + 8,
                top,
                name,
                TEXT_SCALE,
                LABEL_COLOUR,
            );
        }
    }
}

/// A filled disc in the series colour with a thin white ring, so it stands out on its line.
fn draw_marker(canvas: &mut Canvas, x: f64, y: f64, colour: Rgb, clip: Rect) {
    canvas.disc(x, y, MARKER_RADIUS + 1.25, BACKGROUND, clip);
    canvas.disc(x, y, MARKER_RADIUS, colour, clip);
}

/// How many pixels in `r` are neither background nor grid.
fn ink_in(canvas: &Canvas, r: Rect) -> usize {
    let mut n = 0;
    for y in r.y..r.bottom() {
        for x in r.x..r.right() {
            if let Some(c) = canvas.get(x, y) {
                if c != BACKGROUND && c != GRID_COLOUR {
                    n += 1;
                }
            }
        }
    }
    n
}

/// `name` cut to `max` characters, ending in `...` when cut.
fn shorten(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_string()
    } else {
        let head: String = name.chars().take(max.saturating_sub(3)).collect();
        format!("{head}...")
    }
}

/// The shown x and y ranges (y on the axis scale): the data's extent plus a margin, widened
/// when all values are equal.
fn ranges(data: &[Prepared]) -> Result<(f64, f64, f64, f64)> {
    let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
    let mut ys = (f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in data.iter().flat_map(|s| s.points.iter().flatten()) {
        xs = (xs.0.min(*x), xs.1.max(*x));
        ys = (ys.0.min(*y), ys.1.max(*y));
    }
    if !(xs.0 <= xs.1 && ys.0 <= ys.1) {
        return Err(Error::invalid("nothing to plot: no finite points"));
    }
    let (x0, x1) = padded(xs, 0.03);
    let (y0, y1) = padded(ys, 0.06);
    if !(x0.is_finite() && x1.is_finite() && y0.is_finite() && y1.is_finite()) {
        return Err(Error::invalid("the data's range is too large to plot"));
    }
    Ok((x0, x1, y0, y1))
}

/// `(lo, hi)` widened by `margin` of its span on each side; a single value gets a span.
fn padded((lo, hi): (f64, f64), margin: f64) -> (f64, f64) {
    if hi > lo {
        let m = (hi - lo) * margin;
        (lo - m, hi + m)
    } else {
        let half = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - half, hi + half)
    }
}

/// X ticks whose labels fit side by side in `plot_w` pixels.
fn fit_x_ticks(x0: f64, x1: f64, plot_w: i32) -> Vec<Tick> {
    let mut max = (plot_w / 80).clamp(2, 12) as usize;
    loop {
        let ticks: Vec<Tick> = nice_ticks(x0, x1, max)
            .into_iter()
            .map(|v| Tick {
                at: v,
                label: format_compact(v),
            })
            .collect();
        let widest = ticks
            .iter()
            .map(|t| text_w(&t.label, TEXT_SCALE))
            .max()
            .unwrap_or(0);
        let spacing = if ticks.len() > 1 {
            (ticks[1].at - ticks[0].at) / (x1 - x0) * plot_w as f64
        } else {
            f64::INFINITY
        };
        if spacing >= (widest + 16) as f64 || max <= 2 {
            return ticks;
        }
        max -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_chart_is_an_error() {
        let chart = LineChart::new("t", "x", "y");
        let err = chart.render_rgb().unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(ref m) if m.contains("nothing to plot")),
            "{err}"
        );

        let mut chart = LineChart::new("t", "x", "y");
        chart.add("nan", vec![(0.0, f64::NAN), (f64::INFINITY, 1.0)]);
        chart.add("empty", Vec::new());
        let err = chart.render_rgb().unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(ref m) if m.contains("nothing to plot")),
            "{err}"
        );
    }

    #[test]
    fn bad_size_is_an_error() {
        let mut chart = LineChart::new("t", "x", "y");
        chart.add("a", vec![(0.0, 1.0), (1.0, 2.0)]);
        chart.width = 10;
        assert!(matches!(chart.render_rgb(), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn single_point_gets_a_marker() {
        let mut chart = LineChart::new("", "", "");
        chart.markers = Markers::Never;
        chart.add("one", vec![(3.0, 4.0)]);
        let (w, h, rgb) = chart.render_rgb().unwrap();
        let blue = PALETTE[0];
        let solid = rgb
            .chunks(3)
            .filter(|p| *p == [blue.0, blue.1, blue.2])
            .count();
        // A disc of radius 3.5 (about 38 pixels) plus the legend swatch and its marker.
        assert!(solid > 30, "{solid} blue pixels in {w}x{h}");
    }

    #[test]
    fn padded_ranges() {
        assert_eq!(padded((0.0, 10.0), 0.1), (-1.0, 11.0));
        assert_eq!(padded((0.0, 0.0), 0.1), (-1.0, 1.0));
        assert_eq!(padded((5.0, 5.0), 0.1), (4.5, 5.5));
    }

    #[test]
    fn shorten_long_names() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdefgh", 5), "ab...");
    }
}
