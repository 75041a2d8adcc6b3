#!/usr/bin/env bash
# The Q/K observatory end to end: qk.csv and the per-layer totals in
# metrics.csv, heatmap folders at step 0 / every heatmap_every / the end,
# attn/latest, filmstrips and qk_balance.png; a resumed run draws the same
# pictures and logs the same rows as an uninterrupted one; the probe command
# and its refusals.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

write_corpus corpus.txt 300 'row %d: the fox saw %d hens; the hens saw %d foxes.\n' 9 4
write_config o.ini run.seed=21 train.steps=25 train.log_every=25 \
    log.heatmap_every=10 log.checkpoint_every=10

"$build/train" o.ini > /dev/null
# qk.csv: header + one row per (step, layer, head)
[ "$(head -1 runs/a/qk.csv)" = '"step","layer","head","gq_norm","gk_norm","gv_norm","go_norm","wq_norm","wk_norm","uq_ratio","uk_ratio"' ] \
    || fail "qk.csv header: $(head -1 runs/a/qk.csv)"
[ "$(wc -l < runs/a/qk.csv)" -eq $((25 * 2 * 2 + 1)) ] || fail "qk.csv rows: $(wc -l < runs/a/qk.csv)"
[ "$(sed -n 2p runs/a/qk.csv | cut -d, -f1-3)" = "1,0,0" ] || fail "first qk row"
[ "$(tail -1 runs/a/qk.csv | cut -d, -f1-3)" = "25,1,1" ] || fail "last qk row"
head -1 runs/a/metrics.csv | grep -q '"gq_norm_L0","gk_norm_L0",.*"uk_ratio_L1"$' || fail "metrics.csv Q/K columns"
# per-layer total = sqrt(sum of the heads' squares), checked on step 7, layer 1
awk -F, 'NR > 1 && $1 == 7 && $2 == 1 { s += $4 * $4 } END { printf "%.6g\n", sqrt(s) }' runs/a/qk.csv > heads.txt
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "\"gq_norm_L1\"") c = i }
         NR > 1 && $1 == 7 { printf "%.6g\n", $c }' runs/a/metrics.csv > total.txt
cmp -s heads.txt total.txt || fail "layer total $(cat total.txt) != head norms $(cat heads.txt)"

for s in 000000 000010 000020 000025; do
    for l in 0 1; do [ -s "runs/a/attn/step_$s/layer_$l.png" ] || fail "attn/step_$s/layer_$l.png missing"; done
done
[ "$(ls runs/a/attn | grep -c '^step_')" -eq 4 ] || fail "heatmap steps: $(ls runs/a/attn)"
[ "$(readlink runs/a/attn/latest)" = step_000025 ] || fail "attn/latest -> $(readlink runs/a/attn/latest)"
for f in attn/filmstrip_L0.png attn/filmstrip_L1.png qk_balance.png; do
    [ -s "runs/a/$f" ] || fail "$f missing"
    [ "$(head -c 8 "runs/a/$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f is not a PNG"
done

# Interrupted at 15 and resumed: the same logs and pictures.
"$build/train" o.ini run.name=b train.stop_after=15 > /dev/null
"$build/train" o.ini run.name=b run.resume=true > /dev/null
cmp runs/a/qk.csv runs/b/qk.csv || fail "resumed qk.csv differs"
for f in qk_balance.png attn/filmstrip_L0.png attn/step_000025/layer_1.png; do
    cmp "runs/a/$f" "runs/b/$f" || fail "resumed $f differs"
done

# heatmap_every = 0: no pictures, the logs still there.
"$build/train" o.ini run.name=c log.heatmap_every=0 train.steps=5 > /dev/null
[ ! -e runs/c/attn ] && [ ! -e runs/c/qk_balance.png ] || fail "heatmap_every=0 drew pictures"
[ "$(wc -l < runs/c/qk.csv)" -eq 21 ] || fail "qk.csv without heatmaps"

# A probe text outside the vocabulary is bad input.
expect_exit 2 "\[log\] probe: character 'Z'" "$build/train" o.ini run.name=d log.probe=Zebra

# probe command
ck=runs/a/ckpt/latest.safetensors
"$build/qkscope-probe" "$ck" --text "row 12: the fox saw 3 hens;" --out pr > out.txt
head -1 out.txt | grep -q "^probe: 16 characters, loss [0-9.]*; wrote pr/" || fail "probe output: $(head -1 out.txt)"
[ "$(wc -l < out.txt)" -eq 6 ] || fail "probe table: $(cat out.txt)"
for l in 0 1; do [ -s "pr/layer_$l.png" ] || fail "probe layer_$l.png"; done
[ "$(wc -l < pr/probe_attn.csv)" -eq $((2 * 2 * 16 * 17 / 2 + 1)) ] || fail "probe_attn.csv rows"
[ "$(wc -l < pr/probe_grads.csv)" -eq 5 ] || fail "probe_grads.csv rows"
awk -F, 'NR > 1 { s[$1 "," $2 "," $3] += $5 } END { for (k in s) if (s[k] < 0.99999 || s[k] > 1.00001) { print k, s[k]; exit 1 } }' \
    pr/probe_attn.csv || fail "probe attention rows do not sum to 1"
"$build/qkscope-probe" "$ck" --file corpus.txt > /dev/null
[ -s runs/a/probe/probe_grads.csv ] || fail "probe default folder runs/a/probe"
expect_exit 2 "character 'Z' (U+005A)" "$build/qkscope-probe" "$ck" --text "Zoo"
expect_exit 2 "empty text" "$build/qkscope-probe" "$ck" --text ""
expect_exit 2 "one character" "$build/qkscope-probe" "$ck" --text "r"
expect_exit 2 "exactly one of --text and --file" "$build/qkscope-probe" "$ck"
echo "observe: all checks passed"
