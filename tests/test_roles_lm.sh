#!/usr/bin/env bash
# qkscope roles on a corpus checkpoint with the real binaries: the tables,
# --json, --out and --dump-sequences; every head's prev_attn, induction_attn,
# duplicate_attn and sink_attn and both copies' losses against
# scripts/ref_roles_lm.py (float64 numpy, scripts/ref_model.py's forward),
# which also checks the sequences against the documented construction; the
# same bits on 1 and 2 threads; the refusals (a validation split shorter
# than a segment cannot come from a checkpoint, whose split holds
# block_size + 1: test_roles_lm.c covers it).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"
need_numpy

write_words_corpus corpus.txt 400 'the %s and the %s, number %d.\n' amber birch cedar dune elm fjord grove heath
write_config a.ini run.name=a run.threads=1 train.steps=300 train.eval_every=100 log.heatmap_every=0 \
    log.swap_batches=0
"$build/train" a.ini > /dev/null
ck=runs/a/ckpt/latest.safetensors

OMP_NUM_THREADS=2 "$build/qkscope-roles" "$ck" > tables.txt
for want in "roles on a language model: 64 sequences per set, each 8 characters followed by themselves" \
    "set val: validation segments" "set random: random strings" "in-context gain" \
    "what the score reads (112 cases)" "every head of a layer with W_Q and W_K exchanged" "composition"; do
    grep -qF "$want" tables.txt || fail "tables lack '$want': $(cat tables.txt)"
done
OMP_NUM_THREADS=2 "$build/qkscope-roles" "$ck" --json --dump-sequences seqs.json --out rl > c.json
OMP_NUM_THREADS=1 "$build/qkscope-roles" "$ck" --json > c1.json
cmp -s c.json c1.json || fail "roles differs between 1 and 2 threads: $(diff c.json c1.json | head -5)"
[ "$(wc -l < rl/roles_lm.csv)" = 9 ] || fail "roles_lm.csv: $(cat rl/roles_lm.csv)"
head -1 rl/roles_lm.csv | grep -q '^set,layer,head,prev_attn,induction_attn,duplicate_attn,sink_attn,top_attn' \
    || fail "roles_lm.csv header: $(head -1 rl/roles_lm.csv)"
[ -s rl/roles.png ] && [ "$(head -c 4 rl/roles.png | tail -c 3)" = PNG ] || fail "no roles.png"

"$py" "$QK_SOURCE/scripts/ref_roles_lm.py" "$ck" seqs.json --json > ref.json \
    || fail "ref_roles_lm.py failed (or the sequences are not the documented ones)"
"$py" - c.json ref.json <<'PY' || fail "roles vs ref_roles_lm.py"
import json, math, sys
c, r = (json.load(open(p)) for p in sys.argv[1:3])
assert c["records"] == 64 and c["segment"] == 8 and r["segment"] == 8, (c["segment"], r["segment"])
assert [s["name"] for s in c["sets"]] == [s["name"] for s in r["sets"]] == ["val", "random"]
worst = {}
for cs, rs in zip(c["sets"], r["sets"]):
    for f in ("loss_first", "loss_second"):
        assert abs(cs[f] - rs[f]) <= 1e-4, f"{cs['name']} {f}: roles {cs[f]}, reference {rs[f]}"
    assert len(cs["heads"]) == len(rs["heads"]) == 4
    for ch, rh in zip(cs["heads"], rs["heads"]):
        assert (ch["layer"], ch["head"]) == (rh["layer"], rh["head"])
        for f in ("prev_attn", "induction_attn", "duplicate_attn", "sink_attn"):
            d = abs(ch[f] - rh[f])
            assert d <= 1e-5, f"{cs['name']} L{ch['layer']} H{ch['head']} {f}: roles {ch[f]}, reference {rh[f]}"
            worst[f] = max(worst.get(f, 0), d)
        for f in ("top_attn", "cf_q_cur", "cf_q_prev", "cf_k_cur", "cf_k_prev", "cf_shift"):
            assert 0 <= ch[f] <= 1, f"{f} = {ch[f]}"
        assert ch["label"] in ("previous-token", "induction", "duplicate", "sink", "other")
        assert math.isfinite(ch["swap_dloss"])
    assert cs["cases"] == 16 * 7, cs["cases"]  # 16 sequences, S - 1 = 7 query positions each
print("largest differences from the reference: " + ", ".join(f"{k} {v:.2g}" for k, v in worst.items()))
PY

# refusals
refuse "--segment 9: two copies (18 characters) exceed block_size 16; at most 8" \
    "$build/qkscope-roles" "$ck" --segment 9
refuse "--segment '1': expected an integer from 2 to 1000000" "$build/qkscope-roles" "$ck" --segment 1
refuse "--seed picks a task's records; $ck was trained on a corpus (corpus.txt), whose sequences are fixed" \
    "$build/qkscope-roles" "$ck" --seed 3
# three characters: every validation segment of 8 holds them all, and the
# counterfactuals need one it lacks; a segment of 2 always leaves one
write_corpus small.txt 300 'abba\n'
write_config s.ini run.name=s data.path=small.txt train.steps=2 train.warmup_steps=1 log.heatmap_every=0 \
    log.swap_batches=0
"$build/train" s.ini > /dev/null
refuse "sequence 0 of the val set holds all 3 tokens of the vocabulary, and the counterfactuals replace a token by one the sequence lacks: a segment of at most 2 (V - 1) always leaves one (this one is 8)" \
    "$build/qkscope-roles" runs/s/ckpt/latest.safetensors
check "roles on three characters with --segment 2" "$build/qkscope-roles" runs/s/ckpt/latest.safetensors --segment 2
finish
