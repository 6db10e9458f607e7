//! The `deepgen` binary spawned as a user runs it: exit status, messages, files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn deepgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepgen"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("spawn deepgen")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn mnist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

#[test]
fn info_prints_adapter_and_limits() {
    let o = deepgen(&["info"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for key in [
        "adapter:",
        "backend:",
        "driver:",
        "max storage buffer binding",
        "max invocations per workgroup",
        "max workgroup size",
    ] {
        assert!(out.contains(key), "info lacks {key}:\n{out}");
    }
}

#[test]
fn train_then_sample_as_a_user_would() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = deepgen(&[
        "train",
        "vae",
        "--limit",
        "256",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--no-progress",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("epoch   1/1") && stdout.contains("test_loss"),
        "{stdout}"
    );
    for f in [
        "metrics.jsonl",
        "model.safetensors",
        "samples.png",
        "reconstructions.png",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let ckpt = out.join("model.safetensors");
    let png = dir.path().join("s.png");
    let o = deepgen(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--n",
        "16",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (4 * 30 + 2, 4 * 30 + 2));

    // Samples as data: an N x 28 x 28 float32 NumPy array.
    let npy = dir.path().join("s.npy");
    let o = deepgen(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--n",
        "12",
        "--out",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let bytes = std::fs::read(&npy).unwrap();
    let arr = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(arr.shape(), &[12, 28, 28]);
    assert_eq!(arr.dtype(), npyz::DType::Plain("<f4".parse().unwrap()));
    let values: Vec<f32> = arr.into_vec().unwrap();
    // The seed decides the samples: the same seed gives the same file, another seed others.
    let again = |seed: &str| {
        let path = dir.path().join(format!("s{seed}.npy"));
        let o = deepgen(&[
            "sample",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--n",
            "12",
            "--seed",
            seed,
            "--out",
            path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{:?}", text(&o));
        let bytes = std::fs::read(&path).unwrap();
        npyz::NpyFile::new(&bytes[..])
            .unwrap()
            .into_vec::<f32>()
            .unwrap()
    };
    assert_eq!(again("0"), values);
    assert_ne!(again("1"), values);

    // Latent traversal: rows = dimensions, columns = steps.
    let trav = dir.path().join("t.png");
    let o = deepgen(&[
        "traverse",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--image-index",
        "0",
        "--dims",
        "0,1,2",
        "--steps",
        "5",
        "--out",
        trav.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let img = image::open(&trav).unwrap();
    assert_eq!((img.width(), img.height()), (5 * 30 + 2, 3 * 30 + 2));
    let o = deepgen(&[
        "traverse",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--dims",
        "99",
        "--out",
        trav.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && text(&o).1.contains("dimension 99"),
        "{:?}",
        text(&o)
    );

    // Interpolation strip: the two originals and 6 steps.
    let strip = dir.path().join("i.png");
    let o = deepgen(&[
        "interpolate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--from",
        "0",
        "--to",
        "1",
        "--steps",
        "6",
        "--out",
        strip.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let img = image::open(&strip).unwrap();
    assert_eq!((img.width(), img.height()), (8 * 30 + 2, 30 + 2));

    // Likelihood evaluation to JSON (no classifier needed with --fid-samples 0).
    let json = dir.path().join("eval.json");
    let o = deepgen(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--samples",
        "16",
        "--test-images",
        "40",
        "--fid-samples",
        "0",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["iwae_k"], 16);
    assert_eq!(v["test_images"], 40);
    assert!(
        v["iwae_nll"].as_f64().unwrap() <= v["neg_elbo"].as_f64().unwrap(),
        "{v}"
    );
    // Without a classifier the Frechet distance explains how to get one.
    let o = deepgen(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--samples",
        "2",
        "--test-images",
        "4",
        "--fid-samples",
        "100",
        "--classifier",
        "/no/classifier.safetensors",
    ]);
    assert!(
        !o.status.success() && text(&o).1.contains("deepgen train classifier"),
        "{:?}",
        text(&o)
    );

    // Asking for another kind of model is refused, naming both kinds.
    let o = deepgen(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--model",
        "ae",
        "--out",
        png.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(
        stderr.contains("`vae` checkpoint") && stderr.contains("`ae` model"),
        "{stderr}"
    );

    // A file that is not a checkpoint is refused with its name.
    let o = deepgen(&["sample", "--checkpoint", png.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(
        stderr.contains("s.png") && stderr.contains("safetensors"),
        "{stderr}"
    );
}

#[test]
fn invalid_arguments_are_refused_by_the_parser() {
    for (args, needle) in [
        (vec!["train", "vae", "--batch-size", "0"], "--batch-size"),
        (vec!["train", "vae", "--lr", "-0.01"], "positive"),
        (vec!["train", "vae", "--lr", "0"], "positive"),
        (vec!["train", "vae", "--latent-dim", "0"], "--latent-dim"),
        (vec!["train", "vae", "--epochs", "0"], "--epochs"),
        (vec!["train", "gan-of-doom"], "invalid value"),
    ] {
        let o = deepgen(&args);
        let (_, stderr) = text(&o);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?} should be a usage error:\n{stderr}"
        );
        assert!(
            stderr.contains(needle),
            "{args:?}: message lacks {needle}:\n{stderr}"
        );
    }
}

#[test]
fn missing_data_directory_names_the_path_and_the_fix() {
    let o = deepgen(&[
        "train",
        "vae",
        "--data",
        "/no/such/dir",
        "--no-progress",
        "--out",
        "/tmp/deepgen-never",
    ]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr.contains("/no/such/dir")
            && stderr.contains("data directory not found")
            && stderr.contains("data/mnist"),
        "{stderr}"
    );
}

#[test]
fn corrupt_data_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(mnist()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    // Cut the test labels short: a truncated gzip stream.
    let labels = dir.path().join("t10k-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &bytes[..bytes.len() / 2]).unwrap();
    let o = deepgen(&[
        "train",
        "vae",
        "--data",
        dir.path().to_str().unwrap(),
        "--no-progress",
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr.contains("t10k-labels-idx1-ubyte.gz") && stderr.contains("corrupt gzip"),
        "{stderr}"
    );
}

#[test]
fn bench_writes_the_json_contract() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let o = deepgen(&[
        "bench",
        "--quick",
        "--filter",
        "kl_divergence",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["adapter"].is_string());
    assert!(v["ceilings"]["bandwidth_gbps"].as_f64().unwrap() > 0.0);
    assert!(v["ceilings"]["fma_gflops"].as_f64().unwrap() > 0.0);
    let kernels = v["kernels"].as_array().unwrap();
    let row = kernels
        .iter()
        .find(|r| r["kernel"] == "kl_divergence")
        .expect("a kl_divergence row");
    for key in [
        "shape",
        "median_seconds",
        "gflops",
        "gbps",
        "fraction_of_ceiling",
        "timing",
    ] {
        assert!(row.get(key).is_some(), "row lacks {key}: {row}");
    }
    assert!(row["median_seconds"].as_f64().unwrap() > 0.0);
    assert!(["gpu-timestamp", "host"].contains(&row["timing"].as_str().unwrap()));
}

#[test]
fn debias_runs_both_models_over_seeds_and_reports_mean_and_sd() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("debias");
    let o = deepgen(&[
        "debias",
        "--seeds",
        "0,1",
        "--epochs",
        "1",
        "--limit",
        "600",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("seed 1 dbvae:") && stdout.contains("over 2 seeds"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("debias.json")).unwrap()).unwrap();
    assert_eq!(v["epochs"], 1);
    assert_eq!(v["rare_fraction"], 0.015);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (run, seed) in runs.iter().zip([0, 1]) {
        assert_eq!(run["seed"], seed);
        // Each run in the report is the last line of that run's metrics.jsonl.
        for name in ["plain", "dbvae"] {
            let metrics =
                std::fs::read_to_string(out.join(format!("seed{seed}/{name}/metrics.jsonl")))
                    .unwrap();
            let last: serde_json::Value =
                serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
            assert_eq!(run[name], last, "seed {seed} {name}");
            assert_eq!(run[name]["debias"], name == "dbvae");
        }
    }
    // The summary: mean and sample standard deviation over the two seeds, which for two
    // values a, b are (a + b) / 2 and |a - b| / sqrt(2).
    let summary = v["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2);
    for (entry, (model, key)) in summary
        .iter()
        .zip([("plain", "plain"), ("DB-VAE", "dbvae")])
    {
        assert_eq!(entry["model"], model);
        for field in [
            "common_accuracy",
            "rare_accuracy",
            "gap",
            "rare_positive_accuracy",
        ] {
            let a = runs[0][key][field].as_f64().unwrap();
            let b = runs[1][key][field].as_f64().unwrap();
            let pair = entry[field].as_array().unwrap();
            let (mean, sd) = (pair[0].as_f64().unwrap(), pair[1].as_f64().unwrap());
            assert!(
                (mean - (a + b) / 2.0).abs() < 1e-12,
                "{model} {field}: {entry}"
            );
            assert!(
                (sd - (a - b).abs() / 2f64.sqrt()).abs() < 1e-12,
                "{model} {field}: {entry}"
            );
        }
    }
    assert_eq!(
        std::fs::read(out.join("upweighted.png")).unwrap(),
        std::fs::read(out.join("seed0/dbvae/upweighted.png")).unwrap()
    );
}

/// The autotuner on first use: `deepgen bench` times every matmul version at one shape,
/// marks the tuner's pick, and the pick lands in the cache file of `DEEPGEN_CACHE_DIR`, keyed
/// by adapter and driver, where `deepgen info` lists it.
#[test]
fn bench_shows_every_matmul_version_and_the_tuner_caches_its_pick() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let json = dir.path().join("bench.json");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_deepgen"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DEEPGEN_CACHE_DIR", &cache)
            .env_remove("DEEPGEN_MATMUL")
            .output()
            .expect("spawn deepgen")
    };
    let o = run(&[
        "bench",
        "--quick",
        "--filter",
        "matmul_nt 128x784x400",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows: Vec<&serde_json::Value> = v["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kernel"] == "matmul_nt" && r["shape"] == "128x784x400")
        .collect();
    let versions: Vec<&str> = rows
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    for v in ["v1", "v2", "v3"] {
        assert!(versions.contains(&v), "no {v} row: {versions:?}");
    }
    let picked: Vec<&str> = rows
        .iter()
        .filter(|r| r["tuner_pick"] == true)
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(picked.len(), 1, "{rows:?}");
    let tuner = &v["tuner"][0];
    assert_eq!(tuner["pick"], picked[0]);
    let cached = std::fs::read_to_string(cache.join("tuning.json")).unwrap();
    let table: serde_json::Value = serde_json::from_str(&cached).unwrap();
    let (adapter, choices) = table.as_object().unwrap().iter().next().unwrap();
    assert!(
        adapter.contains(v["adapter"].as_str().unwrap()),
        "{adapter}"
    );
    assert_eq!(choices["matmul NT 128x784x400"], picked[0], "{cached}");
    let o = run(&["info"]);
    let (stdout, _) = text(&o);
    assert!(o.status.success(), "{stdout}");
    assert!(
        stdout.contains("matmul NT 128x784x400") && stdout.contains(picked[0]),
        "{stdout}"
    );
    // A later run takes the cached choice without measuring: edit it, and the pick follows.
    let other = if picked[0] == "v1" { "v2" } else { "v1" };
    let edited = cached.replace(
        &format!("\"matmul NT 128x784x400\": \"{}\"", picked[0]),
        &format!("\"matmul NT 128x784x400\": \"{other}\""),
    );
    assert_ne!(edited, cached);
    std::fs::write(cache.join("tuning.json"), edited).unwrap();
    let o = run(&[
        "bench",
        "--quick",
        "--filter",
        "matmul_nt 128x784x400",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["tuner"][0]["pick"], other, "{}", v["tuner"]);
}
