#!/usr/bin/env python3
"""Summarises scripts/experiments' runs (standard library only): a markdown
table of final losses and Q/K metrics with mean +- spread (sample std) across
seeds, and SVG line charts of the all-heads swap delta and the mean symmetry
over training for each variant.

usage: experiments_summary.py OUT_DIR [--seeds "1 2 3"]
"""
import argparse
import csv
import math
import os
import statistics
import sys

VARIANTS = [("untied", "untied W_Q, W_K"), ("tied", "tied (W_K = W_Q)"),
            ("symmetric", "symmetric init, then untied")]
COLOURS = {"untied": "#1f77b4", "tied": "#d62728", "symmetric": "#2ca02c"}


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def num(x):
    return float(x) if x not in ("", None) else math.nan


def run_stats(run_dir):
    """Per eval step: val loss, mean symmetry, mean |directionality|,
    mean overlap, all-heads swap delta, mean per-head swap delta, entropy,
    previous-token score."""
    evals = {int(r["step"]): num(r["val_loss"]) for r in read_csv(os.path.join(run_dir, "eval.csv"))}
    by_step = {}
    for r in read_csv(os.path.join(run_dir, "qk_eval.csv")):
        by_step.setdefault(int(r["step"]), []).append(r)
    out = {}
    for step, rows in sorted(by_step.items()):
        heads = [r for r in rows if int(r["layer"]) >= 0]
        allrow = [r for r in rows if int(r["layer"]) < 0][0]
        mean = lambda k: statistics.fmean(num(r[k]) for r in heads)
        out[step] = dict(val_loss=evals.get(step, math.nan), symmetry=mean("symmetry"),
                         directionality=mean("directionality"), overlap=mean("overlap_mean"),
                         swap_head=mean("swap_delta"), swap_all=num(allrow["swap_delta"]),
                         entropy=mean("entropy"), prev_token=mean("prev_token"))
    return out


def fmt(values, digits=3):
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.fmean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def svg_chart(path, title, series, ylabel):
    """series: name -> list of (x, y) lists (one per seed)."""
    W, H, L, R, T, B = 640, 360, 70, 150, 40, 50
    xs = [x for runs in series.values() for run in runs for x, _ in run]
    ys = [y for runs in series.values() for run in runs for _, y in run if not math.isnan(y)]
    if not xs or not ys:
        return
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(ys + [0.0]), max(ys + [0.0])
    if y1 - y0 < 1e-9:
        y1 = y0 + 1
    sx = lambda x: L + (x - x0) / (x1 - x0 or 1) * (W - L - R)
    sy = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
             f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
             f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
             f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">step</text>',
             f'<text x="18" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 18 {(T + H - B) / 2})">{ylabel}</text>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        xv = x0 + (x1 - x0) * i / 4
        parts.append(f'<text x="{L - 6}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        parts.append(f'<line x1="{L}" y1="{sy(yv):.1f}" x2="{W - R}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{sx(xv):.1f}" y="{H - B + 16}" text-anchor="middle">{xv:.0f}</text>')
    if y0 < 0 < y1:
        parts.append(f'<line x1="{L}" y1="{sy(0):.1f}" x2="{W - R}" y2="{sy(0):.1f}" stroke="#999" stroke-dasharray="4 3"/>')
    for k, (name, runs) in enumerate(series.items()):
        colour = COLOURS.get(name, "black")
        for run in runs:
            pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run if not math.isnan(y))
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
        parts.append(f'<line x1="{W - R + 12}" y1="{T + 14 + 18 * k}" x2="{W - R + 32}" y2="{T + 14 + 18 * k}" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{W - R + 38}" y="{T + 18 + 18 * k}">{name}</text>')
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seeds", default="1 2 3")
    args = ap.parse_args()
    seeds = args.seeds.split()
    stats = {v: [run_stats(os.path.join(args.out, f"{v}_s{s}")) for s in seeds] for v, _ in VARIANTS}
    keys = [("val_loss", "final val loss"), ("symmetry", "mean symmetry s"),
            ("directionality", "mean directionality d"), ("overlap", "mean Q/K subspace overlap"),
            ("swap_head", "mean per-head swap delta"), ("swap_all", "all-heads swap delta"),
            ("entropy", "mean attention entropy"), ("prev_token", "mean previous-token score")]
    lines = [f"Runs: {len(seeds)} seeds ({', '.join(seeds)}) per variant; mean ± sample std across seeds, "
             "at the last eval.", "",
             "| quantity | " + " | ".join(label for _, label in VARIANTS) + " |",
             "|---|" + "---|" * len(VARIANTS)]
    for key, label in keys:
        cells = []
        for v, _ in VARIANTS:
            cells.append(fmt([runs[max(runs)][key] for runs in stats[v]], 4 if key.startswith(("val", "swap")) else 3))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "All-heads swap delta over training (mean over seeds):", "",
              "| step | " + " | ".join(v for v, _ in VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    steps = sorted(stats["untied"][0])
    for st in steps:
        cells = [fmt([runs[st]["swap_all"] for runs in stats[v] if st in runs], 4) for v, _ in VARIANTS]
        lines.append(f"| {st} | " + " | ".join(cells) + " |")
    lines += ["", "Mean symmetry s over training (mean over seeds):", "",
              "| step | " + " | ".join(v for v, _ in VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for st in steps:
        cells = [fmt([runs[st]["symmetry"] for runs in stats[v] if st in runs], 3) for v, _ in VARIANTS]
        lines.append(f"| {st} | " + " | ".join(cells) + " |")
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    for key, title, ylabel, fname in [("swap_all", "val loss change with W_Q and W_K swapped in every head",
                                       "swap delta (nats)", "swap_delta.svg"),
                                      ("symmetry", "mean symmetry s = Tr(M^2)/|M|^2 over heads", "s",
                                       "symmetry.svg")]:
        series = {v: [[(st, runs[st][key]) for st in sorted(runs)] for runs in stats[v]] for v, _ in VARIANTS}
        svg_chart(os.path.join(args.out, fname), title, series, ylabel)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
