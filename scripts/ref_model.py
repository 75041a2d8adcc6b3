#!/usr/bin/env python3
"""Reference evaluation of a qkscope checkpoint in float64 numpy.

    scripts/ref_model.py CKPT --data FILE [--json]
    scripts/ref_model.py CKPT --probe-text TEXT [--json]
    scripts/ref_model.py --self-check

An independent implementation of docs/model.md's "The model": GPT-2 style,
pre-LayerNorm blocks (eps 1e-5, weight and bias), causal softmax attention
with scale 1/sqrt(d_head), GELU (tanh form), LM head tied to wte unless
lm_head.weight is stored; weights are [out, in] (y = x W^T + b), head h uses
rows h*d_head .. (h+1)*d_head-1; with qk = tied the key path uses the query
weight and bias.

--data: the mean next-character cross-entropy over every non-overlapping
window of block_size + 1 characters of FILE: window k covers characters
k*T .. k*T+T (T inputs, T targets) while k*T+T < len(FILE), T = block_size.
Prints `{"loss": L, "tokens": N, "windows": W}` with --json.

--probe-text: what `qkscope probe` computes, from a hand-written backward
pass: TEXT is cut to n = min(len, block_size + 1) characters, inputs are
text[0..n-2] and targets text[1..n-1] (T = n-1); one forward and backward of
the mean cross-entropy. Per (layer, head): every causal attention weight
(query t, key j <= t) and gq/gk/gv = Frobenius norms of the head's rows of
dL/dW_Q, dL/dW_K, dL/dW_V; with qk = tied, gq is the gradient through the
query path and gk through the key path of the one shared matrix. --json
prints {"loss", "T", "attn": [[layer, head, query, key, weight], ...],
"grads": [[layer, head, gq, gk, gv], ...]}.

--self-check: checks the backward pass against central finite differences on
small random models (qk untied and tied, with and without biases, tied and
untied LM head), and tied qk's query-/key-path split against the W_Q / W_K
gradients of an untied model holding the same values; exits 1 on a mismatch.
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
GELU_C = np.sqrt(2 / np.pi)


class Model:
    def __init__(self, tensors, cfg):
        m = cfg["model"]
        self.L, self.NH, self.C = int(m["n_layer"]), int(m["n_head"]), int(m["n_embd"])
        self.T = int(m["block_size"])
        self.qk_tied = m["qk"] == "tied"
        if m.get("smear", "none") != "none":
            raise ValueError(f"model.smear = {m['smear']}: smeared keys or queries are not in "
                             "this reference")
        self.t = {k: v.astype(np.float64) for k, v in tensors.items()
                  if not k.startswith("optim.")}
        # a list: attention() appends each layer's weights [B, NH, T, T] to it
        self.keep = None

    def w(self, name):
        return self.t[name]

    def b(self, name, n):
        """A bias, zero when the model has none."""
        return self.t.get(name, np.zeros(n))

    def linear(self, x, prefix, n_out):
        return x @ self.w(prefix + ".weight").T + self.b(prefix + ".bias", n_out)

    def k_prefix(self, blk):
        return blk + ("attn.q" if self.qk_tied else "attn.k")

    @staticmethod
    def layernorm(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + LN_EPS) * w + b

    @staticmethod
    def gelu(x):
        return 0.5 * x * (1 + np.tanh(GELU_C * (x + 0.044715 * x ** 3)))

    def attention(self, h, blk):
        B, T, C = h.shape
        hd = C // self.NH
        q = self.linear(h, blk + "attn.q", C)
        k = self.linear(h, self.k_prefix(blk), C)
        v = self.linear(h, blk + "attn.v", C)
        heads = lambda a: a.reshape(B, T, self.NH, hd).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = heads(q), heads(k), heads(v)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
        s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = s / s.sum(-1, keepdims=True)
        if self.keep is not None:
            self.keep.append(a)
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

    def loss(self, idx, targets):
        """Mean cross-entropy of one sequence (the forward above, no caches)."""
        z = self.logits(np.asarray(idx)[None])[0]
        return float(np.mean(_logsumexp(z) - z[np.arange(len(targets)), targets]))

    # ---- one sequence, forward with caches and hand-written backward ----

    def forward_backward(self, idx, targets):
        """Loss, attention weights and gradients of one sequence.

        idx, targets: int arrays [T]. Returns (loss, att, grads): att[l] is
        [NH, T, T] (zeros above the diagonal); grads maps every parameter name
        to dL/dparam, and with qk = tied also "blocks.{l}.attn.q.weight@query"
        / "@key" (and ".bias@query" / "@key" with biases): the two paths'
        parts of the shared tensor's gradient, whose sum is its gradient.
        """
        idx, targets = np.asarray(idx), np.asarray(targets)
        T, C, NH = len(idx), self.C, self.NH
        hd = C // NH
        scale = 1 / np.sqrt(hd)
        causal = np.tril(np.ones((T, T), dtype=bool))

        # forward, keeping what the backward needs
        x = self.w("wte.weight")[idx] + self.w("wpe.weight")[:T]
        caches, att = [], []
        for l in range(self.L):
            blk = f"blocks.{l}."
            c = {}
            h1, c["ln1"] = _ln_fwd(x, self.w(blk + "ln1.weight"), self.w(blk + "ln1.bias"))
            c["h1"] = h1
            split = lambda a: a.reshape(T, NH, hd).transpose(1, 0, 2)  # noqa: E731  [NH,T,hd]
            q = split(self.linear(h1, blk + "attn.q", C))
            k = split(self.linear(h1, self.k_prefix(blk), C))
            v = split(self.linear(h1, blk + "attn.v", C))
            s = np.where(causal, q @ k.transpose(0, 2, 1) * scale, -np.inf)
            e = np.exp(s - s.max(-1, keepdims=True))
            a = e / e.sum(-1, keepdims=True)  # exactly 0 above the diagonal
            y = (a @ v).transpose(1, 0, 2).reshape(T, C)
            c.update(q=q, k=k, v=v, a=a, y=y)
            att.append(a)
            x = x + self.linear(y, blk + "attn.o", C)
            h2, c["ln2"] = _ln_fwd(x, self.w(blk + "ln2.weight"), self.w(blk + "ln2.bias"))
            u = self.linear(h2, blk + "mlp.fc", 4 * C)
            g = self.gelu(u)
            c.update(h2=h2, u=u, g=g)
            x = x + self.linear(g, blk + "mlp.proj", C)
            caches.append(c)
        hf, lnf = _ln_fwd(x, self.w("ln_f.weight"), self.w("ln_f.bias"))
        tied_head = "lm_head.weight" not in self.t
        head = self.w("wte.weight") if tied_head else self.w("lm_head.weight")
        z = hf @ head.T
        lse = _logsumexp(z)
        loss = float(np.mean(lse - z[np.arange(T), targets]))

        # backward
        G = {name: np.zeros_like(val) for name, val in self.t.items()}
        # cross-entropy: d mean_t(lse_t - z_t,y_t) / dz = (softmax(z) - onehot) / T
        dz = np.exp(z - lse[:, None])
        dz[np.arange(T), targets] -= 1
        dz /= T
        G["wte.weight" if tied_head else "lm_head.weight"] += dz.T @ hf
        dx = _ln_bwd(dz @ head, lnf, self.w("ln_f.weight"), G, "ln_f")
        for l in reversed(range(self.L)):
            blk, c = f"blocks.{l}.", caches[l]
            # MLP: x += proj(gelu(fc(LN2(x))))
            dg = self._linear_bwd(dx, c["g"], blk + "mlp.proj", G)
            du = dg * _gelu_grad(c["u"])
            dh2 = self._linear_bwd(du, c["h2"], blk + "mlp.fc", G)
            dx = dx + _ln_bwd(dh2, c["ln2"], self.w(blk + "ln2.weight"), G, blk + "ln2")
            # attention: x += o(attn(LN1(x)))
            dy = self._linear_bwd(dx, c["y"], blk + "attn.o", G)
            dy = dy.reshape(T, NH, hd).transpose(1, 0, 2)
            q, k, v, a = c["q"], c["k"], c["v"], c["a"]
            dv = a.transpose(0, 2, 1) @ dy
            da = dy @ v.transpose(0, 2, 1)
            # softmax rows: ds = a * (da - sum_j a da); masked entries have a = 0
            ds = a * (da - (a * da).sum(-1, keepdims=True))
            dq = ds @ k * scale
            dk = ds.transpose(0, 2, 1) @ q * scale
            merge = lambda t: t.transpose(1, 0, 2).reshape(T, C)  # noqa: E731
            dq, dk, dv = merge(dq), merge(dk), merge(dv)
            h1 = c["h1"]
            if self.qk_tied:
                name = blk + "attn.q"
                dh1 = self._linear_bwd(dq, h1, name, G, suffix="@query")
                dh1 = dh1 + self._linear_bwd(dk, h1, name, G, suffix="@key")
                for p in ("weight", "bias"):
                    if f"{name}.{p}" in self.t:
                        G[f"{name}.{p}"] = G[f"{name}.{p}@query"] + G[f"{name}.{p}@key"]
            else:
                dh1 = self._linear_bwd(dq, h1, blk + "attn.q", G)
                dh1 = dh1 + self._linear_bwd(dk, h1, blk + "attn.k", G)
            dh1 = dh1 + self._linear_bwd(dv, h1, blk + "attn.v", G)
            dx = dx + _ln_bwd(dh1, c["ln1"], self.w(blk + "ln1.weight"), G, blk + "ln1")
        np.add.at(G["wte.weight"], idx, dx)
        G["wpe.weight"][:T] += dx
        return loss, att, G

    def _linear_bwd(self, dout, inp, prefix, G, suffix=""):
        """y = inp W^T + b: accumulates dW = dout^T inp, db = sum_t dout; returns dinp."""
        wname, bname = prefix + ".weight", prefix + ".bias"
        G[wname + suffix] = G.get(wname + suffix, 0) + dout.T @ inp
        if bname in self.t:
            G[bname + suffix] = G.get(bname + suffix, 0) + dout.sum(0)
        return dout @ self.w(wname)


def _logsumexp(z):
    m = z.max(-1)
    return m + np.log(np.exp(z - m[..., None]).sum(-1))


def _ln_fwd(x, w, b):
    mu = x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + LN_EPS)
    xhat = (x - mu) * rstd
    return xhat * w + b, (xhat, rstd)


def _ln_bwd(dout, cache, w, G, prefix):
    """LayerNorm backward: accumulates the weight and bias gradients, returns dx."""
    xhat, rstd = cache
    G[prefix + ".weight"] += (dout * xhat).sum(0)
    G[prefix + ".bias"] += dout.sum(0)
    dxhat = dout * w
    return rstd * (dxhat - dxhat.mean(-1, keepdims=True)
                   - xhat * (dxhat * xhat).mean(-1, keepdims=True))


def _gelu_grad(u):
    th = np.tanh(GELU_C * (u + 0.044715 * u ** 3))
    return 0.5 * (1 + th) + 0.5 * u * (1 - th ** 2) * GELU_C * (1 + 3 * 0.044715 * u ** 2)


def probe(model, tokens):
    """The probe's numbers for one sequence: (loss, T, attn rows, grads rows)."""
    idx, targets = tokens[:-1], tokens[1:]
    T, NH = len(idx), model.NH
    hd = model.C // NH
    loss, att, G = model.forward_backward(idx, targets)
    rows, grads = [], []
    for l in range(model.L):
        blk = f"blocks.{l}."
        if model.qk_tied:
            gq, gk = G[blk + "attn.q.weight@query"], G[blk + "attn.q.weight@key"]
        else:
            gq, gk = G[blk + "attn.q.weight"], G[blk + "attn.k.weight"]
        gv = G[blk + "attn.v.weight"]
        for h in range(NH):
            r = slice(h * hd, (h + 1) * hd)
            grads.append([l, h] + [float(np.linalg.norm(g[r])) for g in (gq, gk, gv)])
            for t in range(T):
                for j in range(t + 1):
                    rows.append([l, h, t, j, float(att[l][h, t, j])])
    return loss, T, rows, grads


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


# ---- --self-check: the backward against finite differences ----

def _random_model(rng, qk, bias, tie, L=2, NH=2, C=8, T=6, V=7):
    """A small model with O(1) random values everywhere (LayerNorm included)."""
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C)}
    for l in range(L):
        blk = f"blocks.{l}."
        for n in ("ln1", "ln2"):
            shapes[blk + n + ".weight"] = shapes[blk + n + ".bias"] = (C,)
        lin = {"attn.q": (C, C), "attn.k": (C, C), "attn.v": (C, C), "attn.o": (C, C),
               "mlp.fc": (4 * C, C), "mlp.proj": (C, 4 * C)}
        for n, s in lin.items():
            if n == "attn.k" and qk == "tied":
                continue
            shapes[blk + n + ".weight"] = s
            if bias:
                shapes[blk + n + ".bias"] = (s[0],)
    shapes["ln_f.weight"] = shapes["ln_f.bias"] = (C,)
    if not tie:
        shapes["lm_head.weight"] = (V, C)
    t = {n: rng.normal(0, 0.5, s) for n, s in shapes.items()}
    for n in t:
        if n.endswith(("ln1.weight", "ln2.weight", "ln_f.weight")):
            t[n] += 1
    cfg = {"model": {"n_layer": L, "n_head": NH, "n_embd": C, "block_size": T, "qk": qk}}
    return Model(t, cfg)


def self_check(verbose=True):
    rng = np.random.default_rng(7)
    eps, worst, ok = 1e-5, 0.0, True
    for qk in ("untied", "tied"):
        for bias in (False, True):
            for tie in (True, False):
                m = _random_model(rng, qk, bias, tie)
                V = m.t["wte.weight"].shape[0]
                idx = rng.integers(0, V, m.T)
                idx[1] = idx[3]  # a repeated token: wte rows get two contributions
                targets = rng.integers(0, V, m.T)
                loss, att, G = m.forward_backward(idx, targets)
                assert abs(loss - m.loss(idx, targets)) <= 1e-12 * abs(loss)
                for a in att:  # causal rows summing to one
                    assert np.allclose(a.sum(-1), 1) and not np.triu(a, 1).any()
                for name, p in m.t.items():
                    entries = list(np.ndindex(p.shape))  # a sample, larger for attention
                    n = min(len(entries), 24 if ".attn." in name else 6)
                    entries = [entries[j] for j in rng.choice(len(entries), n, replace=False)]
                    for i in entries:
                        old = p[i]
                        p[i] = old + eps
                        lp = m.loss(idx, targets)
                        p[i] = old - eps
                        lm = m.loss(idx, targets)
                        p[i] = old
                        fd, g = (lp - lm) / (2 * eps), G[name][i]
                        err, tol = abs(fd - g), 1e-6 * max(abs(fd), abs(g)) + 1e-9
                        worst = max(worst, err / tol)
                        if err > tol:
                            ok = False
                            print(f"self-check: qk={qk} bias={bias} tie={tie} {name}{list(i)}: "
                                  f"backward {g:.10g}, finite difference {fd:.10g}")
                if qk == "tied":  # the path split against an untied copy, k = q
                    t2 = dict(m.t)
                    for l in range(m.L):
                        blk = f"blocks.{l}.attn."
                        t2[blk + "k.weight"] = t2[blk + "q.weight"].copy()
                        if bias:
                            t2[blk + "k.bias"] = t2[blk + "q.bias"].copy()
                    cfg = {"model": {"n_layer": m.L, "n_head": m.NH, "n_embd": m.C,
                                     "block_size": m.T, "qk": "untied"}}
                    _, _, G2 = Model(t2, cfg).forward_backward(idx, targets)
                    for l in range(m.L):
                        blk = f"blocks.{l}.attn."
                        for p in ("weight", "bias") if bias else ("weight",):
                            for path, other in (("query", "q"), ("key", "k")):
                                if not np.allclose(G[f"{blk}q.{p}@{path}"],
                                                   G2[f"{blk}{other}.{p}"],
                                                   rtol=1e-12, atol=1e-15):
                                    ok = False
                                    print(f"self-check: tied {blk}q.{p} {path} path differs "
                                          f"from the untied {other}.{p} gradient")
                        if np.allclose(G[f"{blk}q.weight@query"], G[f"{blk}q.weight@key"]):
                            ok = False
                            print(f"self-check: tied {blk}q.weight query and key paths are "
                                  f"equal; the check would not see them swapped")
    if verbose:
        print(f"self-check {'ok' if ok else 'FAILED'}: backward vs central finite differences, "
              f"worst |difference| / (1e-6 max(|fd|, |grad|) + 1e-9) = {worst:.2g}")
    return ok


def tokenize(text, vocab, what):
    index = {c: i for i, c in enumerate(vocab)}
    tokens = []
    for pos, ch in enumerate(text):
        if ch not in index:
            raise ValueError(f"{what}: character U+{ord(ch):04X} at character {pos} "
                             f"is not in the checkpoint's vocabulary")
        tokens.append(index[ch])
    return tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt", nargs="?")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--data", help="UTF-8 text to evaluate on")
    mode.add_argument("--probe-text", metavar="TEXT",
                      help="one forward and backward on TEXT (cut to block_size+1 characters)")
    mode.add_argument("--self-check", action="store_true",
                      help="check the backward pass against finite differences")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.self_check:
        if args.ckpt:
            ap.error("--self-check takes no checkpoint")
        return 0 if self_check() else 1
    if not args.ckpt:
        ap.error("a checkpoint is required with --data and --probe-text")
    try:
        tensors, meta = ckpt.load(args.ckpt)
        cfg = ckpt.config_from_metadata(meta)
        vocab = ckpt.vocab_from_metadata(meta)
        T = int(cfg["model"]["block_size"])
        model = Model(tensors, cfg)
        if args.probe_text is not None:
            text = args.probe_text[:T + 1]
            if len(text) < 2:
                raise ValueError(f"--probe-text: {len(text)} characters; at least 2 are needed")
            loss, n, attn, grads = probe(model, tokenize(text, vocab, "--probe-text"))
            if args.json:
                print(json.dumps({"loss": loss, "T": n, "attn": attn, "grads": grads}))
            else:
                print(f"loss {loss:.6f} over {n} tokens")
                print(f"{'layer':>5} {'head':>4} {'gq_norm':>12} {'gk_norm':>12} {'gv_norm':>12}")
                for l, h, gq, gk, gv in grads:
                    print(f"{l:5d} {h:4d} {gq:12.6g} {gk:12.6g} {gv:12.6g}")
            return 0
        # newline="" keeps \r\n as two characters, as the C corpus reader does
        with open(args.data, encoding="utf-8", newline="") as f:
            text = f.read()
        tokens = tokenize(text, vocab, args.data)
        if len(tokens) < T + 1:
            raise ValueError(f"{args.data}: {len(tokens)} characters, fewer than block_size + 1 "
                             f"= {T + 1}")
        loss, n_tokens, windows = evaluate(model, tokens)
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
