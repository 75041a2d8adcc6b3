#!/usr/bin/env python3
"""Inspect a qkscope checkpoint (a safetensors file) without the C code.

    scripts/ckpt.py CKPT [--tensors] [--json]
    scripts/ckpt.py CKPT --write OUT [--without-checksums]

Prints the metadata (format, step, evals, model shape, vocabulary size,
whether the checksums were verified) and, with --tensors, one row per tensor:
name, shape, dtype, min, max, mean, L2 norm. --json prints the same as one
JSON object (always with the tensors). --write OUT writes the checkpoint
back, checksums recomputed (the bytes qkscope writes), or without any
(--without-checksums: a file as qkscope wrote before it recorded them).

As a module: load(path) -> (tensors, metadata), tensors an ordered dict of
name -> float32 numpy array in file order, metadata the __metadata__ strings.
Also config_from_metadata() and vocab_from_metadata() for the stored config
and vocabulary, and, for editing a file without numpy, read_raw(path) ->
(header, data) (read_verified: the tensors' checksums checked too) and
pack(header, data) -> the file's bytes. The reader is written from the
safetensors format alone (struct + json + numpy.frombuffer, and zlib.crc32
for the checksums) so it cross-checks the C writer.
"""
import argparse
import configparser
import json
import os
import re
import struct
import sys
import zlib

try:
    import numpy as np
except ImportError:  # read_raw, pack and --write do without
    np = None

HEADER_MAX = 100_000_000  # the safetensors reference limit
FORMAT = "qkscope/1"
# Checksums in __metadata__ (src/formats/checkpoint.c): "crc32.<tensor>" is
# the CRC-32 of the tensor's bytes; "crc32.header" that of the header's bytes
# (padding included) with its own 8 digits read as "00000000".
CRC_PREFIX = "crc32."
CRC_HEADER = CRC_PREFIX + "header"
_CRC_HEADER_ENTRY = re.compile(rb'"crc32\.header"[ \t\r\n]*:[ \t\r\n]*"([^"]*)"')
_CRC_HEX = re.compile(r"[0-9a-f]{8}")


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
    """Reads and checks a safetensors file, its checksums included when it has
    them; raises ValueError('PATH: problem')."""
    try:
        return _load(path)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def read_raw(path):
    """(header, data): the header as a dict in file order, __metadata__ and
    the tensor entries as they are, and the data section's bytes. Checks the
    header's checksum when it has one; raises ValueError('PATH: problem')."""
    try:
        return _read_raw(path)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _read_raw(path):
    if os.path.isdir(path):
        raise ValueError("is a directory, expected a safetensors file")
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"not a safetensors file: {len(raw)} bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8 or n > HEADER_MAX:
        raise ValueError(f"not a safetensors file: header length {n}")
    text = raw[8:8 + n]
    _check_header_crc(text)
    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header, raw[8 + n:]


def _header_crc(text, at):
    """CRC-32 of the header bytes with the 8 digits at `at` read as zeros."""
    return zlib.crc32(text[:at] + b"00000000" + text[at + 8:])


def _check_header_crc(text):
    found = list(_CRC_HEADER_ENTRY.finditer(text))
    if len(found) != 1 or not _CRC_HEX.fullmatch(found[0].group(1).decode("latin-1")):
        return  # absent or malformed: judged with the metadata
    want = found[0].group(1).decode()
    got = f"{_header_crc(text, found[0].start(1)):08x}"
    if got != want:
        raise ValueError(f"checksum mismatch in the header: expected crc32 {want}, found {got} "
                         "(the file is corrupt)")


def checksums(meta, names):
    """The tensors' expected CRC-32s by name, {} for a file without
    checksums; raises ValueError when they are malformed or incomplete."""
    crcs = {k[len(CRC_PREFIX):]: v for k, v in meta.items() if k.startswith(CRC_PREFIX)}
    if not crcs:
        return {}
    for k, v in crcs.items():
        if not _CRC_HEX.fullmatch(v):
            raise ValueError(f"metadata '{CRC_PREFIX}{k}' is '{v}', expected 8 lowercase hex "
                             "digits (a CRC-32)")
    if crcs.pop("header", None) is None:
        raise ValueError(f"metadata has crc32 entries but no '{CRC_HEADER}'")
    for k in crcs:
        if k not in names:
            raise ValueError(f"metadata '{CRC_PREFIX}{k}' names no tensor of the file")
    for k in names:
        if k not in crcs:
            raise ValueError(f"tensor '{k}' has no checksum (metadata '{CRC_PREFIX}{k}'), "
                             "while the file has others")
    return {k: int(v, 16) for k, v in crcs.items()}


def _check_tensor_crc(name, chunk, crcs):
    got = zlib.crc32(chunk)
    if crcs and got != crcs[name]:
        raise ValueError(f"checksum mismatch in tensor '{name}': expected crc32 "
                         f"{crcs[name]:08x}, found {got:08x} (the file is corrupt)")


def read_verified(path):
    """read_raw, and every tensor's checksum checked when the file has them
    (without numpy); raises ValueError('PATH: problem')."""
    header, data = read_raw(path)
    try:
        meta = header.get("__metadata__", {})
        names = [k for k in header if k != "__metadata__"]
        crcs = checksums(meta if isinstance(meta, dict) else {}, names)
        for name in crcs:
            offs = header[name].get("data_offsets") if isinstance(header[name], dict) else None
            if not (_int_list(offs) and len(offs) == 2 and offs[0] <= offs[1] <= len(data)):
                raise ValueError(f"tensor '{name}': bad data_offsets")
            _check_tensor_crc(name, data[offs[0]:offs[1]], crcs)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return header, data


def pack(header, data, crcs="new"):
    """The file's bytes for a header (as read_raw gives it; edited or not) and
    a data section. crcs="new": the crc32 entries of __metadata__ written
    anew after its other keys, tensor CRCs over each entry's data_offsets
    (00000000 where they are not two integers), the header's last, so a
    qkscope checkpoint comes back byte for byte; "none": left out; "keep": the
    tensors' entries as they are in the header (edited or not) and the
    header's CRC recomputed where its entry is, if it has a well-formed one."""
    header = dict(header)
    meta = header.get("__metadata__")
    if isinstance(meta, dict) and crcs != "keep":
        meta = {k: v for k, v in meta.items() if not k.startswith(CRC_PREFIX)}
        if crcs == "new":
            meta[CRC_HEADER] = "00000000"
            for name, e in header.items():
                if name == "__metadata__":
                    continue
                offs = e.get("data_offsets") if isinstance(e, dict) else None
                ok = _int_list(offs) and len(offs) == 2
                meta[CRC_PREFIX + name] = f"{zlib.crc32(data[offs[0]:offs[1]]) if ok else 0:08x}"
        header["__metadata__"] = meta
    # cJSON's unformatted output: no spaces, UTF-8 as is, \uXXXX lowercase
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    found = list(_CRC_HEADER_ENTRY.finditer(text)) if crcs != "none" else []
    if len(found) == 1 and _CRC_HEX.fullmatch(found[0].group(1).decode("latin-1")):
        at = found[0].start(1)
        text = text[:at] + f"{_header_crc(text, at):08x}".encode() + text[at + 8:]
    return struct.pack("<Q", len(text)) + text + bytes(data)


def _load(path):
    if np is None:
        raise ValueError("reading tensors needs numpy (apt-get install python3-numpy)")
    header, raw_data = _read_raw(path)
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("__metadata__ is not an object of strings")
    crcs = checksums(meta, header)

    data = memoryview(raw_data)
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
        _check_tensor_crc(name, data[begin:end], crcs)
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
    verified = any(k.startswith(CRC_PREFIX) for k in meta)
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
        "checksums": "verified" if verified else "unverified",
        "tensors": [dict(name=n, shape=list(a.shape), dtype="F32", **_stats(a))
                    for n, a in tensors.items()],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("--tensors", action="store_true", help="one row per tensor")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--write", metavar="OUT", help="write the checkpoint back to OUT")
    ap.add_argument("--without-checksums", action="store_true",
                    help="with --write: leave the crc32 entries out")
    args = ap.parse_args()
    if args.without_checksums and not args.write:
        ap.error("--without-checksums goes with --write OUT")
    try:
        if args.write:
            # a corrupt file is refused, not given fresh checksums
            header, data = read_verified(args.ckpt)
            with open(args.write, "wb") as f:
                f.write(pack(header, data, "none" if args.without_checksums else "new"))
            return 0
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
    print(f"checksums   {s['checksums']}")
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
