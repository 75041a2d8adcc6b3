#!/usr/bin/env bash
# A full disk during a run, with the real binary: a file-size limit (ulimit
# -f, SIGXFSZ ignored, so a write past it fails with EFBIG as on a full disk)
# makes a checkpoint or a log write fail part-way. The run stops with a
# message naming the file and a non-zero status; the latest checkpoint still
# loads, no temporary file is left as a checkpoint, and resuming without the
# limit ends equal to an uninterrupted run, every step logged once.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

write_corpus corpus.txt 400 'line %d: some %d words go by %d at a time.\n' 7 3
# two shapes: c.ini's checkpoints are large next to its logs, l.ini's logs
# (16 heads, 16 qk.csv rows a step) outgrow its checkpoints
common=(run.seed=3 run.threads=1 model.block_size=32 train.batch_size=8 train.steps=300
    train.warmup_steps=10 train.eval_every=100 train.log_every=300 log.checkpoint_every=50
    log.heatmap_every=0)
write_config c.ini "${common[@]}" model.n_embd=32 model.n_head=2
write_config l.ini "${common[@]}" model.n_embd=16 model.n_head=8
"$build/train" c.ini run.name=c_ref > /dev/null
"$build/train" l.ini run.name=l_ref > /dev/null

# limited INI RUN KIB ARGS...: train INI run.name=RUN ARGS under a KIB
# file-size limit; must fail (status 1) naming a file it could not write
limited() {
    local ini=$1 run=$2 kib=$3 rc
    shift 3
    set +e
    (trap '' XFSZ && ulimit -f "$kib" && exec "$build/train" "$ini" run.name="$run" "$@") \
        > "$run.out" 2> "$run.err"
    rc=$?
    set -e
    [ "$rc" -eq 1 ] || fail "$run: exit $rc under a ${kib} KiB limit, expected 1: $(cat "$run.err")"
    grep -q "File too large" "$run.err" || fail "$run: message does not say why: $(cat "$run.err")"
}

# resumed INI RUN REF: the run's latest checkpoint loads, no stray checkpoint
# file, and resuming without a limit gives the numbers of REF, uninterrupted
resumed() {
    local ini=$1 run=$2 ref=$3
    "$build/qkscope-info" "runs/$run/ckpt/latest.safetensors" > /dev/null \
        || fail "$run: latest checkpoint does not load after the write failure"
    for f in runs/"$run"/ckpt/*; do
        [[ $f == *.safetensors ]] || fail "$run: stray file $f in ckpt/"
    done
    "$build/train" "$ini" run.name="$run" run.resume=true > /dev/null
    awk -F, 'NR > 1 && $1 != NR - 1 { exit 1 } END { if (NR != 301) exit 1 }' "runs/$run/metrics.csv" \
        || fail "$run: metrics.csv rows after the resume"
    cmp <(untimed runs/$ref/metrics.csv) <(untimed "runs/$run/metrics.csv") || fail "$run: metrics differ"
    cmp runs/$ref/qk.csv "runs/$run/qk.csv" || fail "$run: qk.csv differs"
    cmp runs/$ref/eval.csv "runs/$run/eval.csv" || fail "$run: eval.csv differs"
    cmp <(tensors runs/$ref/ckpt/step_000300.safetensors) \
        <(tensors "runs/$run/ckpt/step_000300.safetensors") || fail "$run: final weights differ"
}

# The checkpoint write fails: first 100 steps without a limit, then a limit
# below a checkpoint's size, so the save at step 150 runs out of room.
ck_kib=$(($(stat -L -c %s runs/c_ref/ckpt/latest.safetensors) / 1024))
"$build/train" c.ini run.name=ckpt train.stop_after=100 > /dev/null
limited c.ini ckpt $((ck_kib / 2)) run.resume=true
grep -q "cannot write checkpoint" ckpt.err || fail "ckpt: $(cat ckpt.err)"
[ "$(readlink runs/ckpt/ckpt/latest.safetensors)" = step_000100.safetensors ] \
    || fail "ckpt: latest is not the last complete checkpoint"
resumed c.ini ckpt c_ref

# A log write fails: room for the checkpoints, not for qk.csv's growth
# (about 2.4 KiB a step).
ck_kib=$(($(stat -L -c %s runs/l_ref/ckpt/latest.safetensors) / 1024))
limited l.ini log $((ck_kib + 100))
grep -q "qk.csv" log.err || fail "log: the message does not name the log: $(cat log.err)"
resumed l.ini log l_ref
