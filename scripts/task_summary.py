#!/usr/bin/env python3
"""Summarises scripts/task_experiments' runs (standard library only): per
variant, over seeds, the final val accuracy and loss, the first eval step at
which val_acc reaches 0.5 (the jump off the plateau) and 0.99 (solved), and
the wall time of the whole run, as a markdown table with each seed's values;
then the lookup head's roles, the circuit of the two-layer runs (from
qkscope roles), the formation events of each run (formation.csv) and, for
the symmetric start, the lookup head's symmetry over training (qk_eval.csv).

usage: task_summary.py OUT_DIR [--seeds "1 2 3"]
"""
import argparse
import csv
import json
import os
import re
import statistics

VARIANTS = [
    ("kv", "kv (configs/kv.ini: plain, init = torch)"),
    ("kv_fine", "kv, an eval every 10 steps"),
    ("kv_cross", "kv_cross (configs/kv_cross.ini)"),
    ("repeat", "repeat (configs/repeat.ini)"),
    ("kv_gpt2", "kv, init = gpt2"),
    ("kv_tied", "kv, qk = tied"),
    ("kv_cross_tied", "kv_cross, qk = tied"),
    ("kv_sym", "kv, qk_init = symmetric"),
    ("kv_smear", "kv, smear = key (configs/kv_smear.ini)"),
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


ROLE_FIELDS = ["target_attn", "prev_attn_j", "cf_q_cur", "cf_q_prev", "cf_k_cur", "cf_k_prev",
               "q_cur", "q_prev", "k_cur", "k_prev", "ctl_q_cur", "ctl_q_prev", "ctl_k_cur",
               "ctl_k_prev", "patch_q_attn", "patch_q_pred", "patch_k", "swap_acc"]


def lookup_head(out, name):
    """The lookup head of a run's roles.json (roles' choice), and the whole."""
    path = os.path.join(out, name + ".roles.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        r = json.load(f)
    lk = r["lookup"]
    return next(h for h in r["heads"] if (h["layer"], h["head"]) == (lk["layer"], lk["head"])), r


def roles_tables(out, seeds):
    """Per variant: the lookup head's figures, mean and spread over seeds, and
    where the heads attend; plus the largest K- and Q-composition."""
    lines = ["", "The lookup head of each run (roles' choice: the head with the most attention "
             "on the target), mean ± sd over seeds; which head it is per seed in the first "
             "column.", ""]
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


def circuit_table(out, seeds):
    """Per two-layer variant: the previous-token heads, the ablation of all of
    them, the whole lookup layer's swap and query patch, and the largest
    K-composition of a previous-token head into the lookup head."""
    lines = ["", "The circuit (two-layer runs; qkscope roles): previous-token heads of layer 0 "
             "per seed; accuracy and the lookup head's target_attn with all of them "
             "mean-ablated at once; accuracy with every lookup-layer head's W_Q and W_K "
             "exchanged; the fraction of cases whose prediction follows a patch of every "
             "lookup-layer query; the largest K-composition of a previous-token head into the "
             "lookup head (mean ± sd over seeds).", "",
             "| variant | prev-token heads (L H) | acc, prev ablated | target_attn, prev ablated "
             "| acc, lookup layer swapped | lookup layer patch_q_pred | K-comp prev -> lookup |",
             "|---|---|---|---|---|---|---|"]
    for key, label in VARIANTS:
        found = [lookup_head(out, "%s_s%s" % (key, s)) for s in seeds]
        found = [f for f in found if f and len(f[1]["layer_swap_acc"]) > 1]
        if not found:
            continue
        prevs, kcomp = [], []
        for h, r in found:
            p = [x for x in r["heads"] if x["role"] == "prev-token"]
            prevs.append(" ".join("%d %d" % (x["layer"], x["head"]) for x in p) or "none")
            ks = [c["k_comp"] for c in r["composition"] if c["layer"] == h["layer"]
                  and c["to_head"] == h["head"]
                  and any(x["layer"] == c["layer"] - 1 and x["head"] == c["from_head"] for x in p)]
            kcomp.append(max(ks) if ks else None)
        cells = [spread([r["prev_ablate_acc"] for _, r in found], "%.3f"),
                 spread([r["prev_ablate_target_attn"] for _, r in found], "%.3f"),
                 spread([r["layer_swap_acc"][h["layer"]] for h, r in found], "%.3f"),
                 spread([r["layer_patch_q_pred"][h["layer"]] for h, r in found], "%.3f"),
                 spread(kcomp, "%.3f")]
        lines.append("| %s | %s | %s |" % (label, "; ".join(prevs), " | ".join(cells)))
    return lines


EVENTS = ["jump", "prev_attn_j", "target_attn", "cf_q_cur", "cf_k_prev"]
# the two-layer runs that leave the plateau: on the others the halfway steps
# mark the first rise to it
EVENT_VARIANTS = ["kv", "kv_fine", "kv_cross", "repeat", "kv_sym"]


def events_table(out, seeds):
    """Each run's formation.csv: the halfway step of val_acc (the jump) and of
    each roles series, per seed."""
    lines = ["", "Formation (formation.csv of each run, written by the report): the first eval "
             "at which each series covered half its way from its first to its last value; "
             "jump is val_acc's. Per seed.", "",
             "| variant | seed | " + " | ".join(EVENTS) + " |", "|---|---|" + "---|" * len(EVENTS)]
    for key, label in VARIANTS:
        if key not in EVENT_VARIANTS:
            continue
        for s in seeds:
            path = os.path.join(out, "%s_s%s" % (key, s), "formation.csv")
            if not os.path.exists(path):
                continue
            with open(path, newline="", encoding="utf-8") as f:
                ev = {r["event"]: r for r in csv.DictReader(f)}
            cells = [(ev[e]["step"] or "none") + (" (%s)" % ev[e]["head"] if ev[e]["head"] else "")
                     if e in ev else "-" for e in EVENTS]
            lines.append("| %s | %s | %s |" % (label, s, " | ".join(cells)))
    return lines


def symmetry_table(out, seeds, key="kv_sym"):
    """The symmetric start: the lookup head's symmetry (qk_eval.csv) at the
    first eval, at the jump, at the end, and the first eval below 0.5."""
    lines = ["", "Symmetric start (%s): the lookup head's symmetry score over training "
             "(qk_eval.csv), per seed." % key, "",
             "| seed | lookup head | at step 0 | at the jump | at the end | first step below 0.5 |",
             "|---|---|---|---|---|---|"]
    for s in seeds:
        name = "%s_s%s" % (key, s)
        found = lookup_head(out, name)
        path = os.path.join(out, name, "qk_eval.csv")
        if not found or not os.path.exists(path):
            continue
        h = found[0]
        with open(path, newline="", encoding="utf-8") as f:
            sym = [(int(r["step"]), float(r["symmetry"])) for r in csv.DictReader(f)
                   if (int(r["layer"]), int(r["head"])) == (h["layer"], h["head"])]
        figs = run_figures(out, name)
        jump = figs["jump"] if figs else None
        at_jump = next((v for st, v in sym if jump is not None and st >= jump), None)
        below = next((st for st, v in sym if v < 0.5), None)
        lines.append("| %s | %d %d | %.3f | %s | %.3f | %s |" % (
            s, h["layer"], h["head"], sym[0][1], "-" if at_jump is None else "%.3f" % at_jump,
            sym[-1][1], "never" if below is None else below))
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
    lines += circuit_table(args.out, seeds)
    lines += events_table(args.out, seeds)
    lines += symmetry_table(args.out, seeds)
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
