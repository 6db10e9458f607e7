//! The IDX reader on good, truncated, wrong-magic and corrupt files; the MNIST
//! loader's consistency checks; the shuffled mini-batch iterator. No GPU needed.

use std::io::Write;
use std::path::{Path, PathBuf};

use deepgen::Error;
use deepgen::data::{Batches, Dataset, Mnist, read_idx};

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn data_error(err: Error) -> (PathBuf, String) {
    match err {
        Error::Data { path, reason } => (path, reason),
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn reads_raw_and_gzipped_files() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..24).collect();
    let bytes = idx_bytes(&[2, 3, 4], &data);
    for (name, contents) in [
        ("raw-idx3-ubyte", bytes.clone()),
        ("gz-idx3-ubyte.gz", gzip(&bytes)),
    ] {
        let arr = read_idx(&write(dir.path(), name, &contents)).unwrap();
        assert_eq!(arr.dims, vec![2, 3, 4]);
        assert_eq!(arr.data, data);
    }
}

#[test]
fn truncated_file_names_the_file_and_the_shortfall() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = idx_bytes(&[10, 28, 28], &vec![7u8; 10 * 784]);
    bytes.truncate(bytes.len() - 100);
    let p = write(dir.path(), "train-images-idx3-ubyte.gz", &gzip(&bytes));
    let (path, reason) = data_error(read_idx(&p).unwrap_err());
    assert_eq!(path, p);
    assert!(
        reason.contains("truncated") && reason.contains("7840") && reason.contains("7740"),
        "{reason}"
    );
    let msg = read_idx(&p).unwrap_err().to_string();
    assert!(msg.contains("train-images-idx3-ubyte.gz"), "{msg}");
    // A file shorter than its header is truncated too.
    let (_, reason) =
        data_error(read_idx(&write(dir.path(), "short", &[0, 0, 8, 3, 0, 0])).unwrap_err());
    assert!(reason.contains("truncated"), "{reason}");
}

#[test]
fn wrong_magic_and_extra_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reason) =
        data_error(read_idx(&write(dir.path(), "png", b"\x89PNG\r\n\x1a\n0000")).unwrap_err());
    assert!(reason.contains("wrong magic"), "{reason}");
    let (_, reason) = data_error(
        read_idx(&write(
            dir.path(),
            "f32",
            &[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0],
        ))
        .unwrap_err(),
    );
    assert!(reason.contains("0x0d"), "{reason}");
    let mut bytes = idx_bytes(&[3], &[1, 2, 3]);
    bytes.push(9);
    let (_, reason) = data_error(read_idx(&write(dir.path(), "extra", &bytes)).unwrap_err());
    assert!(reason.contains("1 unexpected bytes"), "{reason}");
}

#[test]
fn corrupt_gzip_is_a_data_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = gzip(&idx_bytes(&[100], &[5u8; 100]));
    let n = gz.len();
    gz.truncate(n / 2);
    let (path, reason) = data_error(read_idx(&write(dir.path(), "labels.gz", &gz)).unwrap_err());
    assert!(path.ends_with("labels.gz"));
    assert!(reason.contains("gzip"), "{reason}");
}

#[test]
fn images_and_labels_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let images = write(
        dir.path(),
        "i",
        &idx_bytes(&[3, 2, 2], &[0, 255, 0, 255, 1, 2, 3, 4, 5, 6, 7, 8]),
    );
    let labels = write(dir.path(), "l", &idx_bytes(&[2], &[1, 2]));
    let (path, reason) = data_error(Dataset::from_idx(&images, &labels).unwrap_err());
    assert_eq!(path, labels);
    assert!(
        reason.contains("2 labels") && reason.contains("3 images"),
        "{reason}"
    );
    // Labels given where images are expected: wrong number of dimensions.
    let (path, reason) = data_error(Dataset::from_idx(&labels, &labels).unwrap_err());
    assert_eq!(path, labels);
    assert!(reason.contains("3 dimensions"), "{reason}");
    let good = write(dir.path(), "l3", &idx_bytes(&[3], &[1, 2, 3]));
    let ds = Dataset::from_idx(&images, &good).unwrap();
    assert_eq!((ds.len(), ds.rows, ds.cols), (3, 2, 2));
    assert_eq!(
        &ds.images[..4],
        &[0.0, 1.0, 0.0, 1.0],
        "pixels scaled to [0, 1]"
    );
}

#[test]
fn missing_directory_and_files_say_what_to_do() {
    let err = Mnist::load(Path::new("/no/such/mnist"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/no/such/mnist")
            && err.contains("train-images-idx3-ubyte.gz")
            && err.contains("--data"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let err = Mnist::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("missing MNIST file") && err.contains("train-images-idx3-ubyte"),
        "{err}"
    );
}

#[test]
fn bundled_mnist_loads_with_the_documented_counts() {
    let mnist = Mnist::load(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/mnist")
            .as_path(),
    )
    .unwrap();
    assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
    assert_eq!((mnist.train.rows, mnist.train.cols), (28, 28));
    let mut counts = [0usize; 10];
    for &l in &mnist.train.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(
        counts,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    let (lo, hi) = mnist
        .test
        .images
        .iter()
        .fold((1f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert_eq!((lo, hi), (0.0, 1.0));
}

#[test]
fn batches_are_a_seeded_permutation() {
    let collect = |seed, epoch| Batches::new(1000, 128, seed, epoch).collect::<Vec<_>>();
    let a = collect(1, 1);
    assert_eq!(Batches::new(1000, 128, 1, 1).num_batches(), 8);
    assert_eq!(a.len(), 8);
    assert!(a[..7].iter().all(|b| b.len() == 128));
    assert_eq!(a[7].len(), 1000 - 7 * 128);
    let mut all: Vec<usize> = a.concat();
    assert_ne!(all, (0..1000).collect::<Vec<_>>(), "shuffled");
    all.sort();
    assert_eq!(
        all,
        (0..1000).collect::<Vec<_>>(),
        "every index exactly once"
    );
    assert_eq!(a, collect(1, 1), "same seed and epoch, same order");
    assert_ne!(a, collect(1, 2), "a new order each epoch");
    assert_ne!(a, collect(2, 1), "a new order for another seed");
}

/// The page's reader (no file system in the browser): the same dataset from the bytes, gzipped
/// or raw, and the same errors, naming the given source.
#[test]
fn reads_datasets_from_bytes_as_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let images = idx_bytes(&[3, 2, 2], &[0, 255, 0, 255, 1, 2, 3, 4, 5, 6, 7, 8]);
    let labels = idx_bytes(&[3], &[1, 2, 3]);
    let from_files = Dataset::from_idx(
        &write(dir.path(), "i", &images),
        &write(dir.path(), "l", &labels),
    )
    .unwrap();
    for (i, l) in [
        (images.clone(), labels.clone()),
        (gzip(&images), gzip(&labels)),
    ] {
        let ds = Dataset::from_idx_bytes(&i, "images.gz", &l, "labels.gz").unwrap();
        assert_eq!(ds.images, from_files.images);
        assert_eq!(ds.labels, from_files.labels);
        assert_eq!((ds.rows, ds.cols), (2, 2));
    }
    // Errors name the source: a truncated images file, labels that disagree.
    let (path, reason) = data_error(
        Dataset::from_idx_bytes(
            &images[..images.len() - 3],
            "images.gz",
            &labels,
            "labels.gz",
        )
        .unwrap_err(),
    );
    assert_eq!(path, Path::new("images.gz"));
    assert!(
        reason.contains("truncated") || reason.contains("short"),
        "{reason}"
    );
    let two = idx_bytes(&[2], &[1, 2]);
    let (path, reason) =
        data_error(Dataset::from_idx_bytes(&images, "images.gz", &two, "labels.gz").unwrap_err());
    assert_eq!(path, Path::new("labels.gz"));
    assert!(reason.contains("2 labels"), "{reason}");
}
