#!/usr/bin/env bash
# The HTML report end to end: two tiny runs trained with the real trainer
# (untied and tied qk), the report of one and the side-by-side page of both,
# relative links, a run in progress and malformed input, then both pages in
# headless Chromium driven by playwright-core (tests/report_check.js: console
# errors and failed loads, chart series and points against the CSVs, the
# attention viewer's controls, the compare command, links, a screenshot that
# is not blank). Without chromium, node (20 or newer) or the node modules
# (`npm ci`, run by scripts/test) the test is skipped (exit 77): it never
# passes without a browser.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"
chromium=$(command -v chromium || true)
if [ -z "$chromium" ]; then echo "SKIP: no chromium (apt-get install chromium)"; exit 77; fi
if ! command -v node > /dev/null; then echo "SKIP: no node (apt-get install nodejs)"; exit 77; fi
# 20: the oldest node playwright-core supports (its engines field)
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    echo "SKIP: node $(node --version) is older than playwright-core needs (20)"; exit 77
fi
if [ ! -f "$QK_SOURCE/node_modules/playwright-core/package.json" ]; then
    echo "SKIP: no node_modules/playwright-core (scripts/test runs npm ci; or run it in $QK_SOURCE)"
    exit 77
fi
report() { "$build/qkscope-report" "$@"; }

write_corpus corpus.txt 300 'row %d: the fox saw %d hens; the hens saw %d foxes.\n' 9 4
write_config r.ini run.seed=21 train.steps=40 train.log_every=40 \
    log.heatmap_every=10 log.checkpoint_every=20
# run a: a probe longer than block_size (the page shows its first 16
# characters); run b: tied qk and the default probe
"$build/train" r.ini 'log.probe=the fox saw 3 hens' > /dev/null
"$build/train" r.ini run.name=b model.qk=tied > /dev/null

# -- one run
report runs/a > out.txt
grep -qx "qkscope: wrote runs/a/index.html" out.txt || fail "report output: $(cat out.txt)"
[ -s runs/a/index.html ] || fail "no index.html"
grep -q 'src="attn/step_000040/layer_0.png"' runs/a/index.html || fail "index.html lacks the newest heatmap by relative path"
grep -q 'href="ckpt/step_000020.safetensors"' runs/a/index.html || fail "index.html lacks the checkpoint links"
grep -q 'href="attn/filmstrip_L1.png"' runs/a/index.html || fail "index.html lacks the filmstrip link"
grep -q "$tmp" runs/a/index.html && fail "index.html holds an absolute path"
ls runs/a | grep -q tmp && fail "a temp file was left: $(ls runs/a)"
# elsewhere: links lead back to the run folder
mkdir pages
report runs/a --out pages/a.html > /dev/null
grep -q 'src="../runs/a/attn/step_000040/layer_0.png"' pages/a.html || fail "--out page: heatmap path"
grep -q 'href="../runs/a/ckpt/latest.safetensors"' pages/a.html || fail "--out page: checkpoint path"

# -- two runs side by side
report runs/a runs/b > out.txt
grep -qx "qkscope: wrote runs/a/compare_b.html" out.txt || fail "pair output: $(cat out.txt)"
grep -q 'src="../b/attn/step_000040/layer_0.png"' runs/a/compare_b.html || fail "pair page: run b's heatmap path"

# -- a run in progress: a torn last row, no qk_eval.csv, attn/ or ckpt/
cp -r runs/a partial
rm -r partial/qk_eval.csv partial/attn partial/ckpt
head -c -7 runs/a/qk.csv > partial/qk.csv
printf '"step","train_loss","val_loss","train_acc","val_acc"\n0,3.2,3.3,0.1,0.1\n10,3.1' > partial/eval.csv
report partial > /dev/null || fail "report of a run in progress"
grep -q "No heatmaps yet" partial/index.html || fail "partial: no note on the missing heatmaps"
head -c 9 runs/a/metrics.csv > partial/metrics.csv # half a header
: > partial/qk.csv
report partial > /dev/null || fail "report with an empty qk.csv and half a header"

# -- malformed input: refused with the file named, exit 2
cp -r runs/a bad
printf '"step","train_loss","val_loss","train_acc","val_acc"\n0,3.2,abc,0.1,0.1\n' > bad/eval.csv
expect_exit 2 "bad/eval.csv: row 2, column 'val_loss': 'abc' is not a number" report bad
cp runs/a/eval.csv bad/eval.csv
sed -i '5s/$/,1/' bad/qk.csv
expect_exit 2 "bad/qk.csv: row 5 has more than the header's 11 fields" report bad
cp runs/a/qk.csv bad/qk.csv
sed -i '1s/"loss"/"los"/' bad/metrics.csv
expect_exit 2 "bad/metrics.csv: no column 'loss'" report bad
head -c 30000 /dev/urandom > bad/metrics.csv
expect_exit 2 "bad/metrics.csv" report bad
rm bad/config.ini
expect_exit 2 "bad: not a run folder" report bad
expect_exit 2 "report: unexpected argument 'runs/a' (see qkscope report --help)" report runs/a runs/b runs/a
expect_exit 2 "pages/none: cannot open folder" report runs/a --out pages/none/x.html

# -- in the browser
check="$QK_SOURCE/tests/report_check.js"
node "$check" --chromium "$chromium" --shot a.png --probe '0=the fox saw 3 he' \
    runs/a/index.html runs/a > a.json || fail "run a's page in the browser"
# run b's default probe is checked when the trainer records it (attn/probe.txt)
node "$check" --chromium "$chromium" --shot ab.png --probe '0=the fox saw 3 he' \
    runs/a/compare_b.html runs/a runs/b > ab.json || fail "the pair page in the browser"
node "$check" --chromium "$chromium" --shot p.png --probe '0=the fox saw 3 he' \
    pages/a.html runs/a > p.json || fail "the --out page in the browser"
# a task run: the accuracy chart and the roles panels of roles_eval.csv
write_kv_config t.ini run.name=t task.keys=4 task.pairs_max=3 task.queries=3 model.block_size=13 \
    train.steps=20 train.warmup_steps=2 train.eval_every=10 log.heatmap_every=10 log.roles_records=8
"$build/train" t.ini > /dev/null
[ "$(grep -c '^20,' runs/t/roles_eval.csv)" = 4 ] || fail "roles_eval.csv at step 20: $(cat runs/t/roles_eval.csv)"
node "$check" --chromium "$chromium" --shot t.png runs/t/index.html runs/t > t.json ||
    fail "the task run's page in the browser"
echo "run a: $(cat a.json)"
echo "pair: $(cat ab.json)"
echo "ok"
