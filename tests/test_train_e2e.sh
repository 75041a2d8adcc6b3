#!/usr/bin/env bash
# End to end with the real binary on a corpus written here: the loss falls well
# below ln V, the same seed gives identical numbers (timing columns aside), the
# resolved config.ini reproduces the run, and a used run name is refused.
set -euo pipefail
train="$QK_BUILD/src/train"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

# A small corpus with structure to learn: counting rhymes with varied words.
words=(apple brook cedar dune ember fjord grove heath inlet juniper)
for i in $(seq 0 399); do
    w=${words[$((i % 10))]}
    v=${words[$(((i * 7 + 3) % 10))]}
    echo "the $w by the $v, number $((i % 13)) of the day."
done > corpus.txt

cat > small.ini <<'INI'
[run]
name = a
out_dir = runs
seed = 5
[data]
path = corpus.txt
[model]
n_layer = 2
n_head = 2
n_embd = 32
block_size = 32
[train]
batch_size = 8
steps = 150
lr = 3e-3
min_lr = 3e-4
warmup_steps = 10
eval_every = 50
eval_batches = 4
log_every = 50
INI

fail() { echo "FAIL: $*" >&2; exit 1; }

"$train" small.ini > out_a.txt
for f in config.ini metrics.csv eval.csv; do
    [ -s "runs/a/$f" ] || fail "runs/a/$f missing"
done
case "$(head -1 runs/a/metrics.csv)" in
    '"step","lr","loss","grad_norm","clip_scale","ms","tokens_per_s","gq_norm_L0",'*) ;;
    *) fail "metrics.csv header: $(head -1 runs/a/metrics.csv)" ;;
esac
[ "$(wc -l < runs/a/metrics.csv)" -eq 151 ] || fail "metrics.csv should have 150 rows"
[ "$(wc -l < runs/a/eval.csv)" -eq 5 ] || fail "eval.csv should have evals at 0, 50, 100, 150"

V=$(python3 -c 'import sys; print(len(set(open("corpus.txt", encoding="utf-8").read())))' 2>/dev/null \
    || LC_ALL=C.UTF-8 grep -o . corpus.txt | sort -u | wc -l)
awk -F, -v V="$V" 'NR == 2 { first = $3 } END {
        lnV = log(V)
        if (first < 0.9 * lnV || first > 1.1 * lnV) { print "initial val loss " first " not near ln V " lnV; exit 1 }
        if ($3 > 0.5 * lnV) { print "final val loss " $3 " not below half of ln V " lnV; exit 1 }
    }' runs/a/eval.csv || fail "loss did not fall"

# Same seed, same numbers (drop the timing columns ms and tokens_per_s).
"$train" small.ini run.name=b > /dev/null
untimed() { cut -d, -f1-5 "$1"; }
cmp <(untimed runs/a/metrics.csv) <(untimed runs/b/metrics.csv) || fail "metrics.csv differs between identical runs"
cmp runs/a/eval.csv runs/b/eval.csv || fail "eval.csv differs between identical runs"

# The resolved config alone reproduces the run.
"$train" runs/a/config.ini run.name=c > /dev/null
cmp <(untimed runs/a/metrics.csv) <(untimed runs/c/metrics.csv) || fail "config.ini does not reproduce the run"

# Another seed gives other numbers.
"$train" small.ini run.name=d run.seed=6 > /dev/null
if cmp -s <(untimed runs/a/metrics.csv) <(untimed runs/d/metrics.csv); then fail "seed has no effect"; fi

# A used run name is refused (exit 2, folder untouched) unless overwritten.
sum_before=$(find runs/a -type f -print0 | sort -z | xargs -0 md5sum)
set +e
"$train" small.ini 2> err.txt > /dev/null
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "reused run name: exit $rc, expected 2"
grep -q "runs/a: run folder already holds a run" err.txt || fail "reused run name message: $(cat err.txt)"
[ "$(find runs/a -type f -print0 | sort -z | xargs -0 md5sum)" = "$sum_before" ] || fail "refused run changed the folder"
"$train" small.ini run.overwrite=true train.steps=20 train.warmup_steps=5 > /dev/null
[ "$(wc -l < runs/a/metrics.csv)" -eq 21 ] || fail "overwrite did not replace the run"

# A missing corpus is bad input, reported before any folder is made.
set +e
"$train" small.ini run.name=e data.path=nope.txt 2> err.txt > /dev/null
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "missing corpus: exit $rc"
grep -q "nope.txt: cannot open corpus" err.txt || fail "missing corpus message: $(cat err.txt)"
[ ! -e runs/e ] || fail "a refused run left a folder"

# A model that cannot fit in memory is refused with what it needs.
set +e
"$train" small.ini run.name=f model.n_embd=16384 model.n_layer=256 model.n_head=1 2> err.txt > /dev/null
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "huge model: exit $rc"
grep -q "model needs .* GiB" err.txt || fail "huge model message: $(cat err.txt)"
echo "train_e2e: all checks passed"
