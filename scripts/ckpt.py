#!/usr/bin/env python3
"""Inspect a qkscope checkpoint (a safetensors file) without the C code.

    scripts/ckpt.py CKPT [--tensors] [--json]

Prints the metadata (format, step, evals, model shape, vocabulary size) and,
with --tensors, one row per tensor: name, shape, dtype, min, max, mean, L2
norm. --json prints the same as one JSON object (always with the tensors).

As a module: load(path) -> (tensors, metadata), tensors an ordered dict of
name -> float32 numpy array in file order, metadata the __metadata__ strings.
Also config_from_metadata() and vocab_from_metadata() for the stored config
and vocabulary. The reader is written from the safetensors format alone
(struct + json + numpy.frombuffer) so it cross-checks the C writer.
"""
import argparse
import configparser
import json
import os
import struct
import sys

import numpy as np

HEADER_MAX = 100_000_000  # the safetensors reference limit
FORMAT = "qkscope/1"


def _no_duplicates(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key '{dup}' appears twice in the header")
    return out


def _int_list(x):
    return isinstance(x, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                       and i >= 0 for i in x)


def load(path):
    """Reads and checks a safetensors file; raises ValueError('PATH: problem')."""
    try:
        return _load(path)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _load(path):
    if os.path.isdir(path):
        raise ValueError("is a directory, expected a safetensors file")
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"not a safetensors file: {len(raw)} bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8 or n > HEADER_MAX:
        raise ValueError(f"not a safetensors file: header length {n}")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("__metadata__ is not an object of strings")

    data = memoryview(raw)[8 + n:]
    tensors = {}
    pos = 0
    for name, e in header.items():
        dtype = e.get("dtype") if isinstance(e, dict) else None
        if dtype != "F32":
            raise ValueError(f"tensor '{name}': dtype {dtype!r}, expected 'F32'")
        shape, offs = e.get("shape"), e.get("data_offsets")
        if not _int_list(shape) or not _int_list(offs) or len(offs) != 2:
            raise ValueError(f"tensor '{name}': bad shape or data_offsets")
        begin, end = offs
        count = int(np.prod(shape, dtype=np.int64))
        if begin != pos or end > len(data) or end - begin != 4 * count:
            raise ValueError(f"tensor '{name}': data_offsets [{begin}, {end}] do not follow "
                             f"the previous tensor (ends at {pos}) with {4 * count} bytes")
        arr = np.frombuffer(data, dtype="<f4", count=count, offset=begin)
        tensors[name] = arr.astype(np.float32).reshape(shape)
        pos = end
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} bytes of data after the last tensor")
    return tensors, meta


def config_from_metadata(meta):
    """The stored resolved config as {section: {key: value}} (strings unquoted)."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(meta["config"])
    out = {}
    for section in cp.sections():
        out[section] = {}
        for key, value in cp[section].items():
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out[section][key] = value
    return out


def vocab_from_metadata(meta):
    """Token id -> character; "" stands for U+0000 (see src/formats/checkpoint.c)."""
    return [c if c else "\0" for c in json.loads(meta["vocab"])]


def _stats(a):
    a64 = a.astype(np.float64)
    return {"min": float(a64.min()), "max": float(a64.max()), "mean": float(a64.mean()),
            "norm": float(np.sqrt((a64 * a64).sum()))}


def summary(path):
    tensors, meta = load(path)
    cfg = config_from_metadata(meta)
    model = cfg.get("model", {})
    params = [n for n in tensors if not n.startswith("optim.")]
    return {
        "path": path,
        "format": meta.get("format"),
        "step": meta.get("step"),
        "eval_step": meta.get("eval_step"),
        "train_loss": meta.get("train_loss"),
        "val_loss": meta.get("val_loss"),
        "rng": meta.get("rng"),
        "model": {k: model[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "bias",
                                        "tie_embeddings", "qk") if k in model},
        "vocab_size": len(vocab_from_metadata(meta)),
        "n_tensors": len(params),
        "n_params": int(sum(tensors[n].size for n in params)),
        "optimizer_state": len(tensors) > len(params),
        "tensors": [dict(name=n, shape=list(a.shape), dtype="F32", **_stats(a))
                    for n, a in tensors.items()],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("--tensors", action="store_true", help="one row per tensor")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    try:
        s = summary(args.ckpt)
    except (OSError, ValueError, KeyError, configparser.Error) as e:
        print(f"ckpt.py: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(s))
        return 0
    if s["format"] != FORMAT:
        print(f"warning: format {s['format']!r}, expected {FORMAT!r}", file=sys.stderr)
    print(f"file        {s['path']}")
    print(f"format      {s['format']}")
    print(f"step        {s['step']} (batch rng {s['rng']})")
    print(f"last eval   step {s['eval_step']}: train_loss {s['train_loss']} "
          f"val_loss {s['val_loss']}")
    print("model       " + " ".join(f"{k}={v}" for k, v in s["model"].items()))
    print(f"vocab       {s['vocab_size']} characters")
    print(f"tensors     {s['n_tensors']} ({s['n_params']} parameters), optimizer state "
          f"{'yes' if s['optimizer_state'] else 'no'}")
    if args.tensors:
        w = max(len(t["name"]) for t in s["tensors"])
        print(f"\n{'name':<{w}}  {'shape':<12} dtype  {'min':>10} {'max':>10} {'mean':>10} "
              f"{'norm':>10}")
        for t in s["tensors"]:
            shape = "[" + ", ".join(map(str, t["shape"])) + "]"
            print(f"{t['name']:<{w}}  {shape:<12} {t['dtype']:<5}  {t['min']:>10.4g} "
                  f"{t['max']:>10.4g} {t['mean']:>10.4g} {t['norm']:>10.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
