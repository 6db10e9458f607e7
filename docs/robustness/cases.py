#!/usr/bin/env python3
"""The cases of issue 12 (docs/robustness.md), run against one deepgen binary.

usage: python3 docs/robustness/cases.py BIN OUT [CASE...]

Runs each case in its own folder under OUT (from the repository root: data/mnist is
relative), and writes OUT/cases.json: per case, each command's exit status, seconds, peak
resident memory (of that process alone, from wait4) and the last lines of its stderr, plus
the case's own observations (files left, whether a file outside the run was overwritten...).
Run it with the binary of the commit before the change and with the new one; the table in
docs/robustness.md is read from the two files.
"""
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

BIN = os.path.abspath(sys.argv[1])
OUT = os.path.abspath(sys.argv[2])
ONLY = set(sys.argv[3:])
ENV = dict(os.environ, RUST_BACKTRACE="0")
results = {}
if os.path.exists(os.path.join(OUT, "cases.json")):  # a rerun of some cases keeps the others
    results = json.load(open(os.path.join(OUT, "cases.json")))


def run(args, cwd=None, env=None, stdin=None, timeout=1800):
    """Runs BIN ARGS; returns status, seconds, peak RSS (MiB) and the stderr tail."""
    start = time.time()
    err_path = os.path.join(OUT, "stderr.tmp")
    with open(err_path, "wb") as err:
        p = subprocess.Popen([BIN] + args, stdout=subprocess.DEVNULL, stderr=err,
                             cwd=cwd, env=env or ENV)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                p.kill()
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
    code = os.waitstatus_to_exitcode(status)
    text = open(err_path, errors="replace").read()
    lines = [l for l in text.splitlines() if l.strip() and "XDG_RUNTIME_DIR" not in l]
    return {
        "args": " ".join(args),
        "status": code,
        "seconds": round(time.time() - start, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "stderr": lines[-3:],
    }


def case(name):
    def wrap(f):
        if ONLY and name not in ONLY:
            return f
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        print("==", name, flush=True)
        try:
            results[name] = f(d)
        except Exception as e:  # noqa: BLE001 - record and go on
            results[name] = {"error": repr(e)}
        json.dump(results, open(os.path.join(OUT, "cases.json"), "w"), indent=1)
        return f
    return wrap


def train(out, *extra, model="vae"):
    return run(["train", model, "--no-progress", "--out", out, *extra])


def lines(path):
    try:
        return len(open(path).read().splitlines())
    except OSError:
        return None


def idx(dims, data):
    return b"\x00\x00\x08" + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


def mnist_dir(d, n=20, side=28, label=lambda i: 3, splits=("train", "t10k")):
    os.makedirs(d, exist_ok=True)
    images = idx([n, side, side], bytes((i * 7) % 256 for i in range(n * side * side)))
    labels = idx([n], bytes(label(i) for i in range(n)))
    for s in splits:
        open(os.path.join(d, f"{s}-images-idx3-ubyte"), "wb").write(images)
        open(os.path.join(d, f"{s}-labels-idx1-ubyte"), "wb").write(labels)
    return d


os.makedirs(OUT, exist_ok=True)
# Shared checkpoints: a VAE and a GAN, trained by the binary under test.
SHARED = os.path.join(OUT, "shared")
VAE = os.path.join(SHARED, "vae", "model.safetensors")
GAN = os.path.join(SHARED, "gan", "model.safetensors")
if not os.path.exists(VAE):
    shutil.rmtree(SHARED, ignore_errors=True)
    train(os.path.join(SHARED, "vae"), "--limit", "128", "--epochs", "1")
    train(os.path.join(SHARED, "gan"), "--limit", "128", "--epochs", "1", "--latent-dim", "8", model="gan")


def forge(src, dst, meta=None, nan_tensor=None):
    """Copies a safetensors checkpoint, changing metadata entries or putting a NaN first in a tensor."""
    raw = open(src, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = bytearray(raw[8 + n:])
    if meta:
        header["__metadata__"].update(meta)
    if nan_tensor:
        off = header[nan_tensor]["data_offsets"][0]
        data[off:off + 4] = struct.pack("<f", float("nan"))
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(dst, "wb").write(struct.pack("<Q", len(h)) + h + bytes(data))


@case("1a_rerun_into_finished_run")
def _(d):
    out = os.path.join(d, "run")
    first = train(out, "--limit", "256", "--epochs", "2")
    before = open(os.path.join(out, "model.safetensors"), "rb").read()
    second = train(out, "--limit", "128", "--epochs", "1")
    after = open(os.path.join(out, "model.safetensors"), "rb").read()
    return {"first": first, "second": second, "checkpoint_replaced": before != after,
            "metrics_lines_after": lines(os.path.join(out, "metrics.jsonl"))}


@case("1b_diverging_run_into_finished_run")
def _(d):
    out = os.path.join(d, "run")
    train(out, "--limit", "256", "--epochs", "1")
    bad = train(out, "--limit", "64", "--batch-size", "64", "--lr", "1e30", "--epochs", "2")
    forced = train(out, "--limit", "64", "--batch-size", "64", "--lr", "1e30", "--epochs", "2", "--force")
    return {"diverging": bad, "diverging_with_force": forced,
            "metrics_lines_after": lines(os.path.join(out, "metrics.jsonl")),
            "old_checkpoint_left": os.path.exists(os.path.join(out, "model.safetensors"))}


@case("1c_two_runs_one_directory")
def _(d):
    out = os.path.join(d, "run")
    args = ["train", "vae", "--no-progress", "--out", out, "--limit", "8192", "--epochs", "3"]
    a = subprocess.Popen([BIN] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    time.sleep(3)
    b = subprocess.Popen([BIN] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    ea, eb = a.communicate()[1].decode(), b.communicate()[1].decode()
    last = lambda t: [l for l in t.splitlines() if l.strip() and "XDG" not in l][-2:]
    return {"first_status": a.returncode, "second_status": b.returncode,
            "second_stderr": last(eb), "metrics_lines": lines(os.path.join(out, "metrics.jsonl"))}


@case("1d_metrics_symlink")
def _(d):
    out = os.path.join(d, "run")
    os.makedirs(out)
    outside = os.path.join(d, "outside.txt")
    open(outside, "w").write("precious\n")
    os.symlink(outside, os.path.join(out, "metrics.jsonl"))
    r = train(out, "--limit", "64", "--epochs", "1")
    forced = train(out, "--limit", "64", "--epochs", "1", "--force")
    return {"run": r, "with_force": forced,
            "outside_file_now": open(outside).read()[:60]}


@case("2a_kill_and_resume")
def _(d):
    out = os.path.join(d, "run")
    args = ["train", "vae", "--no-progress", "--out", out, "--limit", "2048", "--epochs", "3"]
    p = subprocess.Popen([BIN] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    while lines(os.path.join(out, "metrics.jsonl")) in (None, 0):
        time.sleep(0.05)
    time.sleep(1.0)
    p.kill()
    p.wait()
    resumed = train(out, "--limit", "2048", "--epochs", "3", "--resume")
    rerun = train(out, "--limit", "2048", "--epochs", "3")
    return {"resume": resumed, "plain_rerun": rerun,
            "metrics_lines": lines(os.path.join(out, "metrics.jsonl"))}


@case("2b_ctrl_c")
def _(d):
    out = os.path.join(d, "run")
    args = ["train", "vae", "--no-progress", "--out", out, "--limit", "2048", "--batch-size", "16", "--epochs", "2"]
    p = subprocess.Popen([BIN] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    while lines(os.path.join(out, "metrics.jsonl")) in (None, 0):
        time.sleep(0.05)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    err = p.communicate()[1].decode()
    return {"status": p.returncode, "stderr": [l for l in err.splitlines() if l.strip() and "XDG" not in l][-2:],
            "files": sorted(os.listdir(out))}


@case("3a_nan_test_loss")
def _(d):
    out = os.path.join(d, "run")
    r = train(out, "--limit", "64", "--batch-size", "64", "--lr", "1e30", "--epochs", "2")
    return {"run": r, "metrics": open(os.path.join(out, "metrics.jsonl")).read()[:300]
            if os.path.exists(os.path.join(out, "metrics.jsonl")) else None,
            "checkpoint_left": os.path.exists(os.path.join(out, "model.safetensors"))}


@case("3b_nan_checkpoint")
def _(d):
    bad_vae, bad_gan = os.path.join(d, "vae_nan.safetensors"), os.path.join(d, "gan_nan.safetensors")
    forge(VAE, bad_vae, nan_tensor="decoder.fc2.weight")
    forge(GAN, bad_gan, nan_tensor="generator.fc4.weight")
    out = {}
    for name, args in [
        ("sample_vae", ["sample", "--checkpoint", bad_vae, "--out", os.path.join(d, "vae.npy")]),
        ("sample_gan", ["sample", "--checkpoint", bad_gan, "--out", os.path.join(d, "gan.npy")]),
        ("eval_vae", ["eval", "--checkpoint", bad_vae, "--fid-samples", "0", "--samples", "2", "--test-images", "20"]),
    ]:
        out[name] = run(args)
    try:
        import numpy as np
        for f in ["vae", "gan"]:
            p = os.path.join(d, f + ".npy")
            if os.path.exists(p):
                a = np.load(p)
                out[f + "_npy"] = {"nan": int(np.isnan(a).sum()), "min": float(np.nanmin(a)) if not np.isnan(a).all() else None,
                                   "max": float(np.nanmax(a)) if not np.isnan(a).all() else None}
    except ImportError:
        pass
    return out


@case("4a_latent_dim_forged")
def _(d):
    out = {}
    for latent in ["1000000000", "1000000"]:
        bad = os.path.join(d, f"latent_{latent}.safetensors")
        forge(VAE, bad, meta={"latent_dim": latent})
        out[latent] = run(["sample", "--checkpoint", bad, "--out", os.path.join(d, "s.png")])
    return out


@case("4b_fid_samples_memory")
def _(d):
    out = {}
    for n in ["2000", "20000"]:
        out[n] = run(["eval", "--checkpoint", VAE, "--samples", "1", "--test-images", "10", "--fid-samples", n,
                      "--classifier", os.path.abspath("models/classifier/model.safetensors")])
    return out


@case("4c_gzip_bomb")
def _(d):
    data = mnist_dir(os.path.join(d, "data"), n=10)
    path = os.path.join(data, "train-images-idx3-ubyte")
    os.remove(path)
    with gzip.open(path + ".gz", "wb", compresslevel=9) as f:
        f.write(idx([10, 28, 28], bytes(7840)))
        zeros = bytes(1 << 24)
        for _ in range(72):  # 1.2 GB of zeros after the 10 images
            f.write(zeros)
    size = os.path.getsize(path + ".gz")
    return {"gz_bytes": size, "run": train(os.path.join(d, "run"), "--data", data, "--epochs", "1")}


@case("4d_batch_size")
def _(d):
    return {"vae_65536": train(os.path.join(d, "a"), "--epochs", "1", "--batch-size", "65536"),
            "dcgan_669": train(os.path.join(d, "b"), "--limit", "669", "--epochs", "1", "--batch-size", "669", model="dcgan")}


@case("5a_label_above_9")
def _(d):
    data = mnist_dir(os.path.join(d, "data"), n=20, label=lambda i: 12 if i == 13 else 3)
    return train(os.path.join(d, "run"), "--data", data, "--epochs", "1", model="classifier")


@case("5b_images_32x32")
def _(d):
    data = mnist_dir(os.path.join(d, "data"), n=4, side=32)
    return train(os.path.join(d, "run"), "--data", data, "--epochs", "1")


@case("5c_directory_fifo")
def _(d):
    data = mnist_dir(os.path.join(d, "data"), n=4)
    lab = os.path.join(data, "t10k-labels-idx1-ubyte")
    os.remove(lab)
    os.mkdir(lab)
    a = train(os.path.join(d, "r1"), "--data", data, "--epochs", "1")
    os.rmdir(lab)
    os.mkfifo(lab)
    b = run(["train", "vae", "--no-progress", "--out", os.path.join(d, "r2"), "--data", data, "--epochs", "1"],
            timeout=60)
    return {"directory": a, "fifo": b}


@case("5d_unreadable_directory")
def _(d):
    data = mnist_dir(os.path.join(d, "data"), n=4)
    os.chmod(data, 0o000)
    os.chmod(d, 0o777)
    env = dict(ENV, HOME="/tmp")
    args = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BIN, "train", "vae", "--no-progress",
            "--out", os.path.join(d, "run"), "--data", data, "--epochs", "1"]
    p = subprocess.run(args, capture_output=True, env=env, cwd="/tmp")
    os.chmod(data, 0o755)
    err = [l for l in p.stderr.decode().splitlines() if l.strip() and "XDG" not in l][-2:]
    return {"status": p.returncode, "stderr": err}


@case("5e_ood_test_split_only")
def _(d):
    ood = mnist_dir(os.path.join(d, "ood"), n=30, splits=("t10k",))
    a = run(["outliers", "--checkpoint", VAE, "--ood", ood, "--limit", "20", "--samples", "2", "--out", os.path.join(d, "o1")])
    b = run(["outliers", "--checkpoint", VAE, "--ood", "/no/such/ood", "--limit", "20", "--out", os.path.join(d, "o2")])
    return {"test_split_only": a, "missing_dir": b}


@case("5f_eval_arguments")
def _(d):
    # A --json path under a regular file: a directory even root cannot create.
    blocker = os.path.join(d, "not-a-dir")
    open(blocker, "w").write("")
    return {
        "fid_samples_1": run(["eval", "--checkpoint", VAE, "--samples", "2", "--test-images", "20", "--fid-samples", "1",
                              "--classifier", os.path.abspath("models/classifier/model.safetensors")]),
        "bad_json": run(["eval", "--checkpoint", VAE, "--samples", "2", "--test-images", "200", "--fid-samples", "500",
                         "--classifier", os.path.abspath("models/classifier/model.safetensors"),
                         "--json", os.path.join(blocker, "eval.json")]),
        "gan_fid_0": run(["eval", "--checkpoint", GAN, "--fid-samples", "0"]),
    }


@case("5g_sample_jpg")
def _(d):
    p = os.path.join(d, "x.jpg")
    r = run(["sample", "--checkpoint", VAE, "--out", p])
    head = open(p, "rb").read(8) if os.path.exists(p) else None
    return {"run": r, "file_starts_with": head.hex() if head else None}


@case("5h_stray_temporaries")
def _(d):
    out = os.path.join(d, "run")
    train(out, "--limit", "64", "--epochs", "1")
    for f in [".tmpX7y8Z9", ".deepgen-tmp-Ab12Cd"]:
        open(os.path.join(out, f), "w").write("half a checkpoint")
    r = train(out, "--limit", "64", "--epochs", "1", "--force")
    if r["status"] == 2:  # no --force: a plain rerun
        r = train(out, "--limit", "64", "--epochs", "1")
    return {"run": r, "left": sorted(f for f in os.listdir(out) if "tmp" in f)}


@case("5i_adapter_choice")
def _(d):
    out = {}
    for want in ["llvmpipe", "llvmpipe gl", "gl"]:
        p = subprocess.run([BIN, "info"], capture_output=True, env=dict(ENV, DEEPGEN_ADAPTER=want))
        b = [l for l in p.stdout.decode().splitlines() if l.startswith("backend")]
        e = [l for l in p.stderr.decode().splitlines() if l.strip() and "XDG" not in l][-1:]
        out[want] = {"status": p.returncode, "backend": b, "stderr": e}
    p = subprocess.run([BIN, "info"], capture_output=True, env=dict(ENV, VK_ICD_FILENAMES="/nonexistent.json"))
    out["no_vulkan_driver"] = {
        "status": p.returncode,
        "backend": [l for l in p.stdout.decode().splitlines() if l.startswith("backend")],
        "stderr": [l for l in p.stderr.decode().splitlines() if l.strip() and "XDG" not in l][-2:],
    }
    return out


@case("6_eval_out_of_the_box")
def _(d):
    return run(["eval", "--checkpoint", VAE, "--samples", "2", "--test-images", "20", "--fid-samples", "200"])


print(json.dumps(results, indent=1))
