#!/usr/bin/env bash
# Faults during a run, with the real binary: SIGTERM / SIGINT finish the step,
# checkpoint and exit 143 / 130, and the resumed run equals an uninterrupted
# one; a second SIGINT exits at once leaving a loadable checkpoint; kill -9
# then resume leaves no duplicated or torn log row; a non-finite loss stops
# the run naming the step and tensor, and no NaN reaches a checkpoint.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

write_corpus corpus.txt 400 'line %d: some %d words go by %d at a time.\n' 7 3
write_config f.ini run.name=ref run.seed=2 run.threads=1 model.n_embd=32 model.block_size=32 \
    train.batch_size=8 train.steps=400 train.warmup_steps=10 train.eval_every=100 train.log_every=400 \
    log.checkpoint_every=50 log.heatmap_every=100
"$build/train" f.ini > /dev/null

# wait_rows RUN N: until metrics.csv of RUN has N data rows
wait_rows() {
    for _ in $(seq 1 600); do
        [ -f "runs/$1/metrics.csv" ] && [ "$(wc -l < "runs/$1/metrics.csv")" -gt "$2" ] && return 0
        sleep 0.05
    done
    fail "run $1 did not reach $2 steps"
}

# signal SIG NAME CODE: interrupt run NAME with SIG, expect CODE, resume, compare
signal_run() {
    local sig=$1 name=$2 code=$3
    "$build/train" f.ini run.name="$name" > "$name.out" 2>&1 &
    local pid=$!
    wait_rows "$name" 20
    kill -"$sig" "$pid"
    set +e
    wait "$pid"
    local rc=$?
    set -e
    [ "$rc" -eq "$code" ] || fail "$sig: exit $rc, expected $code: $(cat "$name.out")"
    grep -q "interrupted (SIG$sig) after step [0-9]* of 400" "$name.out" || fail "$sig message: $(cat "$name.out")"
    grep -q "run.resume=true" "$name.out" || fail "$sig: no resume hint"
    local k
    k=$(sed -n "s/.*interrupted (SIG$sig) after step \([0-9]*\) .*/\1/p" "$name.out")
    [ "$(readlink "runs/$name/ckpt/latest.safetensors")" = "$(printf 'step_%06d.safetensors' "$k")" ] \
        || fail "$sig: latest checkpoint is not step $k"
    [ "$(tail -1 "runs/$name/metrics.csv" | cut -d, -f1)" = "$k" ] || fail "$sig: metrics.csv not flushed to $k"
    "$build/train" f.ini run.name="$name" run.resume=true > /dev/null
    cmp <(untimed runs/ref/metrics.csv) <(untimed "runs/$name/metrics.csv") || fail "$sig: resumed metrics differ"
    cmp runs/ref/qk.csv "runs/$name/qk.csv" || fail "$sig: resumed qk.csv differs"
    cmp runs/ref/eval.csv "runs/$name/eval.csv" || fail "$sig: resumed eval.csv differs"
}
signal_run TERM term 143
signal_run INT int 130

# Two SIGINTs: out at once, the last complete checkpoint still loads.
"$build/train" f.ini run.name=twice > twice.out 2>&1 &
pid=$!
wait_rows twice 60
kill -INT "$pid"
kill -INT "$pid"
set +e
wait "$pid"
rc=$?
set -e
[ "$rc" -eq 130 ] || fail "double SIGINT: exit $rc"
"$build/qkscope-info" runs/twice/ckpt/latest.safetensors > /dev/null || fail "double SIGINT: latest checkpoint does not load"

# kill -9, then resume: every step logged exactly once, no torn row.
# Killed just after checkpoint 150, which is not an eval step: the rows up to
# 150 must already be on disk.
"$build/train" f.ini run.name=killed > /dev/null 2>&1 &
pid=$!
wait_rows killed 120
for _ in $(seq 1 1000); do
    [ "$(readlink runs/killed/ckpt/latest.safetensors)" = step_000150.safetensors ] && break
    sleep 0.005
done
kill -9 "$pid" 2> /dev/null || true
wait "$pid" 2>/dev/null || true
k=$(readlink runs/killed/ckpt/latest.safetensors | tr -dc 0-9)
[ "$(($(wc -l < runs/killed/metrics.csv) - 1))" -ge "$((10#$k))" ] \
    || fail "kill -9: checkpoint $k on disk, metrics.csv has fewer rows"
"$build/qkscope-info" runs/killed/ckpt/latest.safetensors > /dev/null || fail "after kill -9 the latest checkpoint does not load"
"$build/train" f.ini run.name=killed run.resume=true > /dev/null
awk -F, 'NR > 1 { if ($1 != NR - 1) { print "row " NR ": step " $1; exit 1 } } END { if (NR != 401) exit 1 }' \
    runs/killed/metrics.csv || fail "metrics.csv after kill -9 + resume"
awk -F, 'NR > 1 { n[$1 "," $2 "," $3]++; if (n[$1 "," $2 "," $3] > 1) exit 1 } END { if (NR != 1601) exit 1 }' \
    runs/killed/qk.csv || fail "qk.csv after kill -9 + resume"
cmp <(untimed runs/ref/metrics.csv) <(untimed runs/killed/metrics.csv) || fail "killed+resumed metrics differ"

# A non-finite loss: stop, name the step and tensor, keep the checkpoints finite.
expect_exit 1 "^qkscope: step [0-9]*: non-finite .*; first non-finite gradient: .*; the last checkpoint is intact" \
    "$build/train" f.ini run.name=nan train.lr=1e30 train.grad_clip=0 train.warmup_steps=0 log.checkpoint_every=1
for f in runs/nan/ckpt/step_*.safetensors; do
    [ -e "$f" ] || continue
    "$build/qkscope-info" "$f" > /dev/null || fail "$f does not load (NaN in a checkpoint?)"
done
echo "faults: all checks passed"
