#!/usr/bin/env bash
# The Q/K analysis end to end: qk_eval.csv at every eval; tied qk gives swap
# delta 0 everywhere; symmetric init starts at symmetry 1; the gauge command
# keeps the loss, s, d and swap deltas while the norms and Q/K gradient norms
# change; compare of a checkpoint with itself; compare across shapes.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

write_corpus corpus.txt 300 'item %d: red %d blue %d; green %d.\n' 6 11 5
write_config q.ini run.seed=4 log.heatmap_every=0
"$build/train" q.ini > /dev/null
[ "$(head -1 runs/a/qk_eval.csv)" = '"step","layer","head","symmetry","directionality","balance","overlap_mean","overlap_max","swap_delta","entropy","prev_token"' ] \
    || fail "qk_eval.csv header"
[ "$(wc -l < runs/a/qk_eval.csv)" -eq $((4 * 5 + 1)) ] || fail "qk_eval.csv: 4 evals x (4 heads + all) rows"
awk -F, 'NR > 1 && $2 >= 0 { if ($4 < -1 || $4 > 1 || $10 < 0 || $10 > 1 || $11 < 0 || $11 > 1) exit 1 }' \
    runs/a/qk_eval.csv || fail "qk_eval.csv values out of range"

# tied: M_h symmetric by construction -> symmetry 1 and swap delta exactly 0
"$build/train" q.ini run.name=t model.qk=tied > /dev/null
awk -F, 'NR > 1 { if ($9 != 0) exit 1; if ($2 >= 0 && ($4 < 0.999999 || $4 > 1.000001)) exit 1 }' runs/t/qk_eval.csv \
    || fail "tied qk: swap delta must be 0 and symmetry 1: $(sed -n 2,3p runs/t/qk_eval.csv)"

# symmetric init: symmetry exactly 1 at step 0, then it decays
"$build/train" q.ini run.name=s model.qk_init=symmetric > /dev/null
awk -F, 'NR > 1 && $1 == 0 && $2 >= 0 { if ($4 < 0.999999) exit 1 }' runs/s/qk_eval.csv || fail "symmetric init: s(0) = 1"
awk -F, 'NR > 1 && $1 == 30 && $2 >= 0 { if ($4 > 0.999) n++ } END { exit n == 4 }' runs/s/qk_eval.csv \
    || fail "symmetric init: symmetry did not move in 30 steps"

# gauge: same loss; same s, d and swap deltas; other norms and Q/K gradient norms
ck=runs/a/ckpt/latest.safetensors
"$build/qkscope-gauge" "$ck" g.safetensors --seed 7 > /dev/null
l0=$("$build/qkscope-eval" "$ck" --json | sed 's/.*"loss": \([^,]*\),.*/\1/')
l1=$("$build/qkscope-eval" g.safetensors --json | sed 's/.*"loss": \([^,]*\),.*/\1/')
awk -v a="$l0" -v b="$l1" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * a) }' || fail "gauge changed the loss: $l0 vs $l1"
text="item 12: red 0 blue 1; green 2."
"$build/qkscope-probe" "$ck" --text "$text" --out p0 > /dev/null
"$build/qkscope-probe" g.safetensors --text "$text" --out p1 > /dev/null
paste -d, p0/probe_grads.csv p1/probe_grads.csv | awk -F, 'NR > 1 {
        for (k = 3; k <= 4; k++) { r = $(k) / $(k + 5); if (r > 1.01 || r < 0.99) changed++ } }
        END { exit !(changed >= 6) }' || fail "gauge left the Q/K gradient norms unchanged"
paste -d, p0/probe_attn.csv p1/probe_attn.csv | awk -F, 'NR > 1 { d = $5 - $10; if (d < 0) d = -d; if (d > 1e-5) exit 1 }' \
    || fail "gauge changed the attention"
"$build/qkscope-compare" "$ck" g.safetensors --out cg > cg.txt
awk -F, 'NR > 1 {
        if ($3 < 0.99999) exit 1                                   # M_h cosine
        if ($4 < 0.01 && $5 < 0.01) exit 1                         # W_Q, W_K moved
        if ($6 - $7 > 1e-4 || $7 - $6 > 1e-4) exit 1               # symmetry
        if ($8 - $9 > 1e-3 || $9 - $8 > 1e-3) exit 1               # directionality
        if ($10 > 1e-9) exit 1                                     # attention JS
        if ($11 - $12 > 1e-4 || $12 - $11 > 1e-4) exit 1           # swap delta
    }' cg/compare.csv || fail "gauge compare: $(cat cg/compare.csv)"

# compare with itself: cosine 1, JS 0, relative change 0; pictures per layer
"$build/qkscope-compare" "$ck" "$ck" --out cs > /dev/null
awk -F, 'NR > 1 { if ($3 < 0.9999999 || $4 != 0 || $5 != 0 || $10 != 0 || $11 != $12) exit 1 }' cs/compare.csv \
    || fail "self compare: $(sed -n 2p cs/compare.csv)"
[ "$(wc -l < cs/compare.csv)" -eq 5 ] && [ -s cs/compare_L0.png ] && [ -s cs/compare_L1.png ] || fail "compare outputs"

# different shapes: losses and per-head summaries, and a plain statement
"$build/train" q.ini run.name=w model.n_embd=24 model.n_head=3 train.steps=10 > /dev/null
"$build/qkscope-compare" "$ck" runs/w/ckpt/latest.safetensors --out cw > cw.txt
grep -q "cannot compare heads: shapes differ" cw.txt || fail "shape mismatch message: $(cat cw.txt)"
[ "$(grep -c '^B L' cw.txt)" -eq 6 ] || fail "per-head summaries of B"

echo "qk_analysis: all checks passed"
