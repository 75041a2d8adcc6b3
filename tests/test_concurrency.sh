#!/usr/bin/env bash
# One writer per run folder, with the real binaries: two trainers started
# together on one run name (one refused with exit 2 and the holder named, the
# other's run whole and resumable bit-exactly); a trainer killed with -9
# leaves no stale lock; --overwrite, --resume and a report regeneration
# against a running trainer are refused and change nothing of its run; a
# reader loop (eval of the latest checkpoint, a parse of every CSV, config.ini)
# while a run trains sees only complete files and rows; two set-ups of a fresh copy of the
# tree started together build it once.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

write_kv_config r.ini log.heatmap_every=100 log.checkpoint_every=50
busy="is in use by pid [0-9]* (train, since [0-9:]*); wait for it or choose another run.name"
busy_any="is in use by \(pid [0-9]* (train, since [0-9:]*)\|another process\); wait for it or choose another run.name"

# 1. two trainers started together: one refused, the other's run whole
"$build/train" r.ini run.name=race train.stop_after=150 > a.out 2> a.err & pa=$!
"$build/train" r.ini run.name=race train.stop_after=150 > b.out 2> b.err & pb=$!
set +e
wait $pa; ra=$?
wait $pb; rb=$?
set -e
if [ $ra = 0 ]; then loser=b; else loser=a; fi
[ "$ra$rb" = 02 ] || [ "$ra$rb" = 20 ] || fail "exit statuses $ra and $rb, expected 0 and 2"
grep -q "^qkscope: runs/race $busy_any$" $loser.err || fail "refusal: $(cat $loser.err)"
[ "$(wc -l < $loser.err)" = 1 ] || fail "more than one line: $(cat $loser.err)"
[ "$(grep -c '"step"' runs/race/metrics.csv)" = 1 ] || fail "metrics.csv headers"
awk -F, 'NR > 2 && $1 != prev + 1 { bad = 1 } NR > 1 { prev = $1 } END { exit bad || prev != 150 }' \
    runs/race/metrics.csv || fail "metrics.csv steps not 1..150 in order"
"$build/train" r.ini run.name=race run.resume=true > /dev/null
"$build/train" r.ini run.name=whole > /dev/null
cmp <(untimed runs/race/metrics.csv) <(untimed runs/whole/metrics.csv) || fail "resumed run differs"
cmp <(tensors runs/race/ckpt/step_000300.safetensors) <(tensors runs/whole/ckpt/step_000300.safetensors) ||
    fail "resumed weights differ"

# 2. killed with -9 while holding the lock: the next resume starts at once
"$build/train" r.ini run.name=killed train.steps=100000 train.eval_every=1000 log.checkpoint_every=20 \
    > /dev/null 2>&1 & pk=$!
for _ in $(seq 1200); do [ -e runs/killed/ckpt/latest.safetensors ] && break; sleep 0.05; done
[ -e runs/killed/ckpt/latest.safetensors ] || fail "no checkpoint to kill after"
kill -9 $pk
wait $pk || true
"$build/train" r.ini run.name=killed train.steps=100000 train.eval_every=1000 log.checkpoint_every=20 \
    run.resume=true train.stop_after=60 > k.out || fail "resume after kill -9: $(cat k.out)"
grep -q "resuming at step" k.out || fail "no resume: $(cat k.out)"

# 3. --overwrite, --resume and report against a running trainer: refused, its
# run the same as an undisturbed one
"$build/train" r.ini run.name=run train.steps=1500 > /dev/null & pr=$!
# (the trainer names itself in the lock after creating its logs)
for _ in $(seq 3000); do [ -e runs/run/metrics.csv ] && [ -s runs/run/.lock ] && break; sleep 0.02; done
expect_exit 2 "runs/run $busy" "$build/train" r.ini run.name=run train.steps=1500 --overwrite
expect_exit 2 "runs/run $busy" "$build/train" r.ini run.name=run train.steps=1500 run.resume=true
expect_exit 2 "runs/run $busy" "$build/qkscope-report" runs/run
[ -e runs/run/metrics.csv ] || fail "the refused --overwrite removed the run"
# a reader loop while it trains: every CSV parses whole, the latest checkpoint evaluates
reads=0
while kill -0 $pr 2> /dev/null; do
    # a log is appended a buffer of whole rows at a time; while one such write
    # is under way the file may end inside its last row (Linux makes an
    # append visible page by page), which a reader leaves out, as the report
    # page does: every row before the last newline must be whole
    for f in runs/run/*.csv; do
        head -n "$(wc -l < "$f")" "$f" | awk -F, 'NR == 1 { n = NF } NF != n { exit 1 }' ||
            fail "$f: a complete row with another field count"
    done
    [ "$(tail -c 1 runs/run/config.ini)" = "" ] || fail "config.ini seen half-written"
    if [ -e runs/run/ckpt/latest.safetensors ]; then
        "$build/qkscope-eval" runs/run/ckpt/latest.safetensors --json > /dev/null ||
            fail "eval of the latest checkpoint while training"
    fi
    reads=$((reads + 1))
done
wait $pr || fail "the running trainer failed"
((reads > 3)) || fail "the reader loop ran $reads times"
"$build/train" r.ini run.name=quiet train.steps=1500 > /dev/null
cmp <(untimed runs/run/metrics.csv) <(untimed runs/quiet/metrics.csv) || fail "the disturbed run differs"
cmp runs/run/eval.csv runs/quiet/eval.csv || fail "the disturbed run's evals differ"
cmp <(tensors runs/run/ckpt/step_001500.safetensors) <(tensors runs/quiet/ckpt/step_001500.safetensors) ||
    fail "the disturbed run's weights differ"

# 4. two set-ups of a copy of the tree with no build, started together
mkdir tree
(cd "$QK_SOURCE" && git ls-files -z 2> /dev/null || find . -path ./build -prune -o -type f -print0) |
    (cd "$QK_SOURCE" && xargs -0 cp --parents -t "$OLDPWD/tree") 2> /dev/null
[ -f tree/scripts/setup ] || fail "copy of the tree"
if [ -e "$QK_SOURCE/data/fortunes.txt" ]; then mkdir -p tree/data && cp "$QK_SOURCE/data/fortunes.txt" tree/data/; fi
tree/scripts/setup > s1.out 2> s1.err & p1=$!
tree/scripts/setup > s2.out 2> s2.err & p2=$!
wait $p1 || fail "set-up 1: $(cat s1.err)"
wait $p2 || fail "set-up 2: $(cat s2.err)"
[ "$(cat s1.out s2.out | grep -c 'configuring and building')" = 1 ] ||
    fail "the tree was built $(cat s1.out s2.out | grep -c 'configuring and building') times"
grep -q "another set-up of this tree is running; waiting for it" s1.err s2.err ||
    fail "neither set-up said it waited"
[ -x tree/build/src/train ] || fail "no train after the set-ups"
start=$(date +%s%N)
tree/scripts/setup
elapsed=$((($(date +%s%N) - start) / 1000000))
echo "set-up with nothing to do: $elapsed ms"
touch tree/src/data/task.c
tree/scripts/setup
[ tree/build/src/train -nt tree/src/data/task.c ] || fail "a changed source was not rebuilt"
echo "concurrency: all checks passed"
