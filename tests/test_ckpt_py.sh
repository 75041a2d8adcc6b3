#!/usr/bin/env bash
# The Python tools against the C code, on a tiny run of the real trainer over
# a corpus written here: scripts/ckpt.py reads the checkpoint the trainer
# wrote (names, shapes, metadata), and scripts/ref_model.py, an independent
# float64 numpy model, gives the same loss as qkscope-eval. The checksums:
# ckpt.py (Python's zlib.crc32) verifies what the C writer wrote, writes the
# file back byte for byte, refuses a flipped bit with the C reader's own
# message, and writes a file without checksums that qkscope still loads,
# as unverified.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"
need_numpy
scripts="$QK_SOURCE/scripts"

# Multi-byte characters and \r\n line ends: both readers must count
# characters the way the C corpus reader does.
write_words_corpus corpus.txt 300 'the %s and the %s, number %d.\r\n' café naïve über déjà fjord grove heath inlet → ½

# bias and an untied head exercise every optional tensor but attn.k's absence
write_config cfg.ini run.name=py run.out_dir="$tmp/runs" run.seed=3 model.bias=true model.tie_embeddings=false \
    train.eval_every=30
"$build/train" cfg.ini > train.log 2>&1 || { cat train.log >&2; fail "training failed"; }
ck=runs/py/ckpt/latest.safetensors
[ -s "$ck" ] || fail "the trainer wrote no $ck"

# ---- ckpt.py: metadata and the tensor table
out=$("$py" "$scripts/ckpt.py" "$ck" --tensors) || fail "ckpt.py failed on $ck"
V=$("$py" -c 'import sys; print(len(set(open(sys.argv[1], encoding="utf-8", newline="").read())))' \
    corpus.txt)
expect_line() { grep -qxF -- "$1" <<<"$out" || fail "ckpt.py output lacks the line '$1':
$out"; }
expect_line "format      qkscope/1"
grep -q '^step        30 (batch rng [0-9a-f]\{16\},[0-9a-f]\{16\},[0-9a-f]\{16\},[0-9a-f]\{16\})$' \
    <<<"$out" || fail "step line: $out"
expect_line "model       n_layer=2 n_head=2 n_embd=16 block_size=16 bias=true tie_embeddings=false qk=untied"
expect_line "vocab       $V characters"

want=(wte.weight wpe.weight)
for l in 0 1; do
    for t in ln1.weight ln1.bias attn.q.weight attn.q.bias attn.k.weight attn.k.bias \
             attn.v.weight attn.v.bias attn.o.weight attn.o.bias ln2.weight ln2.bias \
             mlp.fc.weight mlp.fc.bias mlp.proj.weight mlp.proj.bias; do
        want+=("blocks.$l.$t")
    done
done
want+=(ln_f.weight ln_f.bias lm_head.weight)
got=$(awk 'started && NF { print $1 } /^name / { started = 1 }' <<<"$out")
params=$(grep -v '^optim\.' <<<"$got" || true)
[ "$params" = "$(printf '%s\n' "${want[@]}")" ] || fail "tensor names differ:
$params"
if grep -q '^optim\.' <<<"$got"; then
    [ "$(grep '^optim\.' <<<"$got")" = "$(printf 'optim.m.%s\n' "${want[@]}"; \
        printf 'optim.v.%s\n' "${want[@]}")" ] || fail "optimizer tensor names differ"
fi
grep -q "^wte.weight  *\[$V, 16\]  *F32 " <<<"$out" || fail "wte.weight row: $out"
grep -q "^blocks.1.mlp.fc.weight  *\[64, 16\]  *F32 " <<<"$out" || fail "fc row: $out"
# the stored losses are the last row of eval.csv
"$py" "$scripts/ckpt.py" "$ck" --json | "$py" -c '
import csv, json, sys
s = json.load(sys.stdin)
assert s["format"] == "qkscope/1" and s["step"] == "30" and s["eval_step"] == "30", s
assert all(t["dtype"] == "F32" for t in s["tensors"])
last = list(csv.DictReader(open(sys.argv[1])))[-1]
for k in ("train_loss", "val_loss"):
    assert abs(float(s[k]) - float(last[k])) <= 1e-6 * float(last[k]), (k, s[k], last[k])
' runs/py/eval.csv || fail "ckpt.py --json"

# ---- checksums, through both implementations
expect_line "checksums   verified"
"$py" "$scripts/ckpt.py" "$ck" --write back.st || fail "ckpt.py --write failed"
cmp -s back.st "$ck" || fail "ckpt.py wrote $ck back with other bytes"
"$py" "$scripts/ckpt.py" "$ck" --write old.st --without-checksums || fail "ckpt.py --without-checksums"
[ "$(tensors old.st | sha256sum)" = "$(tensors "$ck" | sha256sum)" ] || fail "old.st: other tensors"
"$py" "$scripts/ckpt.py" old.st --write new.st || fail "ckpt.py --write of old.st"
cmp -s new.st "$ck" || fail "checksums computed by ckpt.py differ from the C writer's"
grep -q '"crc32\.' old.st && fail "old.st has crc32 entries"
info=$("$build/qkscope-info" "$ck") || fail "info $ck"
grep -qx "checksums   verified (CRC-32 of the header and of [0-9]* tensors)" <<<"$info" ||
    fail "info of a checkpoint with checksums: $info"
info=$("$build/qkscope-info" old.st) || fail "info of a checkpoint without checksums refused it"
grep -qx "checksums   unverified (the file has none: .*)" <<<"$info" ||
    fail "info of a checkpoint without checksums: $info"
[ "$("$build/qkscope-verify" old.st)" = "old.st: unverified (no checksums)" ] ||
    fail "verify of old.st: $("$build/qkscope-verify" old.st 2>&1)"
[ "$("$py" "$scripts/ckpt.py" old.st | grep '^checksums')" = "checksums   unverified" ] ||
    fail "ckpt.py of old.st does not say unverified"
a=$("$build/qkscope-eval" "$ck" --json) || fail "eval $ck"
b=$("$build/qkscope-eval" old.st --json) || fail "eval of a checkpoint without checksums"
[ "$a" = "$b" ] || fail "eval without checksums: $b, with: $a"
# a bit flipped in each of a weight, a moment and the header: both readers
# refuse, with the same message
"$py" - "$ck" <<'PY' || fail "writing the flipped files"
import json, struct, sys
raw = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
for i, at in enumerate([8 + n + h["blocks.1.attn.q.weight"]["data_offsets"][0] + 9,
                        8 + n + h["optim.v.lm_head.weight"]["data_offsets"][1] - 1,
                        8 + raw[8:8 + n].index(b'"step":"') + 2]):
    raw[at] ^= 0x04
    open(f"flip{i}.st", "wb").write(raw)
    raw[at] ^= 0x04
PY
for f in flip0.st flip1.st flip2.st; do
    c_msg=$("$build/qkscope-eval" "$f" 2>&1 >/dev/null) && fail "qkscope-eval loaded $f"
    p_msg=$("$py" "$scripts/ckpt.py" "$f" 2>&1 >/dev/null) && fail "ckpt.py loaded $f"
    grep -q "^qkscope: $f: checksum mismatch in " <<<"$c_msg" || fail "eval of $f: $c_msg"
    [ "${c_msg#qkscope: }" = "${p_msg#ckpt.py: }" ] || fail "the readers disagree on $f:
  C:      $c_msg
  Python: $p_msg"
    "$py" "$scripts/ckpt.py" "$f" --write rewritten.st 2>/dev/null && fail "ckpt.py rewrote corrupt $f"
done
[ ! -e rewritten.st ] || fail "a refused --write wrote its output"

# ---- ref_model.py against qkscope-eval on the whole corpus
ref=$("$py" "$scripts/ref_model.py" "$ck" --data corpus.txt --json) || fail "ref_model.py failed"
eval_bin="$build/qkscope-eval"
if [ ! -x "$eval_bin" ]; then
    echo "SKIP: $eval_bin is not built (ckpt.py checks passed; ref_model.py says $ref)"
    exit 77
fi
c=$("$eval_bin" "$ck" --data corpus.txt --json) || fail "qkscope-eval failed"
"$py" - "$ref" "$c" corpus.txt <<'PY' || fail "ref_model.py $ref vs qkscope-eval $c"
import json, sys
ref, c = json.loads(sys.argv[1]), json.loads(sys.argv[2])
n = len(open(sys.argv[3], encoding="utf-8", newline="").read())
T = 16
assert ref["windows"] == c["windows"] == (n - 1) // T, (ref, c, n)
assert ref["tokens"] == c["tokens"] == ref["windows"] * T, (ref, c)
rel = abs(ref["loss"] - c["loss"]) / abs(c["loss"])
assert rel <= 1e-4, f"relative difference {rel:.3g}"
print(f"ref_model.py {ref['loss']:.9g} vs qkscope-eval {c['loss']:.9g}: relative {rel:.2g}")
PY
echo "ok"
