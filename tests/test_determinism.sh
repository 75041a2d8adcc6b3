#!/usr/bin/env bash
# Same config and seed give the same numbers run after run and whatever the
# thread count: metrics.csv (timing columns aside), eval.csv, qk.csv,
# qk_eval.csv and a byte-identical final checkpoint, with OMP_NUM_THREADS=1
# and 2 (every reduction has a fixed order that does not depend on threads).
set -euo pipefail
build="$QK_BUILD/src"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "FAIL: $*" >&2; exit 1; }

for i in $(seq 0 299); do echo "verse $i: the owl and the $((i % 9)) cats sang $((i % 4)) songs."; done > corpus.txt
cat > d.ini <<'INI'
[run]
out_dir = runs
seed = 17
[data]
path = corpus.txt
[model]
n_layer = 2
n_head = 4
n_embd = 64
block_size = 32
bias = true
[train]
batch_size = 6
steps = 40
warmup_steps = 5
eval_every = 20
eval_batches = 2
log_every = 40
[log]
heatmap_every = 20
INI
OMP_NUM_THREADS=1 "$build/train" d.ini run.name=t1 > /dev/null
OMP_NUM_THREADS=2 "$build/train" d.ini run.name=t2 > /dev/null
OMP_NUM_THREADS=2 "$build/train" d.ini run.name=t2b > /dev/null
untimed() { cut -d, -f1-5,8- "$1"; }
tensors() { # the safetensors data section (the header holds the run name)
    local n
    n=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    tail -c +$((9 + n)) "$1"
}
for other in t2 t2b; do
    cmp <(untimed runs/t1/metrics.csv) <(untimed "runs/$other/metrics.csv") || fail "metrics.csv: t1 vs $other"
    for f in eval.csv qk.csv qk_eval.csv attn/step_000040/layer_1.png qk_balance.png; do
        cmp "runs/t1/$f" "runs/$other/$f" || fail "$f: t1 vs $other"
    done
    cmp <(tensors runs/t1/ckpt/step_000040.safetensors) <(tensors "runs/$other/ckpt/step_000040.safetensors") \
        || fail "final weights: t1 vs $other"
done
echo "determinism: all checks passed"
