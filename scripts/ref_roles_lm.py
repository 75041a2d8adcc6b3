#!/usr/bin/env python3
"""Reference of `qkscope roles` on a corpus checkpoint, in float64 numpy.

    scripts/ref_roles_lm.py CKPT SEQUENCES [--json]

SEQUENCES is what `qkscope roles CKPT --dump-sequences FILE` wrote: per set
(val, random) n sequences of 2S token ids, S ids followed by the same S.
With scripts/ref_model.py's forward (an independent implementation of the
model), per set and (layer, head): prev_attn, the mean attention from t on
t-1 over t = 1 .. 2S-1; induction_attn, from S+i on i+1, and
duplicate_attn, from S+i on i, over i = 1 .. S-1; sink_attn, from t on 0
over t = 1 .. 2S-1; and the mean cross-entropy on the first copy's targets
(tokens 1 .. S-1) and on the second's (tokens S+1 .. 2S-1), over the
sequences (docs/roles.md, "On a language model").

It first checks the sequences against docs/roles.md's construction, from
the checkpoint's corpus (data.path, read from the current directory):
validation sequence i is the S characters at n_train + floor(i (n_val - S)
/ n) (n_val = floor(length * val_fraction), the last characters), and
every sequence is its first half twice. Exit 1 when they differ.

--json prints {"segment": S, "sets": [{"name", "loss_first",
"loss_second", "heads": [{"layer", "head", "prev_attn", "induction_attn",
"duplicate_attn", "sink_attn"}, ...]}, ...]}.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt  # noqa: E402
import ref_model  # noqa: E402

BATCH = 16  # sequences per forward, to bound memory
FIGURES = ("prev_attn", "induction_attn", "duplicate_attn", "sink_attn")


def check_sequences(seqs, cfg, vocab):
    """Problems of the dumped sequences against the documented construction."""
    S, problems = seqs["segment"], []
    for name, rows in seqs["sets"].items():
        for i, row in enumerate(rows):
            if len(row) != 2 * S or row[:S] != row[S:]:
                problems.append(f"{name} sequence {i} is not {S} ids twice")
    with open(cfg["data"]["path"], encoding="utf-8", newline="") as f:
        tokens = ref_model.tokenize(f.read(), vocab, cfg["data"]["path"])
    n_val = int(len(tokens) * float(cfg["data"]["val_fraction"]))
    n_train, n = len(tokens) - n_val, len(seqs["sets"]["val"])
    for i, row in enumerate(seqs["sets"]["val"]):
        start = n_train + i * (n_val - S) // n
        if row[:S] != tokens[start:start + S]:
            problems.append(f"val sequence {i} is not the validation characters at {start}")
    return problems


def measure(model, rows, S):
    """The per-head figures [L, NH, 4] and the two copies' mean losses."""
    x = np.asarray(rows, dtype=np.int64)
    n, T = x.shape
    sums, loss = np.zeros((model.L, model.NH, len(FIGURES))), np.zeros(2)
    t, i = np.arange(1, T), np.arange(1, S)
    for start in range(0, n, BATCH):
        b = x[start:start + BATCH]
        model.keep = []
        z = model.logits(b)
        for l, a in enumerate(model.keep):  # a: [B, NH, T, T]
            sums[l, :, 0] += a[:, :, t, t - 1].sum((0, 2))
            sums[l, :, 1] += a[:, :, S + i, i + 1].sum((0, 2))
            sums[l, :, 2] += a[:, :, S + i, i].sum((0, 2))
            sums[l, :, 3] += a[:, :, t, 0].sum((0, 2))
        model.keep = None
        logp = z - ref_model._logsumexp(z)[..., None]
        rows_b = np.arange(len(b))[:, None]
        loss[0] -= logp[rows_b, i - 1, b[:, i]].sum()
        loss[1] -= logp[rows_b, S + i - 1, b[:, S + i]].sum()
    sums[:, :, [0, 3]] /= n * (T - 1)
    sums[:, :, [1, 2]] /= n * (S - 1)
    return sums, loss / (n * (S - 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("sequences", help="the file of qkscope roles --dump-sequences")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    try:
        tensors, meta = ckpt.load(args.ckpt)
        cfg = ckpt.config_from_metadata(meta)
        vocab = ckpt.vocab_from_metadata(meta)
        model = ref_model.Model(tensors, cfg)
        with open(args.sequences, encoding="utf-8") as f:
            seqs = json.load(f)
        problems = check_sequences(seqs, cfg, vocab)
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        print(f"ref_roles_lm.py: {e}", file=sys.stderr)
        return 2
    if problems:
        print("ref_roles_lm.py: " + "; ".join(problems[:5]), file=sys.stderr)
        return 1
    S, out = seqs["segment"], {"segment": seqs["segment"], "sets": []}
    for name, rows in seqs["sets"].items():
        figures, (first, second) = measure(model, rows, S)
        heads = [dict(layer=l, head=h,
                      **{f: float(figures[l, h, k]) for k, f in enumerate(FIGURES)})
                 for l in range(model.L) for h in range(model.NH)]
        out["sets"].append({"name": name, "loss_first": float(first),
                            "loss_second": float(second), "heads": heads})
    if args.json:
        print(json.dumps(out))
        return 0
    for s in out["sets"]:
        print(f"set {s['name']}: loss on the first copy {s['loss_first']:.6f}, on the second "
              f"{s['loss_second']:.6f}")
        print("  L  H " + " ".join(f"{f:>14}" for f in FIGURES))
        for h in s["heads"]:
            print(f"{h['layer']:3d}{h['head']:3d} " + " ".join(f"{h[f]:14.6f}" for f in FIGURES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
