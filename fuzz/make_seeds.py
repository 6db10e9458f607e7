#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/seeds/TARGET/ (committed; libFuzzer
grows fuzz/corpus/TARGET/ from them). Run from the repository root: python3 fuzz/make_seeds.py"""
import gzip, json, os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def idx(dims, data, magic=b"\x00\x00\x08"):
    return magic + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


raw = {
    "images_2x28x28": idx([2, 28, 28], bytes(range(256)) * 6 + bytes(32)),
    "labels_5": idx([5], bytes([0, 1, 2, 9, 7])),
    "images_3x2x2": idx([3, 2, 2], bytes(12)),
    "truncated": idx([10, 28, 28], bytes(100)),
    "extra": idx([2], bytes(5)),
    "wrong_magic": b"\x89PNG\r\n\x1a\n0000",
    "float_type": idx([2], bytes(8), magic=b"\x00\x00\x0d"),
    "zero_dims": b"\x00\x00\x08\x00",
    "huge_dims": idx([0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], b""),
    "short_header": b"\x00\x00\x08\x03\x00\x00",
    "label_12": idx([2], bytes([3, 12])),
}
for name, data in raw.items():
    put("idx", name, data)
    put("idx", name + ".gz", gzip.compress(data, mtime=0))
    put("idx_gz", name, data)
# A gzip "bomb" whose header declares 1.2 GB of images, and one with 4 MiB after its one byte of data.
put("idx", "bomb_declared.gz", gzip.compress(idx([1_500_000, 28, 28], bytes(4096)), mtime=0))
put("idx", "bomb_trailing.gz", gzip.compress(idx([1], b"\x01") + bytes(4 << 20), mtime=0))


def safetensors(meta, tensors):
    """tensors: name -> (dtype, shape, bytes)"""
    header = {"__metadata__": meta} if meta is not None else {}
    off = 0
    blob = b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blob += data
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def f32(n, value=0.5):
    return struct.pack("<f", value) * n


def ckpt(kind, meta, tensors):
    m = {"format": "deepgen", "model": kind}
    m.update(meta)
    return safetensors(m, {k: ("F32", s, f32(_prod(s))) for k, s in tensors.items()})


def _prod(s):
    p = 1
    for d in s:
        p *= d
    return p


put("checkpoint", "vae", ckpt("vae", {"input_dim": "784", "hidden_dim": "4", "latent_dim": "2"},
                              {"encoder.fc1.weight": [4, 784], "encoder.fc_mu.weight": [2, 4]}))
put("checkpoint", "vae_latent_1e9", ckpt("vae", {"input_dim": "784", "hidden_dim": "4", "latent_dim": "1000000000"},
                                         {"encoder.fc1.weight": [4, 784], "encoder.fc_mu.weight": [2, 4]}))
put("checkpoint", "ae", ckpt("ae", {"input_dim": "784", "hidden_dim": "3", "latent_dim": "2"},
                             {"encoder.fc1.weight": [3, 784], "encoder.fc_z.weight": [2, 3]}))
put("checkpoint", "gan", ckpt("gan", {"latent_dim": "5", "input_dim": "784"}, {"generator.fc1.weight": [8, 5]}))
put("checkpoint", "dcgan", ckpt("dcgan", {"latent_dim": "3"}, {"generator.fc.weight": [6272, 3]}))
put("checkpoint", "conv_vae", ckpt("conv-vae", {"latent_dim": "2"}, {"encoder.fc_mu.weight": [2, 8]}))
put("checkpoint", "classifier", ckpt("classifier", {"classes": "10"}, {"fc2.bias": [10]}))
put("checkpoint", "dbvae", ckpt("dbvae", {"latent_dim": "2"}, {"encoder.fc_mu.weight": [2, 400]}))
nan = safetensors({"format": "deepgen", "model": "gan", "latent_dim": "1"},
                  {"generator.fc1.weight": ("F32", [1, 1], struct.pack("<f", float("nan")))})
put("checkpoint", "nan_weight", nan)
put("checkpoint", "f16", safetensors({"format": "deepgen", "model": "vae"}, {"x": ("F16", [2], b"\x00\x3c\x00\x3c")}))
put("checkpoint", "not_deepgen", safetensors({"format": "pt"}, {"x": ("F32", [1], f32(1))}))
put("checkpoint", "no_metadata", safetensors(None, {"x": ("F32", [1], f32(1))}))
put("checkpoint", "header_2_60", struct.pack("<Q", 1 << 60) + b"{}")
put("checkpoint", "huge_shape", safetensors({"format": "deepgen", "model": "gan", "latent_dim": "1"},
                                            {"generator.fc1.weight": ("F32", [1 << 40, 1 << 40], b"")}))


def f64s(values):
    return b"".join(struct.pack("<d", v) for v in values)


state_meta = {"format": "deepgen-train-state", "version": "1", "model": "gan", "epoch": "1",
              "rng_seed": "0", "rng_counter": "12345", "setting.seed": "0", "setting.lr": "0.0002",
              "optimizer.generator.steps": "3", "optimizer.generator.params": "2",
              "optimizer.discriminator.steps": "3", "optimizer.discriminator.params": "1",
              "extra.rng": "00" * 49}
state_tensors = {
    "model.generator.fc1.weight": ("F32", [2, 3], f32(6)),
    "optimizer.generator.0.exp_avg": ("F32", [6], f32(6)),
    "optimizer.generator.0.exp_avg_sq": ("F32", [6], f32(6)),
    "optimizer.discriminator.0.exp_avg": ("F32", [1], f32(1)),
    "optimizer.discriminator.0.exp_avg_sq": ("F32", [1], f32(1)),
    "extra.last_weights": ("F64", [3], f64s([0.2, 0.3, 0.5])),
}
put("train_state", "epoch_boundary", safetensors(state_meta, state_tensors))
partial_meta = dict(state_meta, **{"partial.steps_done": "2", "partial.images": "16",
                                   "partial.seconds": "0.5", "partial.sums": "2"})
partial_tensors = dict(state_tensors, **{
    "partial.order": ("F64", [6], f64s([5, 3, 1, 0, 2, 4])),
    "partial.batch_sizes": ("F64", [3], f64s([2, 2, 2])),
    "partial.sum.0": ("F32", [], f32(1)),
    "partial.sum.1": ("F32", [], f32(1)),
})
put("train_state", "mid_epoch", safetensors(partial_meta, partial_tensors))
put("train_state", "sizes_overflow", safetensors(
    dict(partial_meta, **{"optimizer.generator.params": "18446744073709551615"}),
    dict(partial_tensors, **{"partial.batch_sizes": ("F64", [2], f64s([1e300, float("nan")]))})))
