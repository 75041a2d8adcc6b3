#!/usr/bin/env bash
# Tasks end to end with the real binaries: a small repeat task trains to a
# high accuracy in seconds; eval.csv, config.ini, eval (its own records, a
# file of records, refusals), a resume bit-identical to the uninterrupted
# run, a resume with other task parameters refused, init_from across task
# parameters (a curriculum), and a kv run with its cross variant.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

cat > rep.ini <<'EOF'
[run]
name = rep
threads = 1
seed = 1
[data]
task = repeat
[task]
letters = 8
len_min = 4
len_max = 8
[model]
n_layer = 2
n_head = 2
n_embd = 32
block_size = 16
[train]
batch_size = 32
steps = 800
lr = 3e-3
min_lr = 3e-4
warmup_steps = 50
eval_every = 100
eval_batches = 4
log_every = 400
[log]
heatmap_every = 400
checkpoint_every = 400
swap_batches = 1
EOF

"$build/train" rep.ini > out.txt || fail "repeat run: $(cat out.txt)"
grep -q "task repeat (records of up to 17 characters)" out.txt || fail "start line: $(head -1 out.txt)"
[ "$(head -1 runs/rep/eval.csv | tr -d '"')" = "step,train_loss,val_loss,train_acc,val_acc" ] ||
    fail "eval.csv header: $(head -1 runs/rep/eval.csv)"
acc=$(tail -1 runs/rep/eval.csv | cut -d, -f5)
awk -v a="$acc" 'BEGIN { exit !(a >= 0.95) }' || fail "repeat val_acc $acc after 800 steps, expected >= 0.95"
first=$(sed -n 2p runs/rep/eval.csv | cut -d, -f5)
awk -v a="$first" 'BEGIN { exit !(a < 0.5) }' || fail "step-0 val_acc $first should be near chance"
grep -q "val acc $(printf '%.4f' "$acc")" out.txt || fail "console eval line without val acc"

# config.ini: the task's keys only, and no corpus path
grep -q '^task = repeat$' runs/rep/config.ini || fail "config.ini: no task line"
grep -q '^path = ""$' runs/rep/config.ini || fail "config.ini: a corpus path with a task"
[ "$(sed -n '/^\[task\]/,/^\[model\]/p' runs/rep/config.ini | grep -c ' = ')" = 3 ] ||
    fail "config.ini [task]: $(sed -n '/^\[task\]/,/^\[model\]/p' runs/rep/config.ini)"
grep -q '^keys = ' runs/rep/config.ini && fail "config.ini holds kv's keys"
# the picture set, the Q/K analysis and the page on a task run
[ -f runs/rep/attn/step_000800/layer_1.png ] || fail "no heatmaps at step 800"
[ "$(grep -c '^800,' runs/rep/qk_eval.csv)" = 5 ] || fail "qk_eval.csv at step 800"
grep -q 'id="accuracy"' runs/rep/index.html || fail "report page without the accuracy chart"
"$build/train" runs/rep/config.ini run.name=rep2 > /dev/null
cmp <(untimed runs/rep/metrics.csv) <(untimed runs/rep2/metrics.csv) || fail "same seed, other metrics"
cmp runs/rep/eval.csv runs/rep2/eval.csv || fail "same seed, other evals"

# eval reproduces the run's last eval, loss and accuracy
ck=runs/rep/ckpt/latest.safetensors
last=$(tail -1 runs/rep/eval.csv)
got=$("$build/qkscope-eval" "$ck" --json)
[[ $got == "{\"loss\": $(echo "$last" | cut -d, -f3), \"acc\": $(echo "$last" | cut -d, -f5), "* ]] ||
    fail "eval $got vs eval.csv $last"

# records written by hand, in the format of docs/tasks.md; a bad one named by line
printf 'abcd|abcd\nhhgg|hhgg\ncabbage|cabbage\n' > recs.txt
got=$("$build/qkscope-eval" "$ck" --records recs.txt --json)
[[ $got == *'"tokens": 12, "windows": 3}' ]] || fail "eval --records: $got"
awk -v s="$got" 'BEGIN { split(s, a, "\"acc\": "); exit !(a[2] + 0 >= 0.9) }' ||
    fail "eval --records accuracy: $got"
printf 'abcd|abcd\nabcd|abce\n' > bad.txt
expect_exit 2 "bad.txt:2: not a repeat record: character 8: 'e' differs from the string's 'd'" \
    "$build/qkscope-eval" "$ck" --records bad.txt
printf 'abcd|abcd\n\n' > empty.txt
expect_exit 2 "empty.txt:2: empty line, expected one record" "$build/qkscope-eval" "$ck" --records empty.txt
expect_exit 2 "--data: the checkpoint was trained on task repeat, not a corpus" \
    "$build/qkscope-eval" "$ck" --data recs.txt

# stop and resume: the same run
"$build/train" rep.ini run.name=b train.stop_after=400 > /dev/null
"$build/train" rep.ini run.name=b run.resume=true > out.txt
grep -q "resuming at step 400" out.txt || fail "resume: $(cat out.txt)"
cmp <(untimed runs/rep/metrics.csv) <(untimed runs/b/metrics.csv) || fail "resumed metrics.csv differs"
cmp runs/rep/eval.csv runs/b/eval.csv || fail "resumed eval.csv differs"
cmp <(tensors runs/rep/ckpt/step_000800.safetensors) <(tensors runs/b/ckpt/step_000800.safetensors) ||
    fail "resumed final weights differ"
"$build/train" rep.ini run.name=c train.stop_after=400 > /dev/null
before=$(tree_sum runs/c)
expect_exit 2 "cannot resume with other task parameters: .task. len_max is 8 in the checkpoint, 7 in the config" \
    "$build/train" rep.ini run.name=c run.resume=true task.len_max=7
[ "$(tree_sum runs/c)" = "$before" ] || fail "a refused resume changed runs/c"

# init_from: a curriculum, short strings first, then the longer ones
"$build/train" rep.ini run.name=d task.len_max=8 task.len_min=8 \
    train.init_from=runs/rep/ckpt/step_000400.safetensors train.steps=100 train.warmup_steps=10 \
    > /dev/null || fail "init_from across task parameters"
expect_exit 2 "vocabulary (10 characters) differs from that of repeat (7 characters)" \
    "$build/train" rep.ini run.name=e task.letters=5 train.init_from="$ck"

# stop_at_acc: the run ends at the second eval in a row at the target
"$build/train" rep.ini run.name=early train.stop_at_acc=0.9 > out.txt || fail "early stop: $(cat out.txt)"
grep -q "stopped early: val acc >= 0.9 at two evals in a row" out.txt || fail "early stop: $(tail -2 out.txt)"
last=$(tail -1 runs/early/eval.csv | cut -d, -f1)
((last < 800)) || fail "stop_at_acc did not stop before the end (step $last)"
tail -2 runs/early/eval.csv | awk -F, '$5 < 0.9 { exit 1 }' || fail "the last two evals are not at 0.9"
tail -3 runs/early/eval.csv | head -1 | awk -F, '$5 >= 0.9 { exit 1 }' || fail "it did not stop at the first two"
[ "$(readlink runs/early/ckpt/latest.safetensors)" = "$(printf 'step_%06d.safetensors' "$last")" ] ||
    fail "no checkpoint at the early stop"
[ -f "runs/early/attn/step_$(printf '%06d' "$last")/layer_0.png" ] || fail "no heatmaps at the early stop"

# kv, and its cross variant: the vocabulary, the records, a run that starts
write_kv_config kv.ini run.name=kv task.keys=4 task.pairs_max=3 task.queries=3 model.n_layer=1 \
    model.block_size=13 model.smear=none train.steps=20 train.warmup_steps=2 train.eval_every=10 \
    log.heatmap_every=10 log.roles_records=32
"$build/train" kv.ini > out.txt || fail "kv run: $(cat out.txt)"
grep -q "V16), task kv (records of up to 13 characters)" out.txt || fail "kv start: $(head -1 out.txt)"
"$build/train" kv.ini run.name=kvx task.cross=true > out.txt || fail "kv cross run: $(cat out.txt)"
grep -q "V20), task kv" out.txt || fail "kv cross vocabulary: $(head -1 out.txt)"
printf 'A1B2|a1b2a1\n' > kvx.txt
got=$("$build/qkscope-eval" runs/kvx/ckpt/latest.safetensors --records kvx.txt --json)
[[ $got == *'"tokens": 3, "windows": 1}' ]] || fail "kv cross eval --records: $got"
printf 'a1b2|a1b2a1\n' > kvlow.txt
expect_exit 2 "kvlow.txt:1: not a kv record: character 0: 'a' is not a key of the definitions (A..D)" \
    "$build/qkscope-eval" runs/kvx/ckpt/latest.safetensors --records kvlow.txt
"$build/qkscope-info" runs/kvx/ckpt/latest.safetensors | grep -q "(task kv, seed" || fail "info: task"
finish
