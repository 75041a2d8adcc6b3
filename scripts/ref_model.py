#!/usr/bin/env python3
"""Reference evaluation of a qkscope checkpoint in float64 numpy.

    scripts/ref_model.py CKPT --data FILE [--json]

An independent implementation of README's "The model": GPT-2 style,
pre-LayerNorm blocks (eps 1e-5, weight and bias), causal softmax attention
with scale 1/sqrt(d_head), GELU (tanh form), LM head tied to wte unless
lm_head.weight is stored; weights are [out, in] (y = x W^T + b), head h uses
rows h*d_head .. (h+1)*d_head-1; with qk = tied the key path uses the query
weight and bias.

Evaluates the mean next-character cross-entropy over every non-overlapping
window of block_size + 1 characters of FILE: window k covers characters
k*T .. k*T+T (T inputs, T targets) while k*T+T < len(FILE), T = block_size.
Prints `{"loss": L, "tokens": N, "windows": W}` with --json.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt  # noqa: E402  (the independent safetensors reader next to this file)

LN_EPS = 1e-5
BATCH = 32  # windows per forward, to bound memory


class Model:
    def __init__(self, tensors, cfg):
        m = cfg["model"]
        self.L, self.NH, self.C = int(m["n_layer"]), int(m["n_head"]), int(m["n_embd"])
        self.T = int(m["block_size"])
        self.qk_tied = m["qk"] == "tied"
        self.t = {k: v.astype(np.float64) for k, v in tensors.items()
                  if not k.startswith("optim.")}

    def w(self, name):
        return self.t[name]

    def b(self, name, n):
        """A bias, zero when the model has none."""
        return self.t.get(name, np.zeros(n))

    def linear(self, x, prefix, n_out):
        return x @ self.w(prefix + ".weight").T + self.b(prefix + ".bias", n_out)

    @staticmethod
    def layernorm(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + LN_EPS) * w + b

    @staticmethod
    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

    def attention(self, h, blk):
        B, T, C = h.shape
        hd = C // self.NH
        q = self.linear(h, blk + "attn.q", C)
        k = self.linear(h, blk + ("attn.q" if self.qk_tied else "attn.k"), C)
        v = self.linear(h, blk + "attn.v", C)
        heads = lambda a: a.reshape(B, T, self.NH, hd).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = heads(q), heads(k), heads(v)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
        s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = s / s.sum(-1, keepdims=True)
        y = (a @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        return self.linear(y, blk + "attn.o", C)

    def logits(self, idx):
        T, C = idx.shape[1], self.C
        x = self.w("wte.weight")[idx] + self.w("wpe.weight")[:T]
        for l in range(self.L):
            blk = f"blocks.{l}."
            x = x + self.attention(
                self.layernorm(x, self.w(blk + "ln1.weight"), self.w(blk + "ln1.bias")), blk)
            h = self.layernorm(x, self.w(blk + "ln2.weight"), self.w(blk + "ln2.bias"))
            x = x + self.linear(self.gelu(self.linear(h, blk + "mlp.fc", 4 * C)),
                                blk + "mlp.proj", C)
        x = self.layernorm(x, self.w("ln_f.weight"), self.w("ln_f.bias"))
        head = self.t.get("lm_head.weight", self.w("wte.weight"))
        return x @ head.T


def evaluate(model, tokens):
    """Mean cross-entropy over the non-overlapping windows; (loss, tokens, windows)."""
    T = model.T
    W = (len(tokens) - 1) // T if len(tokens) else 0
    ids = np.asarray(tokens[:W * T + 1], dtype=np.int64)
    total = 0.0
    for start in range(0, W, BATCH):
        ks = np.arange(start, min(W, start + BATCH))
        pos = ks[:, None] * T + np.arange(T)[None, :]
        x, y = ids[pos], ids[pos + 1]
        z = model.logits(x)
        z = z - z.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        total -= np.take_along_axis(logp, y[..., None], -1).sum()
    return total / (W * T), W * T, W


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("--data", required=True, help="UTF-8 text to evaluate on")
    ap.add_argument("--json", action="store_true", help='print {"loss", "tokens", "windows"}')
    args = ap.parse_args()
    try:
        tensors, meta = ckpt.load(args.ckpt)
        cfg = ckpt.config_from_metadata(meta)
        vocab = ckpt.vocab_from_metadata(meta)
        # newline="" keeps \r\n as two characters, as the C corpus reader does
        with open(args.data, encoding="utf-8", newline="") as f:
            text = f.read()
        index = {c: i for i, c in enumerate(vocab)}
        tokens = []
        for pos, ch in enumerate(text):
            if ch not in index:
                raise ValueError(f"{args.data}: character U+{ord(ch):04X} at character {pos} "
                                 f"is not in the checkpoint's vocabulary")
            tokens.append(index[ch])
        T = int(cfg["model"]["block_size"])
        if len(tokens) < T + 1:
            raise ValueError(f"{args.data}: {len(tokens)} characters, fewer than block_size + 1 "
                             f"= {T + 1}")
        loss, n_tokens, windows = evaluate(Model(tensors, cfg), tokens)
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        print(f"ref_model.py: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"loss": loss, "tokens": n_tokens, "windows": windows}))
    else:
        print(f"loss {loss:.6f} over {n_tokens} tokens in {windows} windows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
