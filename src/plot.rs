//! Line plots as PNG files, drawn with the `plotters` crate into an RGB buffer and encoded with
//! the `image` crate (written atomically, as the grids are).
//!
//! Text (title, axis names, tick labels) needs a TrueType font, read once from the system's
//! DejaVu or Liberation fonts (Debian's `fonts-dejavu-core`); without one the plot is drawn with
//! its axes, grid and curve but no text.

use std::io::Cursor;
use std::path::Path;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::files::write_atomic;

/// Where a sans-serif font is looked for, in order.
#[cfg(not(target_arch = "wasm32"))]
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers the first font of [`FONT_PATHS`] found as plotters' "sans-serif", once; whether one was.
/// Never in the browser (wasm32), which has no font files to read and no `register_font`.
#[cfg(target_arch = "wasm32")]
fn font_available() -> bool {
    false
}

/// Registers the first font of [`FONT_PATHS`] found as plotters' "sans-serif", once; whether one was.
#[cfg(not(target_arch = "wasm32"))]
fn font_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        FONT_PATHS.iter().any(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            // plotters keeps the font for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

/// One curve of a [`line_plot`].
pub struct Series<'a> {
    /// Its name in the legend.
    pub name: &'a str,
    /// The points, in x order.
    pub points: &'a [(f64, f64)],
}

/// Writes a 800x480 PNG line plot of `series` with a title and axis names to `path`.
///
/// Errors: [`Error::Invalid`] if there is no point, a value is not finite, or drawing fails;
/// [`Error::Io`] naming `path`.
pub fn line_plot(
    path: &Path,
    title: &str,
    x_name: &str,
    y_name: &str,
    series: &[Series],
) -> Result<()> {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() || all.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return Err(Error::Invalid(format!(
            "plot {}: no points, or a value that is not finite",
            path.display()
        )));
    }
    let range = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        let pad = ((hi - lo) * 0.05).max(1e-6);
        (lo - pad)..(hi + pad)
    };
    let xs = range(&mut all.iter().map(|p| p.0));
    let ys = range(&mut all.iter().map(|p| p.1));
    let (w, h) = (800u32, 480u32);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let text = font_available();
    let err = |e: &dyn std::fmt::Display| Error::Invalid(format!("plot {}: {e}", path.display()));
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(15);
        if text {
            builder
                .caption(title, ("sans-serif", 22))
                .x_label_area_size(40)
                .y_label_area_size(60);
        }
        let mut chart = builder.build_cartesian_2d(xs, ys).map_err(|e| err(&e))?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc(x_name).y_desc(y_name);
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw().map_err(|e| err(&e))?;
        let colors = [BLUE, RED, GREEN, MAGENTA];
        for (i, s) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            let drawn = chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
            if text {
                drawn
                    .label(s.name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            }
        }
        if text && series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    let image = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| err(&"buffer size"))?;
    let mut png = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| err(&e))?;
    write_atomic(path, &png)
}
