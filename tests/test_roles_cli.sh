#!/usr/bin/env bash
# qkscope roles with the real binaries: on a checkpoint and on its gauge
# transform (W_Q -> A W_Q, W_K -> A^-T W_K) every figure agrees to 1e-6; the
# tables, --json and --out files; a tied model's swaps change no accuracy;
# the circuit of the plain kv model (configs/kv.ini); bad arguments are
# refused with exit 2 (corpus checkpoints: test_roles_lm.sh).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

write_kv_config kv.ini run.name=kv train.batch_size=16 train.steps=150 train.lr=3e-3 \
    log.swap_batches=0 log.roles_records=8
"$build/train" kv.ini > /dev/null
ck=runs/kv/ckpt/latest.safetensors
[ "$(grep -c '^150,' runs/kv/roles_eval.csv)" = 4 ] || fail "roles_eval.csv rows at step 150"

"$build/qkscope-roles" "$ck" --records 64 > tables.txt
for want in "roles: 64 records" "what the score reads" "what each side contains" "interventions" \
    "composition"; do
    grep -q "$want" tables.txt || fail "tables lack '$want': $(cat tables.txt)"
done
"$build/qkscope-gauge" "$ck" gauged.st --seed 5 > /dev/null
"$build/qkscope-roles" "$ck" --records 64 --json > a.json
"$build/qkscope-roles" gauged.st --records 64 --json > b.json
python3 - a.json b.json <<'PY' || fail "roles differ on the gauge transform"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert len(a["heads"]) == 4 and all("cf_k_prev" in h and "q_cur" in h for h in a["heads"])
worst = 0.0
def walk(x, y, where):
    global worst
    if isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x: walk(x[k], y[k], where + "." + k)
    elif isinstance(x, list):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)): walk(u, v, f"{where}[{i}]")
    elif isinstance(x, (int, float)):
        d = abs(x - y)
        if d > 1e-6: sys.exit(f"{where}: {x} vs {y}")
        worst = max(worst, d)
    else:
        assert x == y, where
walk(a, b, "")
print(f"gauge: largest difference {worst:g}")
PY

"$build/qkscope-roles" "$ck" --records 16 --out rl > /dev/null
[ "$(wc -l < rl/roles.csv)" = 5 ] || fail "roles.csv: $(cat rl/roles.csv)"
head -1 rl/roles.csv | grep -q '^layer,head,target_attn,prev_attn,cf_q_cur' || fail "roles.csv header"
[ "$(wc -l < rl/composition.csv)" = 5 ] || fail "composition.csv: $(cat rl/composition.csv)"
[ -s rl/roles.png ] && [ "$(head -c 4 rl/roles.png | tail -c 3)" = PNG ] || fail "no roles.png"

# tied: exchanging W_Q and W_K (one matrix) changes no accuracy
"$build/train" kv.ini run.name=tied model.qk=tied train.steps=20 > /dev/null
"$build/qkscope-roles" runs/tied/ckpt/latest.safetensors --records 16 --json > t.json
python3 - t.json <<'PY' || fail "tied swaps changed the accuracy"
import json, sys
r = json.load(open(sys.argv[1]))
assert all(h["swap_acc"] == r["accuracy"] for h in r["heads"]), r
PY

# The plain model of configs/kv.ini (seed 1): roles names the circuit. A
# previous-token head in layer 0 feeds the lookup heads of layer 1, whose
# score reads the query's token and the key's previous token; exchanging
# W_Q and W_K in layer 1 breaks the lookup, and so does ablating the
# previous-token heads.
"$build/train" "$QK_SOURCE/configs/kv.ini" run.out_dir=runs run.name=plain run.threads=1 \
    log.heatmap_every=0 log.swap_batches=0 > /dev/null
"$build/qkscope-roles" runs/plain/ckpt/latest.safetensors --json > plain.json
"$build/qkscope-roles" runs/plain/ckpt/latest.safetensors > plain.txt
grep -q "^circuit: lookup head L1 H" plain.txt || fail "no circuit line: $(cat plain.txt)"
grep -q "every previous-token head mean-ablated at once" plain.txt || fail "no ablation line"
python3 - plain.json <<'PY' || fail "the plain model's circuit: $(cat plain.txt)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["accuracy"] >= 0.99, r["accuracy"]
lk = r["lookup"]
assert lk["layer"] == 1, lk
h = next(h for h in r["heads"] if h["layer"] == lk["layer"] and h["head"] == lk["head"])
assert h["role"] == "lookup"
t = h["target_attn"]
assert h["cf_q_cur"] <= t / 4 and h["cf_k_prev"] <= t / 4, h
assert abs(h["cf_q_prev"] - t) <= 0.05 and abs(h["cf_k_cur"] - t) <= 0.05, h
prev = [h for h in r["heads"] if h["role"] == "prev-token"]
assert prev and all(p["layer"] == 0 and p["prev_attn_j"] >= 0.5 for p in prev), prev
assert all(p["ablate_acc"] is not None for p in r["heads"] if p["layer"] == 0)
assert r["layer_swap_acc"][1] <= 0.5, r["layer_swap_acc"]
assert r["layer_patch_q_pred"][1] >= 0.9, r["layer_patch_q_pred"]
assert r["prev_ablate_acc"] <= 0.5 and r["prev_ablate_target_attn"] <= t / 2, r
PY

# refusals
expect_exit 2 "--records '0': expected an integer from 1 to 1000000" "$build/qkscope-roles" "$ck" --records 0
expect_exit 2 "--seed .16777216.: expected an integer from 0 to 16777215" "$build/qkscope-roles" "$ck" --seed 16777216
expect_exit 2 "--segment and --dump-sequences apply to a corpus checkpoint; this one was trained on the kv task" \
    "$build/qkscope-roles" "$ck" --segment 4
expect_exit 2 "roles: 0 arguments given" "$build/qkscope-roles"
expect_exit 2 "nope.st" "$build/qkscope-roles" nope.st
echo "roles_cli: all checks passed"
