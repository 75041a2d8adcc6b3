#!/usr/bin/env bash
# Same config and seed give the same numbers run after run and whatever the
# thread count: metrics.csv (timing columns aside), eval.csv, qk.csv,
# qk_eval.csv and a byte-identical final checkpoint, with OMP_NUM_THREADS=1
# and 2 (every reduction has a fixed order that does not depend on threads).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

# every run below is named on the command line (the config's name, a, is unused)
write_corpus corpus.txt 300 'verse %d: the owl and the %d cats sang %d songs.\n' 9 4
write_config d.ini run.seed=17 model.n_head=4 model.n_embd=64 model.block_size=32 model.bias=true \
    train.batch_size=6 train.steps=40 train.eval_every=20 train.log_every=40 log.heatmap_every=20
OMP_NUM_THREADS=1 "$build/train" d.ini run.name=t1 > /dev/null
OMP_NUM_THREADS=2 "$build/train" d.ini run.name=t2 > /dev/null
OMP_NUM_THREADS=2 "$build/train" d.ini run.name=t2b > /dev/null
for other in t2 t2b; do
    cmp <(untimed runs/t1/metrics.csv) <(untimed "runs/$other/metrics.csv") || fail "metrics.csv: t1 vs $other"
    for f in eval.csv qk.csv qk_eval.csv attn/step_000040/layer_1.png qk_balance.png; do
        cmp "runs/t1/$f" "runs/$other/$f" || fail "$f: t1 vs $other"
    done
    cmp <(tensors runs/t1/ckpt/step_000040.safetensors) <(tensors "runs/$other/ckpt/step_000040.safetensors") \
        || fail "final weights: t1 vs $other"
done
echo "determinism: all checks passed"
