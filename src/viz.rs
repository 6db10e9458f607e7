//! Image grids written as PNG (through the `image` crate), atomically.

use std::io::Cursor;
use std::path::Path;

use crate::error::{Error, Result};
use crate::files::write_atomic;

/// Pixels of padding between and around grid cells.
const PAD: u32 = 2;

/// Writes `images` (each `height * width` intensities in [0, 1], values outside
/// are clamped) as a grey-scale PNG grid with `cols` images per row.
///
/// Errors: [`Error::Invalid`] if `images.len()` is not a whole number of images;
/// [`Error::Io`] naming `path`.
pub fn save_grid(
    path: &Path,
    images: &[f32],
    height: usize,
    width: usize,
    cols: usize,
) -> Result<()> {
    let pixels = height * width;
    if pixels == 0 || !images.len().is_multiple_of(pixels) || cols == 0 {
        return Err(Error::Invalid(format!(
            "image grid {}: {} values do not make whole {height}x{width} images",
            path.display(),
            images.len()
        )));
    }
    let n = images.len() / pixels;
    let rows = n.div_ceil(cols).max(1);
    let (h, w) = (height as u32, width as u32);
    let grid_w = cols as u32 * (w + PAD) + PAD;
    let grid_h = rows as u32 * (h + PAD) + PAD;
    let mut img = image::GrayImage::new(grid_w, grid_h);
    for (i, pic) in images.chunks_exact(pixels).enumerate() {
        let (gr, gc) = ((i / cols) as u32, (i % cols) as u32);
        let (oy, ox) = (PAD + gr * (h + PAD), PAD + gc * (w + PAD));
        for y in 0..h {
            for x in 0..w {
                let v = pic[(y * w + x) as usize].clamp(0.0, 1.0);
                img.put_pixel(ox + x, oy + y, image::Luma([(v * 255.0).round() as u8]));
            }
        }
    }
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Invalid(format!("encoding {}: {e}", path.display())))?;
    write_atomic(path, &png)
}

/// Interleaves originals and reconstructions (original, reconstruction, original, ...)
/// so that [`save_grid`] shows each image beside its reconstruction.
pub fn interleave(originals: &[f32], reconstructions: &[f32], pixels: usize) -> Vec<f32> {
    originals
        .chunks_exact(pixels)
        .zip(reconstructions.chunks_exact(pixels))
        .flat_map(|(a, b)| a.iter().chain(b.iter()).copied())
        .collect()
}

/// Columns of a square-ish grid of `n` images (8 for 64).
pub fn grid_cols(n: usize) -> usize {
    ((n as f64).sqrt().ceil() as usize).max(1)
}
