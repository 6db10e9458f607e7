//! The classifier shipped in models/classifier/ (the default of `deepgen eval --classifier`):
//! the file is the one its README describes (checksum), it is a deepgen checkpoint, and it
//! classifies the MNIST test set with the accuracy the README states.

mod common;

use std::path::PathBuf;

use common::gpu;
use deepgen::checkpoint;
use deepgen::data::Mnist;
use deepgen::eval::report::{BUILTIN_CLASSIFIER, load_classifier};
use deepgen::models::ModelKind;
use deepgen::train::classifier::evaluate_classifier;
use sha2::{Digest, Sha256};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/classifier")
}

/// The first word of the value in the README's table row that starts with `| {key}`, without
/// Markdown emphasis.
fn readme_value(key: &str) -> String {
    let readme = std::fs::read_to_string(dir().join("README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with(&format!("| {key}")))
        .unwrap_or_else(|| panic!("README has no row {key}"));
    let value = row.split('|').nth(2).unwrap();
    let word = value.split_whitespace().next().unwrap_or("");
    word.trim_matches(['*', '`']).to_string()
}

#[test]
fn the_shipped_file_is_the_one_the_readme_describes_and_is_built_in() {
    let bytes = std::fs::read(dir().join("model.safetensors")).unwrap();
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, readme_value("sha256"));
    assert_eq!(
        bytes.as_slice(),
        BUILTIN_CLASSIFIER,
        "the binary embeds this file"
    );
    let ckpt = checkpoint::load(&dir().join("model.safetensors")).unwrap();
    assert_eq!(ckpt.kind().unwrap(), ModelKind::Classifier);
    assert_eq!(ckpt.metadata["seed"], readme_value("seed"));
    assert_eq!(ckpt.metadata["epoch"], "2");
}

#[test]
fn the_shipped_classifier_has_the_stated_test_accuracy() {
    let gpu = gpu();
    let classifier = load_classifier(&gpu, None).unwrap();
    let mnist = Mnist::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist")).unwrap();
    let (loss, accuracy) = evaluate_classifier(&classifier, &gpu, &mnist.test).unwrap();
    let stated: f64 = readme_value("test accuracy").parse().unwrap();
    assert_eq!(accuracy, stated, "test loss {loss}");
    let stated_loss: f64 = readme_value("test loss").parse().unwrap();
    assert!((loss - stated_loss).abs() < 5e-5, "{loss} vs {stated_loss}");
}
