#!/usr/bin/env bash
# A corpus run's roles log and data.repeat_fraction with the real trainer:
# roles_eval.csv at step 0 and every eval (one row per head, the losses the
# same on every row of an eval), its last eval against `qkscope roles
# --json` on the final checkpoint, the same bits on 1 and 2 threads; the
# refusals of log.roles_records (more segments than the validation split
# holds, a block too short to repeat, a resume of a run without the log);
# with data.repeat_fraction 0 the run of the default, with 0.5 another one,
# the same on 1 and 2 threads and through an interruption and a resume.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

write_words_corpus corpus.txt 300 'the %s and the %s, number %d.\n' amber birch cedar dune elm fjord grove heath
write_config a.ini run.name=a run.threads=2 train.steps=30 train.eval_every=10 log.heatmap_every=0 \
    log.swap_batches=0 log.checkpoint_every=10

"$build/train" a.ini > /dev/null
"$build/train" a.ini run.name=t1 run.threads=1 > /dev/null
cmp -s runs/a/roles_eval.csv runs/t1/roles_eval.csv ||
    fail "roles_eval.csv differs between 2 and 1 threads: $(diff runs/a/roles_eval.csv runs/t1/roles_eval.csv | head -4)"

# one row per (layer, head) at each eval, attention fractions in 0..1, the
# run-level losses repeated on every row of an eval
"$py" - runs/a/roles_eval.csv runs/a/eval.csv <<'PY' || fail "roles_eval.csv: $(head -12 runs/a/roles_eval.csv)"
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
evals = [int(r["step"]) for r in csv.DictReader(open(sys.argv[2]))]
assert list(rows[0]) == ["step", "layer", "head", "prev_attn", "induction_attn", "duplicate_attn",
                         "sink_attn", "loss_first", "loss_second"], list(rows[0])
steps = sorted({int(r["step"]) for r in rows})
assert steps == evals == [0, 10, 20, 30], (steps, evals)
for s in steps:
    at = [r for r in rows if int(r["step"]) == s]
    assert [(int(r["layer"]), int(r["head"])) for r in at] == [(0, 0), (0, 1), (1, 0), (1, 1)], at
    for r in at:
        for f in ("prev_attn", "induction_attn", "duplicate_attn", "sink_attn"):
            assert 0 <= float(r[f]) <= 1, (s, f, r[f])
        assert (r["loss_first"], r["loss_second"]) == (at[0]["loss_first"], at[0]["loss_second"]), at
    assert 0 < float(at[0]["loss_first"]) < 10 and 0 < float(at[0]["loss_second"]) < 10, at[0]
PY

# the last eval is qkscope roles' val set on the final checkpoint (32
# segments of block_size / 2 = 8)
"$build/qkscope-roles" runs/a/ckpt/latest.safetensors --records 32 --json > roles.json
"$py" - roles.json runs/a/roles_eval.csv <<'PY' || fail "roles_eval.csv's last eval vs qkscope roles"
import csv, json, sys
j = json.load(open(sys.argv[1]))
assert j["records"] == 32 and j["segment"] == 8, (j["records"], j["segment"])
val = [s for s in j["sets"] if s["name"] == "val"][0]
rows = [r for r in csv.DictReader(open(sys.argv[2])) if r["step"] == "30"]
for r, h in zip(rows, val["heads"], strict=True):
    assert (int(r["layer"]), int(r["head"])) == (h["layer"], h["head"])
    for f in ("prev_attn", "induction_attn", "duplicate_attn", "sink_attn"):
        assert abs(float(r[f]) - h[f]) <= 1e-6, (f, r[f], h[f])
    for f in ("loss_first", "loss_second"):
        assert abs(float(r[f]) - val[f]) <= 1e-6, (f, r[f], val[f])
PY

# -- refusals: one line, exit 2, nothing trained
n_val=$("$py" -c 'import sys; n = len(open(sys.argv[1], encoding="utf-8").read()); print(int(n * 0.1))' corpus.txt)
limit=$((n_val - 8))
refuse "[log] roles_records = $((limit + 1)): the validation split ($n_val characters) holds $limit distinct segments of block_size / 2 = 8 characters; at most $limit" \
    "$build/train" a.ini run.name=r1 log.roles_records=$((limit + 1))
check "log.roles_records at the limit" "$build/train" a.ini run.name=r2 log.roles_records=$limit \
    train.steps=1 train.warmup_steps=0
refuse "[log] roles_records = 32: a corpus run's roles measures repeat a segment of block_size / 2 characters, at least 2, so they need block_size >= 4 (it is 3); set log.roles_records=0" \
    "$build/train" a.ini run.name=r3 model.block_size=3
check "block_size 3 without the roles log" "$build/train" a.ini run.name=r4 model.block_size=3 \
    log.roles_records=0 train.steps=1 train.warmup_steps=0
[ ! -e runs/r1 ] && [ ! -e runs/r3 ] || fail "a refused run left a folder: $(ls runs)"
# a run started without the roles log resumes only without it
"$build/train" a.ini run.name=o log.roles_records=0 train.stop_after=10 > /dev/null
refuse "runs/o/roles_eval.csv: no such log: the run was started without the roles log; resume it with log.roles_records=0" \
    "$build/train" a.ini run.name=o run.resume=true
check "resuming with log.roles_records=0" "$build/train" a.ini run.name=o run.resume=true log.roles_records=0
finish

# -- data.repeat_fraction: 0 is the default run, to the byte; 0.5 another
# run, deterministic whatever the threads and through a resume
"$build/train" a.ini run.name=z data.repeat_fraction=0 > /dev/null
for f in eval.csv roles_eval.csv qk.csv; do
    cmp -s runs/a/$f runs/z/$f || fail "repeat_fraction=0 changed $f"
done
cmp -s <(untimed runs/a/metrics.csv) <(untimed runs/z/metrics.csv) || fail "repeat_fraction=0 changed metrics.csv"
grep -qx 'repeat_fraction = 0' runs/z/config.ini || fail "config.ini: $(grep repeat runs/z/config.ini)"
"$build/train" a.ini run.name=p data.repeat_fraction=0.5 > /dev/null
"$build/train" a.ini run.name=p1 data.repeat_fraction=0.5 run.threads=1 > /dev/null
"$build/train" a.ini run.name=q data.repeat_fraction=0.5 train.stop_after=15 > /dev/null
"$build/train" a.ini run.name=q data.repeat_fraction=0.5 run.resume=true > /dev/null
cmp -s <(untimed runs/a/metrics.csv) <(untimed runs/p/metrics.csv) && fail "repeat_fraction=0.5 changed no batch loss"
for run in p1 q; do
    cmp -s <(untimed runs/p/metrics.csv) <(untimed runs/$run/metrics.csv) || fail "metrics.csv of $run differs from p's"
    for f in eval.csv roles_eval.csv; do cmp -s runs/p/$f runs/$run/$f || fail "$f of $run differs from p's"; done
done
echo "ok"
