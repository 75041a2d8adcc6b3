#!/usr/bin/env bash
# The HTML report end to end: two tiny runs trained with the real trainer
# (untied and tied qk), the report of one and the side-by-side page of both,
# relative links, a run in progress and malformed input, then both pages in
# headless Chromium driven by playwright-core (tests/report_check.js: console
# errors and failed loads, chart series and points against the CSVs, the
# attention viewer's controls, the compare command, links, a screenshot that
# is not blank), a corpus run's induction charts and Formation panel (its
# roles_eval.csv: repeated validation segments) and a kv run's Formation
# panel, each with formation.svg and formation.csv. Without chromium, node (20 or newer) or the node modules
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
# characters), the roles log at its default; run b: tied qk, the default
# probe and no roles log
"$build/train" r.ini 'log.probe=the fox saw 3 hens' > /dev/null
"$build/train" r.ini run.name=b model.qk=tied log.roles_records=0 > /dev/null

# svg_check FILE SERIES: formation.svg well-formed, an svg root on a white
# background with SERIES lines, nothing it would fetch (no stylesheet, image
# or link)
svg_check() {
    if command -v xmllint > /dev/null; then
        xmllint --noout "$1" || fail "$1 is not well-formed XML"
    fi
    python3 - "$1" "$2" << 'PY' || fail "$1: $(head -c 400 "$1")"
import sys
import xml.etree.ElementTree as ET

ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == ns + "svg", root.tag
assert float(root.get("width")) > 0 and float(root.get("height")) > 0, root.attrib
assert root[0].tag == ns + "rect" and root[0].get("fill") == "#ffffff", root[0].attrib
assert len(list(root.iter(ns + "polyline"))) == int(sys.argv[2]), "series"
for e in root.iter():
    assert e.tag not in (ns + "style", ns + "image", ns + "a"), e.tag
    assert not any(k.endswith("href") for k in e.attrib), e.attrib
PY
}

# -- one run
report runs/a > out.txt
grep -qx "qkscope: wrote runs/a/index.html" out.txt || fail "report output: $(cat out.txt)"
[ -s runs/a/index.html ] || fail "no index.html"
grep -q 'src="attn/step_000040/layer_0.png"' runs/a/index.html || fail "index.html lacks the newest heatmap by relative path"
grep -q 'href="ckpt/step_000020.safetensors"' runs/a/index.html || fail "index.html lacks the checkpoint links"
grep -q 'href="attn/filmstrip_L1.png"' runs/a/index.html || fail "index.html lacks the filmstrip link"
grep -q "$tmp" runs/a/index.html && fail "index.html holds an absolute path"
# run b logs no roles: no Formation panel, no files
grep -q 'id="formation"' runs/b/index.html && fail "a corpus run without roles_eval.csv has a Formation panel"
for f in formation.svg formation.csv; do [ ! -e "runs/b/$f" ] || fail "run b (no roles log) got $f"; done
# run a: the corpus Formation panel (5 evals) and its files, the events
# gain, prev_attn, induction_attn
grep -q 'id="formation"' runs/a/index.html || fail "a corpus run with roles_eval.csv lacks Formation"
[ "$(head -1 runs/a/roles_eval.csv)" = \
    '"step","layer","head","prev_attn","induction_attn","duplicate_attn","sink_attn","loss_first","loss_second"' ] ||
    fail "corpus roles_eval.csv header: $(head -1 runs/a/roles_eval.csv)"
svg_check runs/a/formation.svg 4
[ "$(tail -n +2 runs/a/formation.csv | cut -d, -f1 | tr '\n' ' ')" = '"gain" "prev_attn" "induction_attn" ' ] ||
    fail "corpus formation.csv events: $(cat runs/a/formation.csv)"
if [ -n "$(awk -F, 'NR == 2 { print $2 }' runs/a/formation.csv)" ]; then
    grep -q '>gain: step [0-9]' runs/a/formation.svg || fail "formation.svg without the gain's label"
fi
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
head -c -5 runs/a/roles_eval.csv > partial/roles_eval.csv
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

# -- Formation: a kv run that learns within its few hundred steps (smeared
# keys), with an eval every 25 steps
write_kv_config k.ini run.name=k train.steps=300 train.eval_every=25 log.heatmap_every=100 \
    log.roles_records=16
"$build/train" k.ini > /dev/null
for f in formation.svg formation.csv; do [ -s "runs/k/$f" ] || fail "no runs/k/$f"; done
svg_check runs/k/formation.svg 7
grep -q '>jump: step [0-9]' runs/k/formation.svg || fail "formation.svg without the jump's label"
# formation.csv: the five events in order, each at an eval step (or none)
[ "$(head -1 runs/k/formation.csv)" = '"event","step","value_first","value_last","head"' ] ||
    fail "formation.csv header: $(head -1 runs/k/formation.csv)"
[ "$(tail -n +2 runs/k/formation.csv | cut -d, -f1 | tr '\n' ' ')" = \
    '"jump" "prev_attn_j" "target_attn" "cf_q_cur" "cf_k_prev" ' ] ||
    fail "formation.csv events: $(cat runs/k/formation.csv)"
jump=$(awk -F, 'NR > 1 && $1 == "\"jump\"" { print $2 }' runs/k/formation.csv)
[[ $jump =~ ^[0-9]+$ ]] && ((jump > 0)) || fail "formation.csv: jump step '$jump'"
awk -F, 'NR == FNR { if (FNR > 1) evals[$1] = 1; next }
    FNR > 1 && $2 != "\"\"" && !($2 in evals) { print; bad = 1 } END { exit bad }' \
    runs/k/eval.csv runs/k/formation.csv > off.txt || fail "formation.csv steps that are no eval's: $(cat off.txt)"
node "$check" --chromium "$chromium" --shot k.png runs/k/index.html runs/k > k.json ||
    fail "the kv run's page (Formation) in the browser"
report runs/t runs/k > /dev/null
node "$check" --chromium "$chromium" --shot tk.png runs/t/compare_k.html runs/t runs/k > tk.json ||
    fail "two task runs' Formation panels side by side in the browser"
# too few evals (two: a run just started): no panel, no files, no error.
# few RUN COPY STEP: RUN's evals up to STEP (its second eval) in COPY.
few() {
    cp -r "$1" "$2"
    rm "$2/formation.svg" "$2/formation.csv"
    for f in eval.csv roles_eval.csv; do awk -F, -v s="$3" 'NR == 1 || $1 <= s' "$1/$f" > "$2/$f"; done
    report "$2" > /dev/null || fail "report of $1 cut to two evals"
    grep -q 'id="formation"' "$2/index.html" && fail "a Formation panel from two evals of $1"
    for f in formation.svg formation.csv; do [ ! -e "$2/$f" ] || fail "$f from two evals of $1"; done
}
few runs/k few 25
few runs/a few_lm 10
echo "run a: $(cat a.json)"
echo "pair: $(cat ab.json)"
echo "kv run: $(cat k.json)"
echo "ok"
