#!/usr/bin/env bash
# Regenerates tests/fuzz/seeds/checkpoint/ with the real trainer: tiny models
# (n_embd 8, 1 layer, 2 heads, block_size 4) trained 2 steps on a corpus of 6
# distinct characters, so each seed stays under 20 KB:
#   untied.safetensors      untied W_Q/W_K, no bias, with AdamW moments
#   tied_bias.safetensors   qk = tied, bias, untied embeddings, with moments
#   gauge.safetensors       `qkscope gauge` of the first: no optimizer state
#   trunc_*.safetensors     the first one cut at 4 and 8 bytes, after the
#                           header, in the middle of the data, 4 bytes short
#   hlen_huge.safetensors   a header length beyond the file
#   unverified.safetensors  the first one without its crc32 entries (a file
#                           from before checksums: mutations reach the
#                           checks behind them)
#   flip_data.safetensors, flip_header.safetensors
#                           the first one with a bit flipped in a tensor, in
#                           the header: checksum mismatches
# Files of seeds/checkpoint/ that it does not write (regressions) are kept.
# Usage: tests/fuzz/make_checkpoint_seeds.sh [BUILD_DIR]   (default: build)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
out=$root/tests/fuzz/seeds/checkpoint
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

for _ in $(seq 12); do printf 'abcde\nedcba\nbad cab\n'; done > c.txt
cat > s.ini <<'INI'
[run]
name = s1
out_dir = runs
threads = 1
[data]
path = c.txt
val_fraction = 0.3
[model]
n_layer = 1
n_head = 2
n_embd = 8
block_size = 4
[train]
batch_size = 2
steps = 2
warmup_steps = 1
eval_every = 1
eval_batches = 1
log_every = 1
[log]
checkpoint_every = 0
heatmap_every = 0
swap_batches = 0
INI
"$build/src/train" s.ini > /dev/null
"$build/src/train" s.ini run.name=s2 model.qk=tied model.bias=true model.tie_embeddings=false > /dev/null
"$build/src/qkscope-gauge" runs/s1/ckpt/latest.safetensors gauge.safetensors > /dev/null

mkdir -p "$out"
rm -f "$out"/{untied,tied_bias,gauge,unverified,hlen_huge}.safetensors "$out"/{trunc,flip}_*.safetensors
a=$out/untied.safetensors
cp runs/s1/ckpt/step_000002.safetensors "$a"
cp runs/s2/ckpt/step_000002.safetensors "$out/tied_bias.safetensors"
cp gauge.safetensors "$out/gauge.safetensors"

size=$(stat -c %s "$a")
hlen=$(od -An -t u8 -N 8 "$a" | tr -d ' ')
head -c 4 "$a" > "$out/trunc_4.safetensors"
head -c 8 "$a" > "$out/trunc_8.safetensors"
head -c $((8 + hlen)) "$a" > "$out/trunc_header.safetensors"
head -c $(((8 + hlen + size) / 2 / 4 * 4)) "$a" > "$out/trunc_data.safetensors"
head -c $((size - 4)) "$a" > "$out/trunc_last4.safetensors"
{ printf '\xff\xff\xff\xff\xff\xff\x00\x00'; head -c 72 "$a" | tail -c +9; } > "$out/hlen_huge.safetensors"
python3 "$root/scripts/ckpt.py" "$a" --write "$out/unverified.safetensors" --without-checksums
python3 - "$a" "$out" <<'PY'
import sys
raw = bytearray(open(sys.argv[1], "rb").read())
n = int.from_bytes(raw[:8], "little")
for name, at in (("flip_data", len(raw) - 5), ("flip_header", 8 + n // 2)):
    raw[at] ^= 0x08
    open(f"{sys.argv[2]}/{name}.safetensors", "wb").write(raw)
    raw[at] ^= 0x08
PY
ls -l "$out"
