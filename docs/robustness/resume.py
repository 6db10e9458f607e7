#!/usr/bin/env python3
"""Resumed against uninterrupted: trains each model three times with the same settings:
straight through, SIGKILLed as soon as its first epoch's state is saved and resumed, and
stopped with SIGINT (Ctrl-C) in the middle of its second epoch and resumed. Prints each run's
per-epoch figures and whether the final weights are bit-identical.

usage: python3 docs/robustness/resume.py BIN OUT     (from the repository root)
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

BIN, OUT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
ENV = dict(os.environ, RUST_BACKTRACE="0")
RUNS = {
    "vae": ["--limit", "10000", "--epochs", "3"],
    "gan": ["--limit", "10000", "--epochs", "3"],
}


def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    return {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items() if k != "__metadata__"}


def metrics(d):
    rows = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
    for r in rows:
        r.pop("seconds", None)
        r.pop("images_per_second", None)
    return rows


def lines(path):
    try:
        return len(open(path).read().splitlines())
    except OSError:
        return 0


report = {}
for model, args in RUNS.items():
    base = os.path.join(OUT, model)
    shutil.rmtree(base, ignore_errors=True)
    cmd = lambda d, *extra: [BIN, "train", model, "--no-progress", "--out", d, *args, *extra]
    straight, killed, stopped = (os.path.join(base, n) for n in ("straight", "killed", "interrupted"))
    subprocess.run(cmd(straight), check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    p = subprocess.Popen(cmd(killed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(os.path.join(killed, "train_state.safetensors")):
        time.sleep(0.01)
    p.kill()
    p.wait()
    subprocess.run(cmd(killed, "--resume"), check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    p = subprocess.Popen(cmd(stopped), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while lines(os.path.join(stopped, "metrics.jsonl")) < 1:
        time.sleep(0.01)
    time.sleep(2.0)
    p.send_signal(signal.SIGINT)
    err = p.communicate()[1].decode()
    stop_line = [l.strip() for l in err.splitlines() if "stopped at" in l]
    subprocess.run(cmd(stopped, "--resume"), check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ref = tensors(os.path.join(straight, "model.safetensors"))
    report[model] = {
        "args": " ".join(args),
        "straight": metrics(straight),
        "killed_and_resumed": metrics(killed),
        "interrupted_and_resumed": metrics(stopped),
        "interrupt_status": p.returncode,
        "interrupt_message": stop_line,
        "weights_identical_after_kill": tensors(os.path.join(killed, "model.safetensors")) == ref,
        "weights_identical_after_interrupt": tensors(os.path.join(stopped, "model.safetensors")) == ref,
        "metrics_identical_after_kill": metrics(killed) == metrics(straight),
        "metrics_identical_after_interrupt": metrics(stopped) == metrics(straight),
    }
    json.dump(report, open(os.path.join(OUT, "resume.json"), "w"), indent=1)
print(json.dumps(report, indent=1))
