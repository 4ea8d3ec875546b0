//! End-to-end checks of chart rendering: PNG on disk, colours, text, errors.

use std::path::Path;

use slm_core::Error;
use slm_report::{LineChart, Markers, Rgb, PALETTE};

fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn pixel(rgb: &[u8], width: u32, x: u32, y: u32) -> Rgb {
    let i = ((y * width + x) * 3) as usize;
    Rgb(rgb[i], rgb[i + 1], rgb[i + 2])
}

/// Pixels of exactly `colour` in the rectangle `x0..x1` × `y0..y1`.
fn count(rgb: &[u8], width: u32, (x0, x1, y0, y1): (u32, u32, u32, u32), colour: Rgb) -> usize {
    let mut n = 0;
    for y in y0..y1 {
        for x in x0..x1 {
            if pixel(rgb, width, x, y) == colour {
                n += 1;
            }
        }
    }
    n
}

fn two_series() -> LineChart {
    let mut chart = LineChart::new("Training loss", "step", "loss");
    chart.add(
        "train",
        (0..=200).map(|i| (i as f64 * 10.0, 2.0 + 8.0 / (1.0 + i as f64 / 10.0))),
    );
    chart.add(
        "validation",
        (0..=8).map(|i| (i as f64 * 250.0, 2.5 + 7.0 / (1.0 + i as f64))),
    );
    chart
}

#[test]
fn two_series_png_has_size_colours_and_title() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plots").join("loss.png");
    let chart = two_series();
    chart.render_png(&path).unwrap();

    let (w, h, rgb) = decode(&path);
    assert_eq!((w, h), (800, 500));
    assert_eq!(rgb.len(), 800 * 500 * 3);

    // Both series cross the middle of the plot, away from the legend in a corner.
    let middle = (w * 3 / 10, w * 7 / 10, 60, h - 80);
    for (i, colour) in PALETTE.iter().take(2).enumerate() {
        let n = count(&rgb, w, middle, *colour);
        assert!(
            n > 50,
            "series {i}: only {n} pixels of {colour:?} in the plot"
        );
    }
    assert_eq!(
        count(&rgb, w, middle, PALETTE[2]),
        0,
        "a third colour with two series"
    );

    // The title is dark text in the top band, roughly centred.
    let dark = |p: Rgb| p.0 < 100 && p.1 < 100 && p.2 < 100;
    let mut title_pixels = 0;
    let mut leftmost = w;
    let mut rightmost = 0;
    for y in 0..45 {
        for x in 0..w {
            if dark(pixel(&rgb, w, x, y)) {
                title_pixels += 1;
                leftmost = leftmost.min(x);
                rightmost = rightmost.max(x);
            }
        }
    }
    assert!(title_pixels > 200, "{title_pixels} title pixels");
    assert!(
        leftmost > 150 && rightmost < 700,
        "title spans {leftmost}..{rightmost}"
    );

    // The corners stay background.
    assert_eq!(pixel(&rgb, w, 0, 0), Rgb::WHITE);
    assert_eq!(pixel(&rgb, w, w - 1, h - 1), Rgb::WHITE);
}

#[test]
fn render_rgb_matches_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.png");
    let chart = two_series();
    chart.render_png(&path).unwrap();
    let (w, h, rgb) = chart.render_rgb().unwrap();
    assert_eq!(decode(&path), (w, h, rgb));
}

#[test]
fn custom_size() {
    let mut chart = two_series();
    chart.width = 400;
    chart.height = 300;
    let (w, h, rgb) = chart.render_rgb().unwrap();
    assert_eq!((w, h, rgb.len()), (400, 300, 400 * 300 * 3));
}

#[test]
fn log_y_rejects_non_positive_values() {
    for bad in [0.0, -1.5] {
        let mut chart = LineChart::new("ppl", "sparsity", "perplexity");
        chart.log_y = true;
        chart.add("wanda", vec![(0.0, 12.0), (0.5, bad), (0.7, 40.0)]);
        let err = chart.render_rgb().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::InvalidArgument(_)), "{msg}");
        assert!(
            msg.contains("log_y") && msg.contains("wanda") && msg.contains("x = 0.5"),
            "{msg}"
        );
    }
}

#[test]
fn log_y_renders_positive_values() {
    let mut chart = LineChart::new("Perplexity vs sparsity", "sparsity", "perplexity");
    chart.log_y = true;
    let sparsity = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
    chart.add(
        "magnitude",
        sparsity
            .iter()
            .map(|s| (*s, 10.0 * (1.0 + 40.0 * s * s * s * s))),
    );
    chart.add(
        "sparsegpt",
        sparsity
            .iter()
            .map(|s| (*s, 10.0 * (1.0 + 4.0 * s * s * s))),
    );
    // NaN and infinity are skipped, not errors, even on a log axis.
    chart.add(
        "wanda",
        vec![
            (0.0, 10.0),
            (0.5, f64::NAN),
            (0.9, f64::INFINITY),
            (0.7, 25.0),
        ],
    );
    let (w, _, rgb) = chart.render_rgb().unwrap();
    for colour in PALETTE.iter().take(3) {
        assert!(count(&rgb, w, (0, w, 0, 500), *colour) > 20, "{colour:?}");
    }
}

#[test]
fn non_finite_points_are_skipped() {
    let mut chart = LineChart::new("t", "x", "y");
    chart.add(
        "gappy",
        vec![
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 3.0),
            (f64::NEG_INFINITY, 0.0),
            (3.0, 2.0),
        ],
    );
    let (w, h, rgb) = chart.render_rgb().unwrap();
    assert!(count(&rgb, w, (0, w, 0, h), PALETTE[0]) > 50);
}

#[test]
fn nothing_to_plot_is_an_invalid_argument() {
    let chart = LineChart::new("empty", "x", "y");
    let err = chart
        .render_png(Path::new("/nonexistent/never/written.png"))
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("nothing to plot")),
        "{err}"
    );
}

#[test]
fn awkward_inputs_render_without_panicking() {
    let cases: Vec<Vec<(f64, f64)>> = vec![
        vec![(5.0, 5.0)],
        vec![(0.0, 0.0), (0.0, 0.0)],
        vec![(0.0, 1e-9), (1.0, 2e-9)],
        vec![(-1e12, -3.0), (1e12, 4e9)],
        vec![(1.0, 1.0), (1.0 + 1e-13, 1.0 + 1e-13)],
        vec![(3.0, 1.0), (1.0, 2.0), (2.0, 0.5)],
        vec![(0.0, 1e300), (1.0, -1e300)],
    ];
    for points in cases {
        let mut chart = LineChart::new("", "", "");
        chart.markers = Markers::Always;
        chart.add("s", points.clone());
        match chart.render_rgb() {
            Ok((w, h, rgb)) => assert_eq!(rgb.len(), (w * h * 3) as usize),
            Err(e) => assert!(matches!(e, Error::InvalidArgument(_)), "{points:?}: {e}"),
        }
    }
}

#[test]
fn many_series_long_names_and_unicode() {
    let mut chart = LineChart::new("Perplexity — every method, every sparsity", "x", "y µ");
    for i in 0..11 {
        let name = format!("series number {i} with a name far too long to fit in any legend box");
        chart.add(name, (0..50).map(move |x| (x as f64, (x * (i + 1)) as f64)));
    }
    let (w, h, rgb) = chart.render_rgb().unwrap();
    assert_eq!(rgb.len(), (w * h * 3) as usize);
}
