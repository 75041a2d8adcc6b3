#!/usr/bin/env python3
"""The kv and repeat tasks on the PyTorch reference model, to check a
qkscope result against an independent implementation.

    python3 scripts/task_torch.py [--task kv|repeat] [--cross] [--steps N]
                                  [--layers L] [--smear none|key|query]
                                  [--init gpt2|torch] [--qk untied|tied]
                                  [--batch B] [--schedule constant|cosine]
                                  [--seed S]

The model is ../shared/peers/torch_peer.py's CharGPT (2 layers, 4 heads, 64
channels by default, block 32, tied embeddings), trained with the masked loss
(PyTorch's ignore_index on every target but the answers), AdamW lr 3e-3
after 100 warm-up steps, constant (or --schedule cosine: to 3e-4), betas
0.9/0.99, weight decay 0.1 on matrices, gradient clip 1, batch 64 (repeat:
128), PyTorch's initialisation: configs/kv.ini's and configs/repeat.ini's
recipe. The records follow docs/tasks.md with Python's own generator (not
qkscope's streams). --smear adds Olsson et al.'s smeared keys (or queries),
one gate per head starting at 0, as model.smear does; --qk tied computes the
keys with W_Q, as model.qk=tied; --init is model.init: gpt2 (the peer's
GPT-2 init) or torch (PyTorch's module defaults). Prints the step, the
validation loss and accuracy on 256 fixed records every --eval-every steps,
and stops once the accuracy reached --stop-at at two evals in a row (as
train.stop_at_acc; 0 = never). Needs Debian's python3-torch; see
../shared/README.md for OpenBLAS.
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


def patch_attention(peer, side, tied):
    """Replaces the peer's attention by one with smeared keys or queries
    (side: "key" or "query", or "none"), and with keys through W_Q (tied)."""
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
        if tied:
            k = q
        if side == "key":
            k = mix(k, self.smear)
        elif side == "query":
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


def kv_record(rng, cross=False):
    n = rng.randint(4, 6)
    keys = rng.sample("abcdefghijkl", n)
    vals = [rng.randrange(10) for _ in keys]
    s = "".join((k.upper() if cross else k) + str(v) for k, v in zip(keys, vals)) + "|"
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


def batch(task, rng, n, stoi, cross):
    x = torch.full((n, T), stoi["."], dtype=torch.long)
    y = torch.full((n, T), IGNORE, dtype=torch.long)
    for b in range(n):
        s, scored = kv_record(rng, cross) if task == "kv" else repeat_record(rng)
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
    ap.add_argument("--cross", action="store_true", help="kv_cross: definitions in uppercase")
    ap.add_argument("--smear", choices=["none", "key", "query"], default="none")
    ap.add_argument("--init", choices=["gpt2", "torch"], default="torch")
    ap.add_argument("--qk", choices=["untied", "tied"], default="untied")
    ap.add_argument("--batch", type=int, default=0, help="default: 64 (kv), 128 (repeat)")
    ap.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--stop-at", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    bsz = args.batch or (64 if args.task == "kv" else 128)
    peer = load_peer()
    if args.smear != "none" or args.qk == "tied":
        patch_attention(peer, args.smear, args.qk == "tied")
    torch.manual_seed(args.seed)
    vocab = (["."] + [str(d) for d in range(10)] + [chr(97 + i) for i in range(26)] + ["|"]
             + [chr(65 + i) for i in range(26)])
    stoi = {ch: i for i, ch in enumerate(vocab)}
    vx, vy = batch(args.task, random.Random(12345), 256, stoi, args.cross)
    rng = random.Random(args.seed)
    model = peer.CharGPT(len(vocab), args.layers, 4, 64, T, bias=False, tied=True)
    if args.init == "torch":
        torch_init(model)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": rest, "weight_decay": 0.0}], lr=3e-3, betas=(0.9, 0.99))
    lr, warm = 3e-3, 100
    min_lr = lr if args.schedule == "constant" else 3e-4
    above = 0
    for it in range(args.steps + 1):
        if it % args.eval_every == 0 or it == args.steps:
            with torch.no_grad():
                logits, loss = model(vx, vy)
                m = vy != IGNORE
                acc = (logits.argmax(-1)[m] == vy[m]).float().mean().item()
            print(f"step {it} val loss {loss.item():.4f} val acc {acc:.4f}", flush=True)
            above = above + 1 if args.stop_at > 0 and acc >= args.stop_at else 0
            if above == 2:
                print(f"stopped at step {it}: val acc >= {args.stop_at} at two evals in a row")
                break
        if it == args.steps:
            break
        r = (it - warm) / max(1, args.steps - warm)
        cur = lr * (it + 1) / (warm + 1) if it < warm else \
            min_lr + 0.5 * (1 + math.cos(math.pi * min(1.0, r))) * (lr - min_lr)
        for g in opt.param_groups:
            g["lr"] = cur
        x, y = batch(args.task, rng, bsz, stoi, args.cross)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
