//! MNIST: 28x28 grey-scale digits, 60,000 for training and 10,000 for testing,
//! read from the four standard IDX files, pixels scaled to [0, 1].

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::data::idx::{IdxArray, read_idx, read_idx_bytes, read_idx_dims};
use crate::error::{Error, Result};

/// Images and labels of one split.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Pixel intensities in [0, 1], image after image, row-major: `len * rows * cols` values.
    pub images: Vec<f32>,
    /// Class labels 0..=9.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// One image's pixels.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.pixels()..(i + 1) * self.pixels()]
    }

    /// The images at `indices`, concatenated: a `(indices.len(), pixels)` batch.
    pub fn gather(&self, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * self.pixels());
        for &i in indices {
            out.extend_from_slice(self.image(i));
        }
        out
    }

    /// A fixed binarization: each pixel becomes 1 with probability equal to its intensity,
    /// drawn once from a generator seeded with `seed`, so the same seed always gives the same
    /// binary images (the test set of the binarized-MNIST likelihood tables is fixed this way).
    pub fn binarized(&self, seed: u64) -> Dataset {
        use rand::RngExt;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Dataset {
            images: self
                .images
                .iter()
                .map(|&p| if rng.random::<f32>() < p { 1.0 } else { 0.0 })
                .collect(),
            labels: self.labels.clone(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The first `n` images only (all if `n` is larger).
    pub fn truncate(mut self, n: usize) -> Dataset {
        let n = n.min(self.len());
        self.images.truncate(n * self.pixels());
        self.labels.truncate(n);
        self
    }

    /// Reads an images file and a labels file and checks that they agree.
    ///
    /// Errors: as [`read_idx`]; [`Error::Data`] if the images are not 3-D, the labels
    /// not 1-D, their counts differ, or a label is outside 0..=9 (naming the first).
    pub fn from_idx(images_path: &Path, labels_path: &Path) -> Result<Dataset> {
        Dataset::from_arrays(
            read_idx(images_path)?,
            images_path,
            read_idx(labels_path)?,
            labels_path,
        )
    }

    /// [`Dataset::from_idx`] from the files' bytes (gzip-compressed or raw), e.g. fetched by
    /// the page in the browser, which has no file system. `images_name` and `labels_name`
    /// name the sources in errors.
    ///
    /// Errors: [`Error::Data`] naming the source, as [`Dataset::from_idx`].
    pub fn from_idx_bytes(
        images: &[u8],
        images_name: &str,
        labels: &[u8],
        labels_name: &str,
    ) -> Result<Dataset> {
        let (images_path, labels_path) = (Path::new(images_name), Path::new(labels_name));
        Dataset::from_arrays(
            read_idx_bytes(images, images_path)?,
            images_path,
            read_idx_bytes(labels, labels_path)?,
            labels_path,
        )
    }

    /// Checks that an images array and a labels array agree and scales the pixels.
    fn from_arrays(
        images: IdxArray,
        images_path: &Path,
        labels: IdxArray,
        labels_path: &Path,
    ) -> Result<Dataset> {
        let [n, rows, cols] = images.dims[..] else {
            return Err(Error::data(
                images_path,
                format!(
                    "expected 3 dimensions (images, rows, cols), found {:?}",
                    images.dims
                ),
            ));
        };
        let [n_labels] = labels.dims[..] else {
            return Err(Error::data(
                labels_path,
                format!("expected 1 dimension (labels), found {:?}", labels.dims),
            ));
        };
        if n != n_labels {
            return Err(Error::data(
                labels_path,
                format!(
                    "{n_labels} labels but {} holds {n} images",
                    images_path.display()
                ),
            ));
        }
        if let Some((i, &l)) = labels.data.iter().enumerate().find(|(_, l)| **l > 9) {
            return Err(Error::data(
                labels_path,
                format!("label {l} of image {i} is not a digit class (0 to 9)"),
            ));
        }
        Ok(Dataset {
            images: images.data.iter().map(|&p| p as f32 / 255.0).collect(),
            labels: labels.data,
            rows,
            cols,
        })
    }
}

/// The MNIST training and test splits.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// 60,000 training images.
    pub train: Dataset,
    /// 10,000 test images.
    pub test: Dataset,
}

/// Finds `stem.gz` or `stem` in `dir`: the first that exists, which must be a regular file.
///
/// Errors: [`Error::Data`] naming the path if it is a directory, a pipe or a device, or if
/// neither exists; [`Error::Io`] if it cannot be examined (an unreadable directory).
fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(name);
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => return Ok(p),
            Ok(m) if m.is_dir() => {
                return Err(Error::data(&p, "is a directory, not an IDX file"));
            }
            Ok(_) => {
                return Err(Error::data(
                    &p,
                    "is not a regular file (a pipe, socket or device); an IDX file is expected",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Err(Error::data(
        dir.join(format!("{stem}.gz")),
        format!(
            "missing MNIST file (looked for {stem}.gz and {stem} in {})",
            dir.display()
        ),
    ))
}

/// The images and labels files of one split in `dir`, checked by their headers alone (no
/// data read): images `(n, 28, 28)`, labels `(n,)`.
///
/// Errors: as [`find`] and [`read_idx_dims`]; [`Error::Data`] naming the file for other
/// dimensions or sizes.
fn split_files(dir: &Path, images: &str, labels: &str) -> Result<(PathBuf, PathBuf)> {
    let (images, labels) = (find(dir, images)?, find(dir, labels)?);
    let dims = read_idx_dims(&images)?;
    match dims[..] {
        [_, IMAGE_SIDE, IMAGE_SIDE] => {}
        [_, rows, cols] => {
            return Err(Error::data(
                &images,
                format!(
                    "images are {rows}x{cols} pixels; deepgen's models take \
                     {IMAGE_SIDE}x{IMAGE_SIDE} images (the MNIST format)"
                ),
            ));
        }
        _ => {
            return Err(Error::data(
                &images,
                format!("expected 3 dimensions (images, rows, cols), found {dims:?}"),
            ));
        }
    }
    let label_dims = read_idx_dims(&labels)?;
    match label_dims[..] {
        [n] if n == dims[0] => Ok((images, labels)),
        [n] => Err(Error::data(
            &labels,
            format!(
                "{n} labels but {} holds {} images",
                images.display(),
                dims[0]
            ),
        )),
        _ => Err(Error::data(
            &labels,
            format!("expected 1 dimension (labels), found {label_dims:?}"),
        )),
    }
}

/// Side of the square images every model takes (MNIST's 28).
pub const IMAGE_SIDE: usize = 28;

impl Mnist {
    /// The file names of the four IDX files (each may also end in `.gz`).
    pub const FILES: [&'static str; 4] = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];

    /// Loads MNIST (or any dataset in the same format, such as Fashion-MNIST) from `dir`,
    /// named on the command line by `--data`.
    ///
    /// Errors: as [`Mnist::load_from`].
    pub fn load(dir: &Path) -> Result<Mnist> {
        Mnist::load_from(dir, "--data")
    }

    /// Loads MNIST from `dir`, which the command line named with `flag` (for messages). The
    /// four headers are checked (28x28 images, as many labels as images) before any data is
    /// read.
    ///
    /// Errors: [`Error::Data`] naming the directory, how to get the data and `flag` if it
    /// does not exist; naming the file if one is missing, not a regular file, of other
    /// dimensions, or malformed (the errors of [`Dataset::from_idx`]).
    pub fn load_from(dir: &Path, flag: &str) -> Result<Mnist> {
        check_dir(dir, flag)?;
        let [tri, trl, tei, tel] = Self::FILES;
        let train = split_files(dir, tri, trl)?;
        let test = split_files(dir, tei, tel)?;
        Ok(Mnist {
            train: Dataset::from_idx(&train.0, &train.1)?,
            test: Dataset::from_idx(&test.0, &test.1)?,
        })
    }

    /// Loads only the test split of `dir` (t10k-images and t10k-labels), named on the command
    /// line by `flag`: what an outlier set needs.
    ///
    /// Errors: as [`Mnist::load_from`], for the two test files.
    pub fn load_test(dir: &Path, flag: &str) -> Result<Dataset> {
        check_dir(dir, flag)?;
        let (images, labels) = split_files(dir, Self::FILES[2], Self::FILES[3])?;
        Dataset::from_idx(&images, &labels)
    }
}

/// Refuses a data directory that does not exist (saying how to get MNIST and which option
/// named it) or is not a directory.
fn check_dir(dir: &Path, flag: &str) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::data(
            dir,
            format!("is not a directory; {flag} takes a directory holding MNIST IDX files"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::data(
            dir,
            format!(
                "data directory not found (given by {flag}). It must hold the MNIST IDX files \
                 (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, \
                 t10k-labels-idx1-ubyte.gz). A copy ships in data/mnist of the deepgen repository \
                 (the default --data when run from the checkout); otherwise download them from \
                 http://yann.lecun.com/exdb/mnist/ or a mirror and pass {flag} DIR"
            ),
        )),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// A seeded shuffle of `0..n` cut into mini-batches of `batch_size` (the last one
/// may be smaller, as PyTorch's `DataLoader` with `drop_last=False`).
pub struct Batches {
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
}

impl Batches {
    /// The batches of one epoch. The order depends only on (`seed`, `epoch`).
    pub fn new(n: usize, batch_size: usize, seed: u64, epoch: u64) -> Batches {
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
        Batches {
            order,
            batch_size: batch_size.max(1),
            next: 0,
        }
    }

    /// Number of batches in the epoch.
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

impl Iterator for Batches {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let batch = self.order[self.next..end].to_vec();
        self.next = end;
        Some(batch)
    }
}
