#!/usr/bin/env python3
"""Summarises scripts/task_experiments' runs (standard library only): per
variant, over seeds, the final val accuracy and loss, the first eval step at
which val_acc reaches 0.5 (the jump off the plateau) and 0.99 (solved), and
the wall time of the whole run, as a markdown table with each seed's values.

usage: task_summary.py OUT_DIR [--seeds "1 2 3"]
"""
import argparse
import csv
import json
import os
import re
import statistics

VARIANTS = [
    ("kv", "kv (configs/kv.ini: 2 layers, smear = key)"),
    ("kv_cross", "kv_cross (configs/kv_cross.ini)"),
    ("repeat", "repeat (configs/repeat.ini: 2 layers, no smear)"),
    ("kv_plain", "kv, smear = none, 3000 steps"),
    ("kv_tied", "kv, qk = tied"),
    ("kv_cross_tied", "kv_cross, qk = tied"),
    ("abl_kv_none", "1 layer, kv, smear = none"),
    ("abl_kv_key", "1 layer, kv, smear = key"),
    ("abl_kv_query", "1 layer, kv, smear = query"),
    ("abl_repeat_none", "1 layer, repeat, smear = none"),
    ("abl_repeat_key", "1 layer, repeat, smear = key"),
    ("abl_repeat_query", "1 layer, repeat, smear = query"),
]


def first_step(rows, at_least):
    for r in rows:
        if float(r["val_acc"]) >= at_least:
            return int(r["step"])
    return None


def run_figures(out, name):
    path = os.path.join(out, name, "eval.csv")
    if not os.path.exists(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    wall = None
    log = os.path.join(out, name + ".log")
    if os.path.exists(log):
        m = re.search(r"done: \d+ steps in ([0-9.]+) s", open(log, encoding="utf-8").read())
        wall = float(m.group(1)) if m else None
    last = rows[-1]
    return {"acc": float(last["val_acc"]), "loss": float(last["val_loss"]),
            "steps": int(last["step"]), "jump": first_step(rows, 0.5),
            "solved": first_step(rows, 0.99), "wall": wall}


def spread(values, fmt):
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt % vals[0]
    return (fmt + " ± " + fmt) % (statistics.mean(vals), statistics.stdev(vals))


def cell(values, fmt):
    return ", ".join("never" if v is None else fmt % v for v in values)


ROLE_FIELDS = ["target_attn", "prev_attn", "cf_q_cur", "cf_q_prev", "cf_k_cur", "cf_k_prev",
               "q_cur", "q_prev", "k_cur", "k_prev", "ctl_q_cur", "ctl_q_prev", "ctl_k_cur",
               "ctl_k_prev", "patch_q_attn", "patch_q_pred", "patch_k", "swap_acc"]


def lookup_head(out, name):
    """The head of a run's roles.json with the most attention on the target."""
    path = os.path.join(out, name + ".roles.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        r = json.load(f)
    return max(r["heads"], key=lambda h: h["target_attn"]), r


def roles_tables(out, seeds):
    """Per variant: the lookup head's figures, mean and spread over seeds, and
    where the heads attend; plus the largest K- and Q-composition."""
    lines = ["", "The lookup head of each run (the head with the most attention on the "
             "target), mean ± sd over seeds; which head it is per seed in the first column.", ""]
    groups = [ROLE_FIELDS[:6], ROLE_FIELDS[6:14], ROLE_FIELDS[14:]]
    for fields in groups:
        lines += ["| variant | head (L H) | " + " | ".join(fields) + " |",
                  "|---|---|" + "---|" * len(fields)]
        for key, label in VARIANTS:
            found = [lookup_head(out, "%s_s%s" % (key, s)) for s in seeds]
            found = [f for f in found if f]
            if not found:
                continue
            where = ", ".join("%d %d" % (h["layer"], h["head"]) for h, _ in found)
            cells = []
            for fld in fields:
                vals = [h[fld] for h, _ in found if h.get(fld) is not None]
                cells.append(spread(vals, "%.3f"))
            lines.append("| %s | %s | %s |" % (label, where, " | ".join(cells)))
        lines.append("")
    lines += ["Largest K- and Q-composition score between a layer-0 and a layer-1 head "
              "(Elhage et al.; mean ± sd over seeds):", "",
              "| variant | max K-comp | max Q-comp | max V-comp |", "|---|---|---|---|"]
    for key, label in VARIANTS:
        found = [lookup_head(out, "%s_s%s" % (key, s)) for s in seeds]
        found = [f for f in found if f and f[1]["composition"]]
        if not found:
            continue
        cells = [spread([max(c[k] for c in r["composition"]) for _, r in found], "%.3f")
                 for k in ("k_comp", "q_comp", "v_comp")]
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    return lines


def formation(out, name):
    """First eval step at which the best head's target_attn reaches half of
    its final value (roles_eval.csv), or None."""
    path = os.path.join(out, name, "roles_eval.csv")
    if not os.path.exists(path):
        return None
    by_step = {}
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            by_step.setdefault(int(r["step"]), []).append(float(r["target_attn"]))
    steps = sorted(by_step)
    best = [max(by_step[s]) for s in steps]
    base, final = best[0], best[-1]
    for s, v in zip(steps, best):
        if v - base >= 0.5 * (final - base) and final > base:
            return s
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seeds", default="1 2 3")
    args = ap.parse_args()
    seeds = args.seeds.split()
    lines = ["| variant | steps | val_acc (mean ± sd) | val_acc per seed | step at 0.5 | "
             "step at 0.99 | roles form at | wall s per seed |", "|---|---|---|---|---|---|---|---|"]
    for key, label in VARIANTS:
        figs = [run_figures(args.out, "%s_s%s" % (key, s)) for s in seeds]
        figs = [f for f in figs if f]
        if not figs:
            continue
        form = [formation(args.out, "%s_s%s" % (key, s)) for s in seeds]
        lines.append("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
            label, figs[0]["steps"], spread([f["acc"] for f in figs], "%.4f"),
            cell([f["acc"] for f in figs], "%.4f"), cell([f["jump"] for f in figs], "%d"),
            cell([f["solved"] for f in figs], "%d"), cell(form, "%d"),
            cell([f["wall"] for f in figs], "%.1f")))
    lines += roles_tables(args.out, seeds)
    text = ("Seeds %s; val_acc is the last eval's; the steps are the first evals at which "
            "val_acc reached 0.5 and 0.99 (never: not within the run); roles form at: the "
            "first eval at which the best head's attention on the target (roles_eval.csv) "
            "covered half its way from step 0 to the end.\n\n" % ", ".join(seeds)
            + "\n".join(lines) + "\n")
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
