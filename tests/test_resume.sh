#!/usr/bin/env bash
# Checkpoints end to end with the real binaries: periodic saves and pruning,
# stop_after + resume bit-identical to an uninterrupted run (with a torn log
# row to trim), refusals (shape change, nothing to resume), init_from, and the
# eval, sample and info commands.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

write_corpus corpus.txt 300 'line %d: a cat sat on mat %d; dogs ran %d laps.\n' 7 5
write_config r.ini run.seed=9 train.steps=40 train.eval_every=15 train.log_every=20 \
    log.checkpoint_every=10 log.keep_checkpoints=2

"$build/train" r.ini > /dev/null
[ "$(cd runs/a/ckpt && ls)" = "latest.safetensors
step_000020.safetensors
step_000030.safetensors
step_000040.safetensors" ] || fail "kept checkpoints: $(ls runs/a/ckpt | tr '\n' ' ')"
[ "$(readlink runs/a/ckpt/latest.safetensors)" = step_000040.safetensors ] || fail "latest link"

# Interrupted at 25, a torn row left behind, then resumed to 40.
"$build/train" r.ini run.name=b train.stop_after=25 > out.txt
grep -q "stopped after step 25 of 40" out.txt || fail "stop_after message: $(cat out.txt)"
[ "$(readlink runs/b/ckpt/latest.safetensors)" = step_000025.safetensors ] || fail "stop_after checkpoint"
[ "$(tail -1 runs/b/metrics.csv | cut -d, -f1)" = 25 ] || fail "metrics.csv should end at step 25"
head -2 runs/b/metrics.csv | tail -1 | sed 's/^1,/26,/' >> runs/b/metrics.csv  # a row past the checkpoint
printf '27,0.0001,2.5' >> runs/b/metrics.csv                                     # and a torn one
"$build/train" r.ini run.name=b run.resume=true > out.txt
grep -q "resuming at step 25" out.txt || fail "resume message: $(cat out.txt)"
cmp <(untimed runs/a/metrics.csv) <(untimed runs/b/metrics.csv) || fail "resumed metrics.csv differs"
cmp runs/a/eval.csv runs/b/eval.csv || fail "resumed eval.csv differs"
cmp <(tensors runs/a/ckpt/step_000040.safetensors) <(tensors runs/b/ckpt/step_000040.safetensors) \
    || fail "resumed final weights differ"

# Refusals: a model shape change, no checkpoint to resume.
expect_exit 2 "n_embd is 16 in the checkpoint, 32 in the config" \
    "$build/train" r.ini run.name=b run.resume=true model.n_embd=32 model.n_head=2
expect_exit 2 "no checkpoint to resume from" "$build/train" r.ini run.name=none run.resume=true

# init_from: the weights, a fresh optimizer at step 0.
"$build/train" r.ini run.name=c train.init_from=runs/a/ckpt/step_000040.safetensors train.steps=15 > /dev/null
[ "$(sed -n 2p runs/c/eval.csv | cut -d, -f1)" = 0 ] || fail "init_from run starts at step 0"
a40=$("$build/qkscope-eval" runs/a/ckpt/step_000040.safetensors --json)
c0=$(sed -n 2p runs/c/eval.csv | cut -d, -f3)
case "$a40" in *"\"loss\": $c0,"*) ;; *) fail "init_from step-0 val loss $c0 vs checkpoint eval $a40" ;; esac
expect_exit 2 "differs" "$build/train" r.ini run.name=d train.init_from=runs/a/ckpt/step_000040.safetensors model.n_layer=3

# eval reproduces the run's own last val loss exactly.
last_val=$(tail -1 runs/a/eval.csv | cut -d, -f3)
last_acc=$(tail -1 runs/a/eval.csv | cut -d, -f5)
[ "$a40" = "{\"loss\": $last_val, \"acc\": $last_acc, \"tokens\": 128, \"windows\": 8}" ] ||
    fail "eval: $a40 vs eval.csv $last_val, $last_acc"
head -c 170 corpus.txt > part.txt  # 170 chars: windows while k*16+16 < 170 -> k = 0..9
out=$("$build/qkscope-eval" runs/a/ckpt/latest.safetensors --data part.txt --json)
case "$out" in *'"tokens": 160, "windows": 10}') ;; *) fail "eval --data windows: $out" ;; esac
printf 'aaa QQQ' > alien.txt
expect_exit 2 "alien.txt: character 'Q' (U+0051) at character 4 is not in the vocabulary" \
    "$build/qkscope-eval" runs/a/ckpt/latest.safetensors --data alien.txt
expect_exit 2 "nope.safetensors" "$build/qkscope-eval" nope.safetensors

# sample: deterministic per seed, prompt checked against the vocabulary.
s1=$("$build/qkscope-sample" runs/a/ckpt/latest.safetensors --prompt "line " --tokens 60 --seed 3)
s2=$("$build/qkscope-sample" runs/a/ckpt/latest.safetensors --prompt "line " --tokens 60 --seed 3)
s3=$("$build/qkscope-sample" runs/a/ckpt/latest.safetensors --prompt "line " --tokens 60 --seed 4)
[ "$s1" = "$s2" ] || fail "same seed, different text"
[ "$s1" != "$s3" ] || fail "different seeds, same text"
[ "${s1:0:5}" = "line " ] && [ "${#s1}" -eq 65 ] || fail "sample length/prompt: '$s1'"
expect_exit 2 "--prompt: character 'Q' (U+0051) at character 0" \
    "$build/qkscope-sample" runs/a/ckpt/latest.safetensors --prompt "Q"
expect_exit 2 "--tokens 'many': expected an integer" \
    "$build/qkscope-sample" runs/a/ckpt/latest.safetensors --tokens many
expect_exit 2 "--temperature: missing value" \
    "$build/qkscope-sample" runs/a/ckpt/latest.safetensors --temperature

# info
"$build/qkscope-info" runs/b/ckpt/latest.safetensors > info.txt
grep -q "^step        40 of 40 (with AdamW state: resumable)" info.txt || fail "info: $(cat info.txt)"
grep -q "^last eval   step 40: " info.txt || fail "info eval: $(cat info.txt)"
echo "resume: all checks passed"
