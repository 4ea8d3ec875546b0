//! An RGB pixel buffer and the few drawing operations a chart needs.
//!
//! Owns pixels and how shapes become pixels: solid rectangles, anti-aliased thick polylines
//! and discs, and text from the built-in bitmap font (horizontal, or turned a quarter turn
//! anticlockwise for a y-axis label). Coordinates are pixels with (0, 0) the top-left corner;
//! pixel (i, j) covers the square [i, i+1) × [j, j+1), so its centre is (i + 0.5, j + 0.5).
//! Everything is clipped to the canvas, and shapes can be clipped further to a [`Rect`].
//!
//! Lines are anti-aliased by coverage rather than by Xiaolin Wu's algorithm: each pixel's
//! coverage is its centre's distance to the segment against the half width, which handles
//! any width and gives round joins and caps. A polyline keeps the largest coverage per pixel
//! before blending once, so joins between segments are not darkened by double blending.

use crate::font;

/// An opaque colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    pub const WHITE: Rgb = Rgb(255, 255, 255);
    pub const BLACK: Rgb = Rgb(0, 0, 0);

    /// `self` over `under` at opacity `alpha` in [0, 1].
    fn over(self, under: Rgb, alpha: f32) -> Rgb {
        let mix = |a: u8, b: u8| (a as f32 * alpha + b as f32 * (1.0 - alpha)).round() as u8;
        Rgb(
            mix(self.0, under.0),
            mix(self.1, under.1),
            mix(self.2, under.2),
        )
    }
}

/// An axis-aligned rectangle of whole pixels: columns `x..x + w`, rows `y..y + h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub fn new(x: i32, y: i32, w: i32, h: i32) -> Self {
        Rect { x, y, w, h }
    }

    /// One past the last column.
    pub fn right(&self) -> i32 {
        self.x + self.w
    }

    /// One past the last row.
    pub fn bottom(&self) -> i32 {
        self.y + self.h
    }

    /// Whether the pixel (x, y) lies inside.
    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.x && x < self.right() && y >= self.y && y < self.bottom()
    }

    /// The overlap of two rectangles (possibly empty: `w` or `h` ≤ 0).
    pub fn intersect(&self, other: &Rect) -> Rect {
        let x = self.x.max(other.x);
        let y = self.y.max(other.y);
        Rect::new(
            x,
            y,
            self.right().min(other.right()) - x,
            self.bottom().min(other.bottom()) - y,
        )
    }

    fn is_empty(&self) -> bool {
        self.w <= 0 || self.h <= 0
    }
}

/// An RGB image, three bytes per pixel, rows top to bottom.
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A `width` × `height` canvas filled with `background`.
    pub fn new(width: u32, height: u32, background: Rgb) -> Self {
        let n = width as usize * height as usize;
        let mut pixels = Vec::with_capacity(n * 3);
        for _ in 0..n {
            pixels.extend_from_slice(&[background.0, background.1, background.2]);
        }
        Canvas {
            width,
            height,
            pixels,
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The whole canvas as a rectangle.
    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width as i32, self.height as i32)
    }

    /// The pixel bytes, RGB, row-major.
    pub fn into_pixels(self) -> Vec<u8> {
        self.pixels
    }

    /// The colour at (x, y), or `None` outside the canvas.
    pub fn get(&self, x: i32, y: i32) -> Option<Rgb> {
        let i = self.index(x, y)?;
        Some(Rgb(self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]))
    }

    /// Sets (x, y) to `c`; ignored outside the canvas.
    pub fn set(&mut self, x: i32, y: i32, c: Rgb) {
        if let Some(i) = self.index(x, y) {
            self.pixels[i..i + 3].copy_from_slice(&[c.0, c.1, c.2]);
        }
    }

    /// Paints `c` over (x, y) at opacity `alpha`; ignored outside the canvas.
    pub fn blend(&mut self, x: i32, y: i32, c: Rgb, alpha: f32) {
        if alpha >= 1.0 {
            self.set(x, y, c);
        } else if alpha > 0.0 {
            if let Some(under) = self.get(x, y) {
                self.set(x, y, c.over(under, alpha));
            }
        }
    }

    /// Fills `r` with `c`.
    pub fn fill_rect(&mut self, r: Rect, c: Rgb) {
        let r = r.intersect(&self.bounds());
        for y in r.y..r.bottom() {
            for x in r.x..r.right() {
                self.set(x, y, c);
            }
        }
    }

    /// Draws the one-pixel outline just inside `r`.
    pub fn stroke_rect(&mut self, r: Rect, c: Rgb) {
        if r.is_empty() {
            return;
        }
        self.fill_rect(Rect::new(r.x, r.y, r.w, 1), c);
        self.fill_rect(Rect::new(r.x, r.bottom() - 1, r.w, 1), c);
        self.fill_rect(Rect::new(r.x, r.y, 1, r.h), c);
        self.fill_rect(Rect::new(r.right() - 1, r.y, 1, r.h), c);
    }

    /// An anti-aliased line of `width` pixels through `points` (continuous coordinates),
    /// drawn only inside `clip`. Non-finite points are not expected here (the chart drops
    /// them); any that arrive break the line.
    pub fn polyline(&mut self, points: &[(f64, f64)], width: f64, c: Rgb, clip: Rect) {
        let clip = clip.intersect(&self.bounds());
        if clip.is_empty() || points.is_empty() {
            return;
        }
        let mut mask = Coverage::new(clip);
        let half = width / 2.0;
        if points.len() == 1 {
            let (x, y) = points[0];
            mask.segment((x, y), (x, y), half);
        }
        for pair in points.windows(2) {
            let ok = |p: (f64, f64)| p.0.is_finite() && p.1.is_finite();
            if ok(pair[0]) && ok(pair[1]) {
                mask.segment(pair[0], pair[1], half);
            }
        }
        mask.paint(self, c);
    }

    /// An anti-aliased filled disc of radius `r` centred at (cx, cy), inside `clip`.
    pub fn disc(&mut self, cx: f64, cy: f64, r: f64, c: Rgb, clip: Rect) {
        let clip = clip.intersect(&self.bounds());
        if clip.is_empty() {
            return;
        }
        let mut mask = Coverage::new(clip);
        mask.segment((cx, cy), (cx, cy), r);
        mask.paint(self, c);
    }

    /// Writes `text` with its top-left corner at (x, y), each font pixel a `scale` × `scale`
    /// square. Characters outside printable ASCII show as `?`.
    pub fn text(&mut self, x: i32, y: i32, text: &str, scale: u32, c: Rgb) {
        let s = scale as i32;
        for (n, ch) in text.chars().enumerate() {
            let left = x + n as i32 * font::ADVANCE as i32 * s;
            for (row, bits) in font::glyph(ch).iter().enumerate() {
                for col in 0..font::GLYPH_W {
                    if bits & (1 << (font::GLYPH_W - 1 - col)) != 0 {
                        let px = left + col as i32 * s;
                        let py = y + row as i32 * s;
                        self.fill_rect(Rect::new(px, py, s, s), c);
                    }
                }
            }
        }
    }

    /// Writes `text` turned a quarter turn anticlockwise (read bottom to top), its bounding
    /// box's top-left corner at (x, y). The box is `font::CELL_H·scale` wide (the tops of
    /// the letters face left, descenders reach right) and `font::text_width(text)·scale` tall.
    pub fn text_up(&mut self, x: i32, y: i32, text: &str, scale: u32, c: Rgb) {
        let s = scale as i32;
        let total = font::text_width(text) as i32;
        for (n, ch) in text.chars().enumerate() {
            let along0 = n as i32 * font::ADVANCE as i32;
            for (row, bits) in font::glyph(ch).iter().enumerate() {
                for col in 0..font::GLYPH_W {
                    if bits & (1 << (font::GLYPH_W - 1 - col)) != 0 {
                        let along = along0 + col as i32;
                        let px = x + row as i32 * s;
                        let py = y + (total - 1 - along) * s;
                        self.fill_rect(Rect::new(px, py, s, s), c);
                    }
                }
            }
        }
    }

    fn index(&self, x: i32, y: i32) -> Option<usize> {
        if x < 0 || y < 0 || x as u32 >= self.width || y as u32 >= self.height {
            return None;
        }
        Some((y as usize * self.width as usize + x as usize) * 3)
    }
}

/// Per-pixel coverage in [0, 1] over a clip rectangle, combined by maximum.
struct Coverage {
    clip: Rect,
    values: Vec<f32>,
    /// The part of `clip` any shape touched, to paint only that.
    touched: Option<Rect>,
}

impl Coverage {
    fn new(clip: Rect) -> Self {
        let n = clip.w.max(0) as usize * clip.h.max(0) as usize;
        Coverage {
            clip,
            values: vec![0.0; n],
            touched: None,
        }
    }

    /// Covers the pixels whose centres lie within `half` (plus half a pixel of fade) of the
    /// segment from `a` to `b`; a zero-length segment makes a disc.
    fn segment(&mut self, a: (f64, f64), b: (f64, f64), half: f64) {
        let reach = half + 1.0;
        let bbox = Rect::new(
            (a.0.min(b.0) - reach).floor().max(-1e9) as i32,
            (a.1.min(b.1) - reach).floor().max(-1e9) as i32,
            0,
            0,
        );
        let right = (a.0.max(b.0) + reach).ceil().min(1e9) as i32;
        let bottom = (a.1.max(b.1) + reach).ceil().min(1e9) as i32;
        let bbox = Rect::new(bbox.x, bbox.y, right - bbox.x, bottom - bbox.y).intersect(&self.clip);
        if bbox.is_empty() {
            return;
        }
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        for y in bbox.y..bbox.bottom() {
            for x in bbox.x..bbox.right() {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let t = if len2 > 0.0 {
                    (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (qx, qy) = (a.0 + t * dx - px, a.1 + t * dy - py);
                let d = (qx * qx + qy * qy).sqrt();
                let cov = (half + 0.5 - d).clamp(0.0, 1.0) as f32;
                if cov > 0.0 {
                    let i = (y - self.clip.y) as usize * self.clip.w as usize
                        + (x - self.clip.x) as usize;
                    if cov > self.values[i] {
                        self.values[i] = cov;
                    }
                }
            }
        }
        self.touched = Some(match self.touched {
            None => bbox,
            Some(t) => {
                let x = t.x.min(bbox.x);
                let y = t.y.min(bbox.y);
                let r = t.right().max(bbox.right());
                let btm = t.bottom().max(bbox.bottom());
                Rect::new(x, y, r - x, btm - y)
            }
        });
    }

    fn paint(&self, canvas: &mut Canvas, c: Rgb) {
        let Some(t) = self.touched else { return };
        for y in t.y..t.bottom() {
            for x in t.x..t.right() {
                let i =
                    (y - self.clip.y) as usize * self.clip.w as usize + (x - self.clip.x) as usize;
                canvas.blend(x, y, c, self.values[i]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_and_get() {
        let mut c = Canvas::new(10, 5, Rgb::WHITE);
        c.fill_rect(Rect::new(-3, 1, 5, 2), Rgb::BLACK);
        assert_eq!(c.get(0, 1), Some(Rgb::BLACK));
        assert_eq!(c.get(1, 2), Some(Rgb::BLACK));
        assert_eq!(c.get(2, 1), Some(Rgb::WHITE));
        assert_eq!(c.get(0, 0), Some(Rgb::WHITE));
        assert_eq!(c.get(10, 0), None);
        assert_eq!(c.into_pixels().len(), 150);
    }

    #[test]
    fn polyline_core_is_solid_and_edges_blend() {
        let red = Rgb(200, 0, 0);
        let mut c = Canvas::new(40, 40, Rgb::WHITE);
        let clip = c.bounds();
        c.polyline(&[(2.0, 20.0), (38.0, 20.0)], 2.0, red, clip);
        assert_eq!(c.get(20, 19), Some(red));
        assert_eq!(c.get(20, 20), Some(red));
        assert_eq!(c.get(20, 17), Some(Rgb::WHITE));
        // A diagonal line has partly covered pixels beside its core.
        let mut d = Canvas::new(40, 40, Rgb::WHITE);
        d.polyline(&[(0.0, 0.0), (40.0, 13.0)], 2.0, red, clip);
        let pixels = d.into_pixels();
        let partial = pixels.chunks(3).filter(|p| p[1] > 0 && p[1] < 255).count();
        assert!(partial > 10, "{partial}");
    }

    #[test]
    fn polyline_respects_clip() {
        let mut c = Canvas::new(20, 20, Rgb::WHITE);
        c.polyline(
            &[(0.0, 10.0), (20.0, 10.0)],
            3.0,
            Rgb::BLACK,
            Rect::new(5, 0, 5, 20),
        );
        assert_eq!(c.get(3, 10), Some(Rgb::WHITE));
        assert_eq!(c.get(7, 10), Some(Rgb::BLACK));
        assert_eq!(c.get(12, 10), Some(Rgb::WHITE));
    }

    #[test]
    fn disc_is_round() {
        let mut c = Canvas::new(20, 20, Rgb::WHITE);
        let clip = c.bounds();
        c.disc(10.0, 10.0, 4.0, Rgb::BLACK, clip);
        assert_eq!(c.get(10, 10), Some(Rgb::BLACK));
        assert_eq!(c.get(10, 7), Some(Rgb::BLACK));
        assert_eq!(c.get(6, 6), Some(Rgb::WHITE));
        assert_eq!(c.get(10, 15), Some(Rgb::WHITE));
    }

    #[test]
    fn text_draws_glyph_pixels() {
        let mut c = Canvas::new(20, 20, Rgb::WHITE);
        c.text(1, 1, "I", 2, Rgb::BLACK);
        // `I` has a full vertical bar in its middle column (column 2).
        for row in 0..7 {
            assert_eq!(c.get(1 + 4, 1 + row * 2), Some(Rgb::BLACK));
        }
        assert_eq!(c.get(1, 5), Some(Rgb::WHITE));
    }

    #[test]
    fn text_up_is_rotated() {
        // `-` is a horizontal bar: turned, it becomes a vertical bar in column 3.
        let mut c = Canvas::new(10, 10, Rgb::WHITE);
        c.text_up(0, 0, "-", 1, Rgb::BLACK);
        for y in 0..5 {
            assert_eq!(c.get(3, y), Some(Rgb::BLACK), "row {y}");
        }
        assert_eq!(c.get(2, 2), Some(Rgb::WHITE));
    }
}
