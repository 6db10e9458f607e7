//! The image domains of the translation models (issue 13), built from MNIST on the host.
//!
//! - pix2pix's paired task: the input is the digit with its bottom half blanked
//!   ([`top_half`]), the target the whole digit.
//! - CycleGAN's domains, from disjoint halves of the training set so that no pair exists:
//!   A = MNIST digits of the first half; B = the second half restyled ([`restyle`]: strokes
//!   thickened by a 3 x 3 maximum filter, intensities inverted). [`split_domains`].

use crate::data::Dataset;

/// Rows of a 28-row image that pix2pix's input keeps (the top half).
pub const KEPT_ROWS: usize = 14;

/// The images with every row from [`KEPT_ROWS`] down set to 0 (background); labels kept.
pub fn top_half(data: &Dataset) -> Dataset {
    let (rows, cols) = (data.rows, data.cols);
    let mut images = data.images.clone();
    for img in images.chunks_mut(rows * cols) {
        img[KEPT_ROWS.min(rows) * cols..].fill(0.0);
    }
    Dataset {
        images,
        labels: data.labels.clone(),
        rows,
        cols,
    }
}

/// The 0/1 mask of [`top_half`] for one image, `rows * cols` values (1: kept).
pub fn top_half_mask(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| if i / cols < KEPT_ROWS { 1.0 } else { 0.0 })
        .collect()
}

/// Domain B's style: each pixel the maximum of its 3 x 3 neighbourhood (clipped at the
/// border; a grey-scale dilation that thickens strokes by one pixel on each side), then
/// inverted, `1 - v` (white background, dark strokes). Labels kept.
pub fn restyle(data: &Dataset) -> Dataset {
    let (rows, cols) = (data.rows, data.cols);
    let mut images = Vec::with_capacity(data.images.len());
    for img in data.images.chunks(rows * cols) {
        for r in 0..rows {
            for c in 0..cols {
                let mut m = 0.0f32;
                for rr in r.saturating_sub(1)..(r + 2).min(rows) {
                    for cc in c.saturating_sub(1)..(c + 2).min(cols) {
                        m = m.max(img[rr * cols + cc]);
                    }
                }
                images.push(1.0 - m);
            }
        }
    }
    Dataset {
        images,
        labels: data.labels.clone(),
        rows,
        cols,
    }
}

/// Intensities inverted, `1 - v`: how a B-style image is mapped back for the classifier.
pub fn invert(images: &[f32]) -> Vec<f32> {
    images.iter().map(|v| 1.0 - v).collect()
}

/// CycleGAN's unpaired domains from `train`: A = the first half of its images as they are,
/// B = the second half [`restyle`]d (the halves are disjoint; with an odd count B has one
/// more).
pub fn split_domains(train: &Dataset) -> (Dataset, Dataset) {
    let half = train.len() / 2;
    let p = train.pixels();
    let a = Dataset {
        images: train.images[..half * p].to_vec(),
        labels: train.labels[..half].to_vec(),
        rows: train.rows,
        cols: train.cols,
    };
    let second = Dataset {
        images: train.images[half * p..].to_vec(),
        labels: train.labels[half..].to_vec(),
        rows: train.rows,
        cols: train.cols,
    };
    (a, restyle(&second))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(images: Vec<f32>, rows: usize, cols: usize) -> Dataset {
        Dataset {
            images,
            labels: vec![3],
            rows,
            cols,
        }
    }

    #[test]
    fn restyle_dilates_then_inverts() {
        // A single lit pixel in a 4 x 5 image becomes a dark 3 x 3 square on white.
        let mut img = vec![0.0; 20];
        img[5 + 2] = 0.8; // row 1, column 2
        let b = restyle(&one(img, 4, 5));
        let want: Vec<f32> = (0..20)
            .map(|i| {
                let (r, c) = (i / 5, i % 5);
                if r <= 2 && (1..=3).contains(&c) {
                    1.0 - 0.8
                } else {
                    1.0
                }
            })
            .collect();
        assert_eq!(b.images, want);
        assert_eq!(b.labels, vec![3]);
    }

    #[test]
    fn top_half_blanks_the_bottom_rows() {
        let d = one(vec![1.0; 28 * 28], 28, 28);
        let t = top_half(&d);
        assert!(t.images[..14 * 28].iter().all(|&v| v == 1.0));
        assert!(t.images[14 * 28..].iter().all(|&v| v == 0.0));
        assert_eq!(top_half_mask(28, 28), t.images);
    }

    #[test]
    fn domains_are_disjoint_halves() {
        let d = Dataset {
            images: (0..5).map(|v| v as f32 / 10.0).collect(),
            labels: vec![0, 1, 2, 3, 4],
            rows: 1,
            cols: 1,
        };
        let (a, b) = split_domains(&d);
        assert_eq!(a.labels, vec![0, 1]);
        assert_eq!(b.labels, vec![2, 3, 4]);
        assert_eq!(a.images, vec![0.0, 0.1]);
        assert_eq!(b.images, vec![0.8, 0.7, 0.6]);
    }
}
