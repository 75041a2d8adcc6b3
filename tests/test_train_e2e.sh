#!/usr/bin/env bash
# End to end with the real binary on a corpus written here: the loss falls well
# below ln V, the same seed gives identical numbers (timing columns aside), the
# resolved config.ini reproduces the run, and a used run name is refused.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"
train="$build/train"

# A small corpus with structure to learn: counting rhymes with varied words.
write_words_corpus corpus.txt 400 'the %s by the %s, number %d of the day.\n' \
    apple brook cedar dune ember fjord grove heath inlet juniper
write_config small.ini run.seed=5 model.n_embd=32 model.block_size=32 train.batch_size=8 \
    train.steps=150 train.lr=3e-3 train.min_lr=3e-4 train.warmup_steps=10 train.eval_every=50 \
    train.eval_batches=4 train.log_every=50

"$train" small.ini > out_a.txt
for f in config.ini metrics.csv eval.csv; do
    [ -s "runs/a/$f" ] || fail "runs/a/$f missing"
done
case "$(head -1 runs/a/metrics.csv)" in
    '"step","lr","loss","grad_norm","clip_scale","ms","tokens_per_s","gq_norm_L0",'*) ;;
    *) fail "metrics.csv header: $(head -1 runs/a/metrics.csv)" ;;
esac
[ "$(wc -l < runs/a/metrics.csv)" -eq 151 ] || fail "metrics.csv should have 150 rows"

# The done line splits the wall time into disjoint parts: training and each
# kind of work outside the steps, which together cannot exceed the total
# (each part is printed rounded to 0.1 s, hence the slack).
done_line=$(tail -1 out_a.txt)
awk '{
        if (!match($0, /^qkscope: done: 150 steps in [0-9.]+ s \([0-9.]+ s training, [0-9]+ tokens\/s; evals [0-9.]+ s, Q\/K analyses [0-9.]+ s, heatmaps [0-9.]+ s, report [0-9.]+ s, checkpoints [0-9.]+ s\), val loss [0-9.]+$/)) {
            print "unexpected form"; exit 1
        }
        total = $6; line = $0; gsub(/[(),;]/, " ", line); n = split(line, w, " ")
        for (i = 8; i <= n; i++) if (w[i] == "s" && w[i - 1] ~ /^[0-9.]+$/) sum += w[i - 1]
        if (sum > total + 0.35) { print "parts " sum " s exceed the total " total " s"; exit 1 }
    }' <<< "$done_line" || fail "done line: $done_line"
[ "$(wc -l < runs/a/eval.csv)" -eq 5 ] || fail "eval.csv should have evals at 0, 50, 100, 150"

V=$(python3 -c 'import sys; print(len(set(open("corpus.txt", encoding="utf-8").read())))' 2>/dev/null \
    || LC_ALL=C.UTF-8 grep -o . corpus.txt | sort -u | wc -l)
awk -F, -v V="$V" 'NR == 2 { first = $3 } END {
        lnV = log(V)
        if (first < 0.9 * lnV || first > 1.1 * lnV) { print "initial val loss " first " not near ln V " lnV; exit 1 }
        if ($3 > 0.5 * lnV) { print "final val loss " $3 " not below half of ln V " lnV; exit 1 }
    }' runs/a/eval.csv || fail "loss did not fall"

# Same seed, same numbers (step, lr, loss, grad_norm, clip_scale).
"$train" small.ini run.name=b > /dev/null
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
expect_exit 2 "runs/a: run folder already holds a run" "$train" small.ini
[ "$(find runs/a -type f -print0 | sort -z | xargs -0 md5sum)" = "$sum_before" ] || fail "refused run changed the folder"
"$train" small.ini run.overwrite=true train.steps=20 train.warmup_steps=5 > /dev/null
[ "$(wc -l < runs/a/metrics.csv)" -eq 21 ] || fail "overwrite did not replace the run"

# A missing corpus is bad input, reported before any folder is made.
expect_exit 2 "nope.txt: cannot open corpus" "$train" small.ini run.name=e data.path=nope.txt
[ ! -e runs/e ] || fail "a refused run left a folder"

# A model that cannot fit in memory is refused with what it needs.
expect_exit 2 "model needs .* GiB" \
    "$train" small.ini run.name=f model.n_embd=16384 model.n_layer=256 model.n_head=1
echo "train_e2e: all checks passed"
