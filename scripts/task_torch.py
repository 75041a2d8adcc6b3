#!/usr/bin/env python3
"""The kv and repeat tasks on the PyTorch reference model, to check a
qkscope result against an independent implementation.

    python3 scripts/task_torch.py [--task kv|repeat] [--steps N] [--layers L]
                                  [--smear none|key|query] [--init gpt2|torch]
                                  [--seed S]

The model is ../shared/peers/torch_peer.py's CharGPT (2 layers, 4 heads, 64
channels by default, block 32, tied embeddings), trained with the masked loss
(PyTorch's ignore_index on every target but the answers), AdamW lr 3e-3 ->
3e-4 cosine with 100 warm-up steps, betas 0.9/0.99, weight decay 0.1 on
matrices, gradient clip 1, batch 32: configs/kv.ini's recipe. The records
follow docs/tasks.md with Python's own generator (not qkscope's streams).
--smear adds Olsson et al.'s smeared keys (or queries), one gate per head
starting at 0, as model.smear does. --init is model.init: gpt2 (the peer's
GPT-2 init) or torch (PyTorch's module defaults). Prints the step, the
validation loss and accuracy on 256 fixed records every 250 steps. Needs
Debian's python3-torch; see ../shared/README.md for OpenBLAS.
"""
import argparse
import importlib.util
import math
import os
import random
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

T = 32
IGNORE = -100


def load_peer():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "shared", "peers", "torch_peer.py")
    spec = importlib.util.spec_from_file_location("torch_peer", path)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    return peer


def smear_attention(peer, side):
    """Replaces the peer's attention by one with smeared keys or queries."""
    base_init = peer.SelfAttention.__init__

    def init(self, n_embd, n_head, block_size, bias):
        base_init(self, n_embd, n_head, block_size, bias)
        self.smear = nn.Parameter(torch.zeros(n_head))

    def mix(x, gate):
        s = torch.sigmoid(gate).view(1, -1, 1, 1)
        before = F.pad(x, (0, 0, 1, 0))[:, :, :-1]  # nothing before position 0
        return s * x + (1 - s) * before

    def forward(self, x):
        b, t, c = x.shape
        hs = c // self.n_head
        q, k, v = (z.view(b, t, self.n_head, hs).transpose(1, 2) for z in self.qkv(x).split(c, 2))
        if side == "key":
            k = mix(k, self.smear)
        else:
            q = mix(q, self.smear)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        scores = scores.masked_fill(~self.causal[:, :, :t, :t], float("-inf"))
        y = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.proj(y)

    peer.SelfAttention.__init__ = init
    peer.SelfAttention.forward = forward


def torch_init(model):
    """model.init = torch: undoes the peer's GPT-2 init with PyTorch's own
    defaults, nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on weights and
    biases, then nn.Embedding's N(0, 1): last, so that a tied head is wte.
    LayerNorm (1, 0) and the smear gates (0) are as the peer left them."""
    for kind in (nn.Linear, nn.Embedding):
        for m in model.modules():
            if isinstance(m, kind):
                m.reset_parameters()


def kv_record(rng):
    n = rng.randint(4, 6)
    keys = rng.sample("abcdefghijkl", n)
    vals = [rng.randrange(10) for _ in keys]
    s = "".join(k + str(v) for k, v in zip(keys, vals)) + "|"
    scored = []
    for _ in range(8):
        i = rng.randrange(n)
        s += keys[i]
        scored.append(len(s))
        s += str(vals[i])
    return s, scored


def repeat_record(rng):
    n = rng.randint(6, 14)
    text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    return text + "|" + text, list(range(n + 2, 2 * n + 1))


def batch(task, rng, n, stoi):
    x = torch.full((n, T), stoi["."], dtype=torch.long)
    y = torch.full((n, T), IGNORE, dtype=torch.long)
    for b in range(n):
        s, scored = (kv_record if task == "kv" else repeat_record)(rng)
        ids = [stoi[ch] for ch in s]
        x[b, :len(ids) - 1] = torch.tensor(ids[:-1])
        for j in scored:
            y[b, j - 1] = ids[j]
    return x, y


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["kv", "repeat"], default="kv")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--smear", choices=["none", "key", "query"], default="none")
    ap.add_argument("--init", choices=["gpt2", "torch"], default="gpt2")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    peer = load_peer()
    if args.smear != "none":
        smear_attention(peer, args.smear)
    torch.manual_seed(args.seed)
    vocab = ["."] + [str(d) for d in range(10)] + [chr(97 + i) for i in range(26)] + ["|"]
    stoi = {ch: i for i, ch in enumerate(vocab)}
    vx, vy = batch(args.task, random.Random(12345), 256, stoi)
    rng = random.Random(args.seed)
    model = peer.CharGPT(len(vocab), args.layers, 4, 64, T, bias=False, tied=True)
    if args.init == "torch":
        torch_init(model)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": rest, "weight_decay": 0.0}], lr=3e-3, betas=(0.9, 0.99))
    lr, min_lr, warm = 3e-3, 3e-4, 100
    for it in range(args.steps + 1):
        if it % 250 == 0 or it == args.steps:
            with torch.no_grad():
                logits, loss = model(vx, vy)
                m = vy != IGNORE
                acc = (logits.argmax(-1)[m] == vy[m]).float().mean().item()
            print(f"step {it} val loss {loss.item():.4f} val acc {acc:.4f}", flush=True)
        if it == args.steps:
            break
        r = (it - warm) / max(1, args.steps - warm)
        cur = lr * (it + 1) / (warm + 1) if it < warm else \
            min_lr + 0.5 * (1 + math.cos(math.pi * min(1.0, r))) * (lr - min_lr)
        for g in opt.param_groups:
            g["lr"] = cur
        x, y = batch(args.task, rng, 32, stoi)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
