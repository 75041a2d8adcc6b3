#!/usr/bin/env bash
# qkscope-probe against scripts/ref_model.py --probe-text, an independent
# float64 numpy forward and hand-written backward: on tiny runs of the real
# trainer (qk untied, qk tied, qk tied with biases and an untied LM head), the
# same loss, every causal attention weight and every per-head norm of dL/dW_Q,
# dL/dW_K (tied: the query and key paths of the one matrix) and dL/dW_V.
# ref_model.py --self-check first checks that backward against central finite
# differences on small random models.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"
need_numpy
ref_model="$QK_SOURCE/scripts/ref_model.py"
probe="$build/qkscope-probe"

"$py" "$ref_model" --self-check || fail "ref_model.py's backward disagrees with finite differences"

# Multi-byte characters: the probe text is cut at block_size + 1 code points.
write_words_corpus corpus.txt 300 'the %s and the %s, number %d.\n' café naïve über déjà fjord grove heath inlet → ½
# 33 characters, é and ï among the first 17 (T = block_size = 16)
text='the café and the naïve, number 1.'

train() { # name, then model.key=value overrides
    local name=$1; shift
    write_config "$name.ini" run.name="$name" run.out_dir="$tmp/runs" run.seed=5 train.eval_every=30 "$@"
    "$build/train" "$name.ini" > "$name.log" 2>&1 \
        || { cat "$name.log" >&2; fail "training $name failed"; }
    [ -s "runs/$name/ckpt/latest.safetensors" ] \
        || fail "the trainer wrote no runs/$name/ckpt/latest.safetensors"
}

variants=(untied tied tied_bias)
train untied model.qk=untied
train tied model.qk=tied
train tied_bias model.qk=tied model.bias=true model.tie_embeddings=false

for name in "${variants[@]}"; do
    ck=runs/$name/ckpt/latest.safetensors
    "$py" "$ref_model" "$ck" --probe-text "$text" --json > "ref_$name.json" \
        || fail "ref_model.py --probe-text failed on $name"
done
if [ ! -x "$probe" ]; then
    echo "SKIP: $probe is not built (ref_model.py --self-check and --probe-text ran)"
    exit 77
fi

for name in "${variants[@]}"; do
    ck=runs/$name/ckpt/latest.safetensors
    "$probe" "$ck" --text "$text" --out "probe_$name" > "probe_$name.log" 2>&1 \
        || { cat "probe_$name.log" >&2; fail "qkscope-probe failed on $name"; }
    "$py" - "$name" "ref_$name.json" "probe_$name.log" "probe_$name" <<'PY' \
        || fail "qkscope-probe vs ref_model.py on $name"
import csv, json, os, re, sys
name, ref_path, log_path, out = sys.argv[1:]
ref = json.load(open(ref_path))
L, NH, T = 2, 2, ref["T"]
assert T == 16, f"ref_model.py: T = {T}, expected 16 (block_size)"

first = open(log_path, encoding="utf-8").readline().rstrip("\n")
m = re.fullmatch(r"probe: (\d+) characters, loss ([-+0-9.eE]+); wrote (.+)", first)
assert m, f"first stdout line {first!r} is not 'probe: T characters, loss L; wrote DIR/'"
assert int(m[1]) == T, f"probe says {m[1]} characters, expected T = {T}"
assert m[3].endswith("/") and os.path.samefile(m[3], out), f"probe wrote {m[3]!r}, expected {out}/"
loss_diff = abs(float(m[2]) - ref["loss"])
assert loss_diff <= 5e-5 + 1e-5 * abs(ref["loss"]), \
    f"loss: probe {m[2]}, ref_model.py {ref['loss']:.9g}"

def read(fname, header):
    with open(os.path.join(out, fname), newline="") as f:
        line = f.readline().rstrip("\r\n")
        assert line == header, f"{fname}: header {line!r}, expected {header!r}"
        f.seek(0)
        return list(csv.DictReader(f))

attn = read("probe_attn.csv", '"layer","head","query","key","weight"')
grads = read("probe_grads.csv", '"layer","head","gq_norm","gk_norm","gv_norm"')
n_attn = L * NH * T * (T + 1) // 2
assert len(attn) == len(ref["attn"]) == n_attn, \
    f"probe_attn.csv: {len(attn)} rows, ref_model.py {len(ref['attn'])}, expected {n_attn}"
assert len(grads) == len(ref["grads"]) == L * NH, \
    f"probe_grads.csv: {len(grads)} rows, ref_model.py {len(ref['grads'])}, expected {L * NH}"

want = {tuple(r[:4]): r[4] for r in ref["attn"]}
got = {}
for r in attn:
    key = tuple(int(r[c]) for c in ("layer", "head", "query", "key"))
    assert key not in got, f"probe_attn.csv: {key} twice"
    got[key] = float(r["weight"])
assert got.keys() == want.keys(), \
    f"probe_attn.csv (layer, head, query, key) differ: {sorted(got.keys() ^ want.keys())[:5]}"
attn_diff = max(abs(got[k] - want[k]) for k in want)
worst = max(want, key=lambda k: abs(got[k] - want[k]))
assert attn_diff <= 1e-5, f"attention {worst}: probe {got[worst]}, ref_model.py {want[worst]}"

want = {tuple(r[:2]): r[2:] for r in ref["grads"]}
got = {(int(r["layer"]), int(r["head"])): [float(r[c]) for c in ("gq_norm", "gk_norm", "gv_norm")]
       for r in grads}
assert got.keys() == want.keys(), f"probe_grads.csv (layer, head) differ: {sorted(got)}"
grad_rel = 0.0
for k, w in want.items():
    for col, g, r in zip(("gq_norm", "gk_norm", "gv_norm"), got[k], w):
        assert abs(g - r) <= 1e-4 * abs(r) + 1e-7, \
            f"{col} of layer {k[0]} head {k[1]}: probe {g}, ref_model.py {r}"
        grad_rel = max(grad_rel, abs(g - r) / abs(r) if r else abs(g))
print(f"{name}: loss {ref['loss']:.6f} (|diff| {loss_diff:.2g}), max attention |diff| "
      f"{attn_diff:.2g} over {n_attn} weights, max grad-norm relative diff {grad_rel:.2g}")
PY
done
echo "ok"
