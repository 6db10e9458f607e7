//! Runs that lose nothing, tested as a user meets them: the `deepgen` binary spawned with the
//! arguments a user types, its exit status, its messages and the files it leaves. Each test
//! is one case of docs/robustness.md (issue 12): output directories that keep what they
//! hold, `--resume` after SIGKILL and after Ctrl-C giving the figures of an uninterrupted run,
//! non-finite values caught, sizes checked before allocation, messages that name the thing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deepgen::checkpoint;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepgen"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "0");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("spawn deepgen")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `deepgen train MODEL --no-progress --out OUT ARGS...`
fn train(model: &str, out: &Path, args: &[&str]) -> Output {
    let mut all = vec!["train", model, "--no-progress", "--out", s(out)];
    all.extend_from_slice(args);
    run(&all)
}

/// A VAE checkpoint trained once for the tests that need one (128 images, 1 epoch).
fn vae_checkpoint() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let o = train(
            "vae",
            &dir.path().join("vae"),
            &["--limit", "128", "--epochs", "1"],
        );
        assert!(o.status.success(), "{}", text(&o));
        dir
    });
    dir.path().join("vae/model.safetensors")
}

/// The lines of metrics.jsonl without the wall-clock fields.
fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let m = v.as_object_mut().unwrap();
            m.remove("seconds");
            m.remove("images_per_second");
            v
        })
        .collect()
}

/// The checkpoint's tensors as bit patterns.
fn tensor_bits(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<u32>)> {
    checkpoint::load(path)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(n, (shape, v))| (n, (shape, v.iter().map(|x| x.to_bits()).collect())))
        .collect()
}

/// Every file of `dir` (not the lock, the state or the checkpoint, compared otherwise) and
/// its bytes.
fn images(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Waits (up to 10 minutes) until `ready()`, checking that `child` is still running.
fn wait_for(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {what}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How the run of a resume test is stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGKILL as soon as the first epoch's training state is on disk.
    Kill,
    /// SIGINT (Ctrl-C) inside the second epoch.
    Interrupt,
}

/// Trains `model` twice with the same arguments: straight through, and stopped by `stop` then
/// resumed with `--resume`. The two must end with the same metrics (bit for bit: the JSON
/// numbers print f64s exactly), the same tensors bit for bit, and the same images.
fn resumed_equals_uninterrupted(model: &str, args: &[&str], stop: Stop) {
    let dir = tempfile::tempdir().unwrap();
    let (straight, broken) = (dir.path().join("straight"), dir.path().join("broken"));
    let o = train(model, &straight, args);
    assert!(o.status.success(), "{}", text(&o));

    let mut cmd = bin();
    cmd.args(["train", model, "--no-progress", "--out", s(&broken)])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let state = broken.join("train_state.safetensors");
    match stop {
        Stop::Kill => {
            wait_for(&mut child, "the first state was saved", || state.is_file());
            child.kill().unwrap();
            child.wait().unwrap();
            let saved = deepgen::train::TrainState::load(&state).unwrap();
            assert!(saved.partial.is_none());
        }
        Stop::Interrupt => {
            let metrics_file = broken.join("metrics.jsonl");
            wait_for(&mut child, "the first epoch ended", || {
                std::fs::read_to_string(&metrics_file).is_ok_and(|t| t.lines().count() >= 1)
                    && state.is_file()
            });
            std::thread::sleep(Duration::from_millis(300));
            // SAFETY: sends SIGINT to the child we spawned, which has not been waited for.
            assert_eq!(
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) },
                0,
                "kill -INT"
            );
            let o = child.wait_with_output().unwrap();
            assert_eq!(o.status.code(), Some(130), "{}", text(&o));
            let err = stderr(&o);
            assert!(
                err.contains("deepgen: stopped at epoch 2") && err.contains("--resume"),
                "{err}"
            );
            // A stop asked for is reported as such, not as an error with a backtrace.
            assert!(
                !err.contains("Error:") && !err.contains("Stack backtrace"),
                "{err}"
            );
            let saved = deepgen::train::TrainState::load(&state).unwrap();
            let p = saved
                .partial
                .as_ref()
                .expect("stopped inside epoch 2, so the state holds the epoch in progress");
            assert!(
                p.steps_done >= 1 && p.steps_done < p.batches.len(),
                "{}",
                p.steps_done
            );
        }
    }
    let o = train(model, &broken, &[args, &["--resume"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("resuming"));
    assert_eq!(metrics(&broken), metrics(&straight), "{model}: metrics");
    assert_eq!(
        tensor_bits(&broken.join("model.safetensors")),
        tensor_bits(&straight.join("model.safetensors")),
        "{model}: weights"
    );
    assert_eq!(images(&broken), images(&straight), "{model}: images");
}

#[test]
fn vae_killed_between_epochs_and_resumed_equals_uninterrupted() {
    resumed_equals_uninterrupted(
        "vae",
        &["--limit", "1024", "--batch-size", "32", "--epochs", "3"],
        Stop::Kill,
    );
}

#[test]
fn classifier_killed_between_epochs_and_resumed_equals_uninterrupted() {
    // Dropout draws from the GPU generator: its (seed, counter) must be restored.
    resumed_equals_uninterrupted(
        "classifier",
        &["--limit", "512", "--batch-size", "32", "--epochs", "2"],
        Stop::Kill,
    );
}

#[test]
fn gan_interrupted_mid_epoch_and_resumed_equals_uninterrupted() {
    // Two optimizers, the fixed noise of the grids, and the epoch's partial sums.
    resumed_equals_uninterrupted(
        "gan",
        &[
            "--limit",
            "1024",
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--latent-dim",
            "16",
        ],
        Stop::Interrupt,
    );
}

#[test]
fn dbvae_interrupted_mid_epoch_and_resumed_equals_uninterrupted() {
    // The trainer's own generator (the epoch orders) and its resampling figures.
    resumed_equals_uninterrupted(
        "dbvae",
        &["--limit", "1024", "--batch-size", "8", "--epochs", "2"],
        Stop::Interrupt,
    );
}

#[test]
fn wgan_gp_interrupted_mid_epoch_and_resumed_equals_uninterrupted() {
    // Two optimizers, the interpolation weights' host generator, the generator steps every
    // n_critic-th critic step across the cut, and the Wasserstein curve (wasserstein.png).
    resumed_equals_uninterrupted(
        "wgan-gp",
        &[
            "--arch",
            "mlp",
            "--limit",
            "512",
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--latent-dim",
            "16",
        ],
        Stop::Interrupt,
    );
}

#[test]
fn a_rerun_into_a_finished_run_is_refused_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = train("vae", &out, &["--limit", "128", "--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let before: Vec<(PathBuf, Vec<u8>)> = ["metrics.jsonl", "model.safetensors"]
        .iter()
        .map(|f| (out.join(f), std::fs::read(out.join(f)).unwrap()))
        .collect();
    let o = train("vae", &out, &["--limit", "64", "--epochs", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("already holds a training run")
            && err.contains("--resume")
            && err.contains("--force"),
        "{err}"
    );
    for (path, bytes) in &before {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }
    // --resume with a different setting is refused, naming it; --force replaces the run.
    let o = train(
        "vae",
        &out,
        &[
            "--limit", "128", "--epochs", "2", "--lr", "0.01", "--resume",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("--lr 0.001 (this command: 0.01)"),
        "{}",
        text(&o)
    );
    let o = train(
        "gan",
        &out,
        &["--limit", "128", "--epochs", "2", "--resume"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("it holds a `vae` run, and this command trains a `gan`"),
        "{}",
        text(&o)
    );
    let o = train("vae", &out, &["--limit", "64", "--epochs", "1", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(metrics(&out)[0]["train_images"], 64);
}

#[test]
fn a_second_run_on_a_directory_in_use_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut first = bin()
        .args(["train", "vae", "--no-progress", "--out", s(&out)])
        .args(["--limit", "8192", "--epochs", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = out.join(".deepgen.lock");
    let pid = first.id();
    wait_for(&mut first, "the first run took the lock", || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&format!("pid {pid}")))
    });
    let o = train("vae", &out, &["--limit", "64", "--epochs", "1", "--force"]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("in use by another deepgen run") && err.contains(&format!("process {pid}")),
        "{err}"
    );
    // The lock goes with its process, even killed: the directory can be taken over now.
    let o = train("vae", &out, &["--limit", "64", "--epochs", "1", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[cfg(unix)]
#[test]
fn nothing_is_written_through_a_symbolic_link_and_stray_temporaries_go() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("precious.txt");
    std::fs::write(&outside, "keep me").unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    symlink(&outside, out.join("metrics.jsonl")).unwrap();
    // The link counts as a run's file: refused without --force.
    let o = train("vae", &out, &["--limit", "64", "--epochs", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // A lock file that is a link is refused (the refused run left a lock file of its own).
    std::fs::remove_file(out.join(".deepgen.lock")).unwrap();
    symlink(&outside, out.join(".deepgen.lock")).unwrap();
    let o = train("vae", &out, &["--limit", "64", "--epochs", "1", "--force"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", text(&o));
    std::fs::remove_file(out.join(".deepgen.lock")).unwrap();
    // Leftovers of a killed run's atomic writes.
    for f in [".deepgen-tmp-Ab12Cd", ".tmpX7y8Z9"] {
        std::fs::write(out.join(f), "half a checkpoint").unwrap();
    }
    let o = train("vae", &out, &["--limit", "64", "--epochs", "1", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    let meta = std::fs::symlink_metadata(out.join("metrics.jsonl")).unwrap();
    assert!(meta.is_file(), "metrics.jsonl is a file of its own now");
    for f in [".deepgen-tmp-Ab12Cd", ".tmpX7y8Z9"] {
        assert!(!out.join(f).exists(), "{f} was left");
    }
}

#[test]
fn a_nan_test_loss_stops_the_run() {
    // One step per epoch with an absurd learning rate: the step's loss is finite (the initial
    // weights), its update makes the weights overflow, and the test loss is NaN.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = train(
        "vae",
        &out,
        &[
            "--limit",
            "64",
            "--batch-size",
            "64",
            "--lr",
            "1e30",
            "--epochs",
            "2",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("training diverged at epoch 1") && err.contains("test_loss"),
        "{err}"
    );
    assert!(err.contains("no checkpoint was written"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(),
        ""
    );
    assert!(!out.join("model.safetensors").exists());
}

/// A copy of the checkpoint at `src` with `edit` applied to its metadata and tensors.
fn forge(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut BTreeMap<String, String>, &mut BTreeMap<String, (Vec<usize>, Vec<f32>)>),
) {
    use safetensors::tensor::TensorView;
    let ckpt = checkpoint::load(src).unwrap();
    let mut meta = ckpt.metadata.clone();
    let mut tensors: BTreeMap<_, _> = ckpt.tensors.into_iter().collect();
    edit(&mut meta, &mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (shape, v))| {
            let view = TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                bytemuck::cast_slice(v),
            )
            .unwrap();
            (n.clone(), view)
        })
        .collect();
    let info: std::collections::HashMap<String, String> = meta.into_iter().collect();
    std::fs::write(dst, safetensors::serialize(views, Some(info)).unwrap()).unwrap();
}

#[test]
fn a_checkpoint_with_nan_weights_is_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("nan.safetensors");
    forge(&vae_checkpoint(), &bad, |_, t| {
        t.get_mut("decoder.fc2.weight").unwrap().1[7] = f32::NAN;
    });
    let png = dir.path().join("s.png");
    for args in [
        vec!["sample", "--checkpoint", s(&bad), "--out", s(&png)],
        vec!["eval", "--checkpoint", s(&bad), "--fid-samples", "0"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let err = stderr(&o);
        assert!(
            err.contains("decoder.fc2.weight") && err.contains("NaN at index 7"),
            "{err}"
        );
    }
    assert!(!png.exists());
}

/// Spawns `args` and returns its output and its peak resident memory (bytes), read from
/// the kernel's accounting of that one child (wait4).
#[cfg(unix)]
#[allow(clippy::zombie_processes)] // reaped by wait4, which std's `wait` would pre-empt
fn run_measured(args: &[&str]) -> (i32, String, u64) {
    let child = bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.unwrap(), &mut err).unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; `pid` is our unwaited child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    (code, err, usage.ru_maxrss as u64 * 1024)
}

#[cfg(unix)]
#[test]
fn a_forged_latent_dim_is_refused_before_any_allocation() {
    let dir = tempfile::tempdir().unwrap();
    for latent in ["1000000000", "1000000"] {
        let bad = dir.path().join(format!("latent{latent}.safetensors"));
        forge(&vae_checkpoint(), &bad, |meta, _| {
            meta.insert("latent_dim".into(), latent.into());
        });
        let png = dir.path().join("s.png");
        let (code, err, peak) =
            run_measured(&["sample", "--checkpoint", s(&bad), "--out", s(&png)]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!("`latent_dim` = {latent}"))
                && err.contains("encoder.fc_mu.weight")
                && err.contains(s(&bad)),
            "{err}"
        );
        // The model it describes would take 4 GB (10^6) to 1.6 TB (10^9); the refusal takes
        // what opening the adapter takes.
        assert!(peak < 1 << 30, "peak resident memory {peak} bytes");
    }
}

#[test]
fn a_batch_size_beyond_the_adapter_is_refused_naming_the_largest_that_fits() {
    let info = run(&["info"]);
    let line = String::from_utf8_lossy(&info.stdout)
        .lines()
        .find(|l| l.starts_with("max storage buffer binding:"))
        .map(str::to_string)
        .expect("info prints the binding limit");
    let binding: u64 = line.split_whitespace().nth(4).unwrap().parse().unwrap();
    // The DCGAN's largest intermediate: 50,176 floats per image (models::largest_floats_per_sample).
    let fits = binding / (4 * 50_176);
    let dir = tempfile::tempdir().unwrap();
    let too_many = (fits + 1).to_string();
    let o = train(
        "dcgan",
        &dir.path().join("run"),
        &[
            "--limit",
            &too_many,
            "--epochs",
            "1",
            "--batch-size",
            &too_many,
        ],
    );
    if fits < 65_536 {
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("--batch-size {too_many} is too large"))
                && err.contains(&format!("largest batch size that fits is {fits}")),
            "{err}"
        );
        assert!(
            !dir.path().join("run/metrics.jsonl").exists(),
            "checked before the run"
        );
        // With fewer training images than the batch size, the batches are smaller: it runs.
        let o = train(
            "dcgan",
            &dir.path().join("small"),
            &["--limit", "16", "--epochs", "1", "--batch-size", &too_many],
        );
        assert!(o.status.success(), "{}", text(&o));
    } else {
        assert_eq!(o.status.code(), Some(2), "the parser's limit: {}", text(&o));
    }
}

/// Writes an MNIST-format directory of raw IDX files: `n` images of `side` x `side` and
/// labels from `label(i)`; the test split only if `train` is false.
fn write_mnist(dir: &Path, n: usize, side: usize, label: impl Fn(usize) -> u8, train: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let idx = |dims: &[u32], data: Vec<u8>| {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend(data);
        b
    };
    let images = idx(
        &[n as u32, side as u32, side as u32],
        (0..n * side * side).map(|i| (i * 7 % 256) as u8).collect(),
    );
    let labels = idx(&[n as u32], (0..n).map(&label).collect());
    let splits: &[&str] = if train { &["train", "t10k"] } else { &["t10k"] };
    for split in splits {
        std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), &images).unwrap();
        std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), &labels).unwrap();
    }
}

#[test]
fn bad_data_is_named_with_its_file_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels");
    write_mnist(&labels, 20, 28, |i| if i == 13 { 12 } else { 3 }, true);
    let o = train(
        "classifier",
        &dir.path().join("o1"),
        &["--data", s(&labels), "--epochs", "1"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("train-labels-idx1-ubyte") && err.contains("label 12 of image 13"),
        "{err}"
    );

    let big = dir.path().join("big");
    write_mnist(&big, 4, 32, |_| 1, true);
    let o = train("vae", &dir.path().join("o2"), &["--data", s(&big)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("32x32") && err.contains("28x28"),
        "{err}"
    );

    // A directory where a file should be, and a named pipe (reading it would block).
    let odd = dir.path().join("odd");
    write_mnist(&odd, 4, 28, |_| 1, true);
    std::fs::remove_file(odd.join("t10k-labels-idx1-ubyte")).unwrap();
    std::fs::create_dir(odd.join("t10k-labels-idx1-ubyte")).unwrap();
    let o = train("vae", &dir.path().join("o3"), &["--data", s(&odd)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("t10k-labels-idx1-ubyte: is a directory"),
        "{}",
        text(&o)
    );
    #[cfg(unix)]
    {
        std::fs::remove_dir(odd.join("t10k-labels-idx1-ubyte")).unwrap();
        let fifo = std::ffi::CString::new(s(&odd.join("t10k-labels-idx1-ubyte"))).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let o = train("vae", &dir.path().join("o4"), &["--data", s(&odd)]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(stderr(&o).contains("not a regular file"), "{}", text(&o));
    }
}

#[test]
fn ood_reads_only_the_test_split_and_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let ood = dir.path().join("ood");
    write_mnist(&ood, 30, 28, |i| (i % 10) as u8, false);
    let o = run(&[
        "outliers",
        "--checkpoint",
        s(&vae_checkpoint()),
        "--ood",
        s(&ood),
        "--limit",
        "20",
        "--samples",
        "2",
        "--out",
        s(&dir.path().join("out")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&[
        "outliers",
        "--checkpoint",
        s(&vae_checkpoint()),
        "--ood",
        "/no/such/ood",
        "--out",
        s(&dir.path().join("out2")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("/no/such/ood") && err.contains("--ood") && !err.contains("--data"),
        "{err}"
    );
}

#[test]
fn eval_refuses_what_cannot_give_a_figure_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = vae_checkpoint();
    let o = run(&["eval", "--checkpoint", s(&ckpt), "--fid-samples", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("at least 2"), "{}", text(&o));
    // A --json path under a regular file: a directory that not even root can create.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let json = blocker.join("eval.json");
    let start = Instant::now();
    let o = run(&["eval", "--checkpoint", s(&ckpt), "--json", s(&json)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!("--json {}", json.display()))
            && stderr(&o).contains("not-a-dir is not a directory"),
        "{}",
        text(&o)
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "refused before the evaluation"
    );

    let gan = dir.path().join("gan");
    let o = train(
        "gan",
        &gan,
        &["--limit", "64", "--epochs", "1", "--latent-dim", "8"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&[
        "eval",
        "--checkpoint",
        s(&gan.join("model.safetensors")),
        "--fid-samples",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("nothing to evaluate"), "{}", text(&o));

    let o = run(&[
        "sample",
        "--checkpoint",
        s(&ckpt),
        "--out",
        s(&dir.path().join("x.jpg")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("unsupported file type .jpg") && stderr(&o).contains(".png or .npy"),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join("x.jpg").exists());
}

#[test]
fn eval_works_out_of_the_box_with_the_built_in_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("eval.json");
    let o = run(&[
        "eval",
        "--checkpoint",
        s(&vae_checkpoint()),
        "--samples",
        "2",
        "--test-images",
        "20",
        "--fid-samples",
        "100",
        "--json",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("classifier-FID"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(
        v["classifier"].as_str().unwrap().starts_with("built-in"),
        "{v}"
    );
    assert!(v["classifier_fid"].as_f64().unwrap() > 0.0, "{v}");
    // The train-vs-test floor, the same whatever the model: the shipped classifier's README
    // states it.
    let floor = v["classifier_fid_floor"].as_f64().unwrap();
    assert!((floor - 3.23).abs() < 0.2, "floor {floor}");
}

#[test]
fn the_adapter_can_be_chosen_by_backend() {
    let o = bin()
        .arg("info")
        .env("DEEPGEN_ADAPTER", "no-such-adapter-anywhere")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("adapters found:") && err.contains(" ["),
        "{err}"
    );
    let backend = String::from_utf8_lossy(&run(&["info"]).stdout)
        .lines()
        .find_map(|l| l.strip_prefix("backend:").map(|b| b.trim().to_string()))
        .unwrap();
    let o = bin()
        .arg("info")
        .env("DEEPGEN_ADAPTER", backend.to_lowercase())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("backend:      {backend}")),
        "{}",
        text(&o)
    );
}
