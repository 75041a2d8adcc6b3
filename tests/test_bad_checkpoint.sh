#!/usr/bin/env bash
# The bad-checkpoint catalogue, with the real binaries. From a real training
# checkpoint of a tiny model, each corruption of the safetensors format (and
# files that are no checkpoint at all) goes through `info`, `eval`,
# `train.init_from` and a resume whose ckpt/latest.safetensors is that file.
# Each refusal: exit status 2 and exactly one stderr line, compared whole;
# the resumed run folder stays byte-identical and no init_from run folder
# appears. Then valid checkpoints of another shape or vocabulary, and the
# other commands that read a checkpoint.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

tiny_run
good=runs/a/ckpt/step_000003.safetensors
cp -r runs/a runs/r # resumed with each bad file as its latest checkpoint
latest=runs/r/ckpt/latest.safetensors

# The corruptions, written by a small safetensors editor; facts.txt gets the
# numbers the messages quote. An edited header gets its checksums anew
# (scripts/ckpt.py's pack), so that each case reaches the check it is about;
# the checksums' own cases follow.
"$py" - "$good" <<'PY'
import json, os, struct, sys

sys.path.insert(0, os.path.join(os.environ["QK_SOURCE"], "scripts"))
import ckpt

raw = open(sys.argv[1], "rb").read()
hlen = struct.unpack("<Q", raw[:8])[0]
data = raw[8 + hlen:]
names = [k for k in json.loads(raw[8:8 + hlen]) if k != "__metadata__"]


def header():
    return json.loads(raw[8:8 + hlen])


def pack(text):
    text = text.encode() if isinstance(text, str) else text
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def save(name, h=None, d=data, text=None):
    """Header h with its checksums recomputed, or a header text as is."""
    if text is None:
        open(name, "wb").write(ckpt.pack(h, d))
    else:
        open(name, "wb").write(pack(text) + bytes(d))


def plain_header():
    """The header without its crc32 entries: a text to edit by hand."""
    h = header()
    h["__metadata__"] = {k: v for k, v in h["__metadata__"].items() if not k.startswith("crc32.")}
    return h


def without(name):
    """The header and data without tensor name, later offsets shifted."""
    h, d = header(), bytearray(data)
    b, e = h.pop(name)["data_offsets"]
    del d[b:e]
    for k in names:
        if k in h and h[k]["data_offsets"][0] >= e:
            h[k]["data_offsets"] = [x - (e - b) for x in h[k]["data_offsets"]]
    return h, d


def edit(name, change):
    h = header()
    change(h)
    save(name, h)


def poke(name, tensor, index, value):
    d = bytearray(data)
    at = header()[tensor]["data_offsets"][0] + 4 * index
    d[at:at + 4] = struct.pack("<f", value)
    save(name, header(), d)


open("empty.st", "wb").close()
open("short.st", "wb").write(raw[:5])
open("cut_header.st", "wb").write(raw[:8 + hlen // 2])
open("cut_tail.st", "wb").write(raw[:-4])
open("cut_half.st", "wb").write(raw[:len(raw) // 2])
open("len10g.st", "wb").write(struct.pack("<Q", 10 * 10**9) + raw[8:])
open("len_max.st", "wb").write(b"\xff" * 8 + raw[8:])
save("not_json.st", text="x" * hlen)
json_text = json.dumps(plain_header())
save("json_tail.st", text=json_text + " xx")
save("json_array.st", text="[]")
h = header()
del h["__metadata__"]
save("no_meta.st", h)
save("foreign.st", {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)
edit("format.st", lambda h: h["__metadata__"].update(format="qkscope/2"))
edit("no_config.st", lambda h: h["__metadata__"].pop("config"))
edit("bad_config.st", lambda h: h["__metadata__"].update(config="not an ini file"))
edit("step_number.st", lambda h: h["__metadata__"].update(step=3))
edit("bad_step.st", lambda h: h["__metadata__"].update(step="-5"))
edit("bad_rng.st", lambda h: h["__metadata__"].update(rng=",".join(["0" * 16] * 4)))
edit("bad_loss.st", lambda h: h["__metadata__"].update(train_loss="inf"))
edit("vocab_object.st", lambda h: h["__metadata__"].update(vocab="{}"))
vocab = json.loads(header()["__metadata__"]["vocab"])
edit("vocab_unsorted.st", lambda h: h["__metadata__"].update(
    vocab=json.dumps([vocab[1], vocab[0]] + vocab[2:])))
edit("vocab_larger.st", lambda h: h["__metadata__"].update(vocab=json.dumps(vocab + ["~"])))
save("missing.st", *without("ln_f.bias"))
save("missing_optim.st", *without("optim.v.wte.weight"))
h = header()
h["extra.weight"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(data), len(data) + 4]}
save("extra.st", h, data + b"\0" * 4)
plain_text = json.dumps(plain_header(), separators=(",", ":"), ensure_ascii=False)
save("twice.st", text=plain_text.replace('"wpe.weight"', '"wte.weight"'))
edit("dtype.st", lambda h: h["wte.weight"].update(dtype="F16"))
edit("no_dtype.st", lambda h: h["wte.weight"].pop("dtype"))
edit("shape.st", lambda h: h["wpe.weight"].update(shape=[16, 17]))
edit("gap.st", lambda h: h["wpe.weight"].update(data_offsets=[x + 4 for x in h["wpe.weight"]["data_offsets"]]))
edit("overlap.st", lambda h: h["wpe.weight"].update(data_offsets=[x - 4 for x in h["wpe.weight"]["data_offsets"]]))
edit("short_tensor.st", lambda h: h["wpe.weight"]["data_offsets"].__setitem__(1, h["wpe.weight"]["data_offsets"][1] - 4))
edit("beyond.st", lambda h: h[names[-1]]["data_offsets"].__setitem__(1, len(data) + 4))
edit("fraction.st", lambda h: h["wpe.weight"]["data_offsets"].__setitem__(0, 0.5))
save("trailing.st", header(), data + b"\0" * 8)
poke("nan.st", "wte.weight", 0, float("nan"))
poke("inf.st", "optim.m.ln_f.bias", 3, float("inf"))

h = header()
half = len(raw) // 2 - 8 - hlen
cut = next(k for k in names if h[k]["data_offsets"][1] > half)
facts = [hlen, len(data), len(raw), *h["wpe.weight"]["data_offsets"], names[-1],
         h[names[-1]]["data_offsets"][0], len(json_text.encode()) + 1, cut, *h[cut]["data_offsets"]]
open("facts.txt", "w").write(" ".join(map(str, facts)) + "\n")
PY
read -r hlen dlen size wpe_b wpe_e last last_at json_tail_at half half_b half_e < facts.txt
head -c 65536 "$build/train" > program.st # an ELF file
mkdir folder.st
ln -s loop2.st loop1.st
ln -s loop1.st loop2.st
elf_len=$(od -An -t u8 -N8 program.st | tr -d ' ')
text_len=$(od -An -t u8 -N8 corpus.txt | tr -d ' ')

# bad_checkpoint FILE MESSAGE: FILE refused with "FILE: MESSAGE" by info, eval
# and train.init_from, and as a resume's latest checkpoint with the link's
# name, leaving the run folder as it was.
bad_checkpoint() {
    local file=$1 msg=$2 before
    refuse "$file: $msg" "$build/qkscope-info" "$file"
    refuse "$file: $msg" "$build/qkscope-eval" "$file"
    refuse "$file: $msg" "$build/train" a.ini run.name=init train.init_from="$file"
    ln -sfn "$(realpath -sm "$file")" "$latest"
    before=$(tree_sum runs/r)
    refuse "$latest: $msg" "$build/train" a.ini run.name=r --resume
    check "resume from $file changed runs/r" [ "$(tree_sum runs/r)" = "$before" ]
}

while IFS='|' read -r file msg; do
    bad_checkpoint "$file" "$msg"
done <<CASES
empty.st|not a safetensors file: 0 bytes, shorter than the 8-byte header length
short.st|not a safetensors file: 5 bytes, shorter than the 8-byte header length
cut_header.st|not a safetensors file: header length $hlen exceeds the $((hlen / 2)) bytes after it
len10g.st|not a safetensors file: header length 10000000000 exceeds the $((size - 8)) bytes after it
len_max.st|not a safetensors file: header length 18446744073709551615 exceeds the $((size - 8)) bytes after it
program.st|not a safetensors file: header length $elf_len exceeds the 65528 bytes after it
corpus.txt|not a safetensors file: header length $text_len exceeds the $(($(wc -c < corpus.txt) - 8)) bytes after it
cut_tail.st|tensor '$last': data_offsets [$last_at, $dlen] out of range (the data section has $((dlen - 4)) bytes)
cut_half.st|tensor '$half': data_offsets [$half_b, $half_e] out of range (the data section has $((size / 2 - 8 - hlen)) bytes)
not_json.st|header is not valid JSON (error at byte 0)
json_tail.st|header is not valid JSON (unexpected data at byte $json_tail_at)
json_array.st|header is not a JSON object
no_meta.st|header has no __metadata__ (not a qkscope checkpoint)
foreign.st|header has no __metadata__ (not a qkscope checkpoint)
format.st|metadata 'format' is 'qkscope/2', expected 'qkscope/1'
no_config.st|metadata has no 'config'
bad_config.st|metadata 'config': config:1: syntax error (expected [section] or key = value)
step_number.st|metadata 'step' is not a string
bad_step.st|metadata 'step' is '-5', expected an integer >= 0
bad_rng.st|metadata 'rng' is '0000000000000000,0000000000000000,0000000000000000,0000000000000000', expected 4 words of 16 lowercase hex digits joined by ',', not all zero
bad_loss.st|metadata 'train_loss' is 'inf', expected a number >= 0 or nan
vocab_object.st|metadata 'vocab' is not a JSON array of 1 to 65536 strings
vocab_unsorted.st|metadata 'vocab' is not sorted by code point (entry 1: U+000A after U+0020)
vocab_larger.st|tensor 'wte.weight': shape [29,16], expected [30,16] for the stored config
missing.st|missing tensor 'ln_f.bias'
missing_optim.st|optimizer state incomplete: missing tensor 'optim.v.wte.weight'
extra.st|unknown tensor 'extra.weight' (not part of a model with the stored config)
twice.st|tensor 'wte.weight' appears twice
dtype.st|tensor 'wte.weight': dtype 'F16', expected 'F32'
no_dtype.st|tensor 'wte.weight': dtype '(missing)', expected 'F32'
shape.st|tensor 'wpe.weight': shape [16,17], expected [16,16] for the stored config
gap.st|tensor 'wpe.weight': data_offsets [$((wpe_b + 4)), $((wpe_e + 4))] leave a gap after the previous tensor, which ends at $wpe_b
overlap.st|tensor 'wpe.weight': data_offsets [$((wpe_b - 4)), $((wpe_e - 4))] overlap the previous tensor, which ends at $wpe_b
short_tensor.st|tensor 'wpe.weight': data_offsets [$wpe_b, $((wpe_e - 4))] hold $((wpe_e - wpe_b - 4)) bytes, expected $((wpe_e - wpe_b)) for its shape
beyond.st|tensor '$last': data_offsets [$last_at, $((dlen + 4))] out of range (the data section has $dlen bytes)
fraction.st|tensor 'wpe.weight': data_offsets is not [begin, end] with integers >= 0
trailing.st|8 bytes of data after the last tensor (the data section must end with it)
nan.st|tensor 'wte.weight' has a non-finite value (nan) at index 0
inf.st|tensor 'optim.m.ln_f.bias' has a non-finite value (inf) at index 3
folder.st|is a directory, expected a safetensors file
/dev/zero|not a regular file, expected a safetensors file
CASES
for f in loop1.st none.st; do
    why="No such file or directory"
    [ "$f" = loop1.st ] && why="Too many levels of symbolic links"
    refuse "$f: cannot open checkpoint: $why" "$build/qkscope-info" "$f"
    refuse "$f: cannot open checkpoint: $why" "$build/qkscope-eval" "$f"
    refuse "$f: cannot open checkpoint: $why" "$build/train" a.ini run.name=init train.init_from="$f"
    ln -sfn "$(realpath -sm "$f")" "$latest"
    refuse "$latest: no checkpoint to resume from (run.resume=true needs a run that saved one)" \
        "$build/train" a.ini run.name=r --resume
done
if [ "$(id -u)" -ne 0 ]; then # root reads anything
    cp "$good" locked.st
    chmod 000 locked.st
    refuse "locked.st: cannot open checkpoint: Permission denied" "$build/qkscope-info" locked.st
fi
check "a refused init_from created a run folder" [ ! -e runs/init ]

# The checksums. One bit flipped in each tensor in turn (weights and AdamW
# moments, the high byte of its first value: an exponent bit), in the header
# (a digit of the config: n_embd = 16 becomes 17), a byte cut or added, and
# malformed crc32 entries (the header's CRC made right again, so that each is
# refused for itself). The expected CRCs are Python's zlib.crc32 of the bytes:
# a second implementation that the C reader's messages must agree with.
"$py" - "$good" > crc_cases.txt <<'PY'
import json, os, re, struct, sys, zlib

sys.path.insert(0, os.path.join(os.environ["QK_SOURCE"], "scripts"))
import ckpt

raw = open(sys.argv[1], "rb").read()
hlen = struct.unpack("<Q", raw[:8])[0]
text, data = raw[8:8 + hlen], raw[8 + hlen:]
h = json.loads(text)
meta = h["__metadata__"]
names = [k for k in h if k != "__metadata__"]


def case(name, content, msg):
    open(name, "wb").write(content)
    print(f"{name}|{msg}")


for i, name in enumerate(names):
    b, e = h[name]["data_offsets"]
    d = bytearray(data)
    d[b + 3] ^= 0x10
    case(f"flip_{name}.st", raw[:8 + hlen] + d,
         f"checksum mismatch in tensor '{name}': expected crc32 {meta['crc32.' + name]}, "
         f"found {zlib.crc32(d[b:e]):08x} (the file is corrupt)")

t = bytearray(text)
t[text.index(b"n_embd = 16") + len("n_embd = 1")] ^= 0x01
zeroed = bytearray(t)
at = zeroed.index(b'"crc32.header":"') + len('"crc32.header":"')
zeroed[at:at + 8] = b"00000000"
case("flip_header.st", raw[:8] + t + data,
     f"checksum mismatch in the header: expected crc32 {meta['crc32.header']}, "
     f"found {zlib.crc32(zeroed):08x} (the file is corrupt)")

last = names[-1]
case("cut_1.st", raw[:-1], f"tensor '{last}': data_offsets [{h[last]['data_offsets'][0]}, "
     f"{len(data)}] out of range (the data section has {len(data) - 1} bytes)")
case("extra_byte.st", raw + b"\0",
     "1 byte of data after the last tensor (the data section must end with it)")


def crc_edit(name, change, msg):
    g = json.loads(text)
    change(g["__metadata__"])
    case(name, ckpt.pack(g, data, "keep"), msg)


hexes = "expected 8 lowercase hex digits (a CRC-32)"
crc_edit("crc_upper.st", lambda m: m.update({"crc32.wte.weight": "ABCDEF01"}),
         f"metadata 'crc32.wte.weight' is 'ABCDEF01', {hexes}")
crc_edit("crc_short.st", lambda m: m.update({"crc32.ln_f.bias": "1234567"}),
         f"metadata 'crc32.ln_f.bias' is '1234567', {hexes}")
crc_edit("crc_number.st", lambda m: m.update({"crc32.wpe.weight": 12345678}),
         f"metadata 'crc32.wpe.weight' is not a string, {hexes}")
crc_edit("crc_header_bad.st", lambda m: m.update({"crc32.header": "zzzzzzzz"}),
         f"metadata 'crc32.header' is 'zzzzzzzz', {hexes}")
crc_edit("crc_stray.st", lambda m: m.update({"crc32.nothing.weight": "00000000"}),
         "metadata 'crc32.nothing.weight' names no tensor of the file")
crc_edit("crc_missing.st", lambda m: m.pop("crc32.optim.v.wpe.weight"),
         "tensor 'optim.v.wpe.weight' has no checksum (metadata 'crc32.optim.v.wpe.weight'), "
         "while the file has others")
crc_edit("crc_no_header.st", lambda m: m.pop("crc32.header"),
         "metadata has crc32 entries but no 'crc32.header'")
entry = re.search(rb'"crc32\.header":"[0-9a-f]{8}"', text).group(0)
twice = text.replace(entry, entry + b"," + entry)
case("crc_header_twice.st", struct.pack("<Q", len(twice)) + twice + data,
     "metadata 'crc32.header' is not written once as \"crc32.header\":\"<8 hex digits>\" in "
     "the header's text")
PY
while IFS='|' read -r file msg; do
    case $file in
    flip_*) ;; # below
    *) bad_checkpoint "$file" "$msg" ;;
    esac
done < crc_cases.txt
# eval for the flip in each tensor; every command that reads a checkpoint
# for one weight, one moment and the header
grep -q "^flip_optim.v.ln_f.bias.st|" crc_cases.txt || fail "no case for the last tensor"
while IFS='|' read -r file msg; do
    refuse "$file: $msg" "$build/qkscope-eval" "$file"
done < <(grep '^flip_' crc_cases.txt)
cp -r runs/a runs/rep # its checkpoint's header, as read by report
for t in blocks.0.attn.k.weight optim.m.blocks.1.mlp.fc.weight header; do
    f=flip_$t.st
    msg=$(grep "^$f|" crc_cases.txt | cut -d'|' -f2-)
    [ -n "$msg" ] || fail "no case $f"
    bad_checkpoint "$f" "$msg"
    refuse "$f: $msg" "$build/qkscope-sample" "$f" --tokens 5
    refuse "$f: $msg" "$build/qkscope-probe" "$f" --text "line 1" --out probe_out
    refuse "$f: $msg" "$build/qkscope-gauge" "$f" gauged.st
    refuse "$f: $msg" "$build/qkscope-compare" "$f" "$good" --out compare_out
    refuse "$f: $msg" "$build/qkscope-compare" "$good" "$f" --out compare_out
    refuse "$f: $msg" "$build/qkscope-roles" "$f" --records 4
    refuse "$f: $msg" "$build/qkscope-verify" "$f"
done
rep_ck=runs/rep/ckpt/step_000003.safetensors
cp flip_header.st "$rep_ck"
before=$(tree_sum runs/rep)
refuse "$rep_ck: $(grep '^flip_header.st|' crc_cases.txt | cut -d'|' -f2-)" \
    "$build/qkscope-report" runs/rep
check "a refused report changed runs/rep" [ "$(tree_sum runs/rep)" = "$before" ]
# verify: a line a file, the bad one's on stderr, status 2 for any bad file
set +e
"$build/qkscope-verify" "$good" flip_header.st > verify.out 2> verify.err
rc=$?
set -e
check "verify of a good and a corrupt file: status $rc, expected 2" [ "$rc" -eq 2 ]
check "verify's ok line: $(cat verify.out)" \
    [ "$(cat verify.out)" = "$good: ok, $(grep -c '^flip_' crc_cases.txt | awk '{ print $1 - 1 }') tensors verified" ]
check "verify's refusal: $(cat verify.err)" \
    [ "$(cat verify.err)" = "qkscope: $(grep '^flip_header.st|' crc_cases.txt | sed 's/|/: /')" ]
check "verify of a good file" "$build/qkscope-verify" "$good"

# Valid checkpoints that do not fit: another shape, another vocabulary.
"$build/train" a.ini run.name=wide model.n_embd=32 > /dev/null
tr 'l' 'L' < corpus.txt > other.txt
"$build/train" a.ini run.name=other data.path=other.txt > /dev/null
for run in wide other; do
    check "info of the valid checkpoint of run $run" "$build/qkscope-info" "runs/$run/ckpt/latest.safetensors"
done
wide=runs/wide/ckpt/latest.safetensors
other=runs/other/ckpt/latest.safetensors
refuse "$wide: model shape differs from the config: [model] n_embd is 32 in the checkpoint, 16 in the config" \
    "$build/train" a.ini run.name=init train.init_from="$wide"
refuse "$other: vocabulary (29 characters) differs from that of corpus.txt (29 characters)" \
    "$build/train" a.ini run.name=init train.init_from="$other"
ln -sfn "$(realpath -sm "$wide")" "$latest"
before=$(tree_sum runs/r)
refuse "$latest: model shape differs from the config: [model] n_embd is 32 in the checkpoint, 16 in the config" \
    "$build/train" a.ini run.name=r --resume
check "resume from another shape changed runs/r" [ "$(tree_sum runs/r)" = "$before" ]

# A weights-only file (gauge's output) or a checkpoint past train.steps: the
# resumed run could not be the interrupted one.
"$build/qkscope-gauge" "$good" weights.st > /dev/null
ln -sfn "$(realpath -sm weights.st)" "$latest"
before=$(tree_sum runs/r)
refuse "$latest: weights only, no AdamW state: cannot resume from it; start a new run with train.init_from" \
    "$build/train" a.ini run.name=r --resume
check "refused weights-only resume changed runs/r" [ "$(tree_sum runs/r)" = "$before" ]
ln -sfn "$(realpath -sm "$good")" "$latest"
before=$(tree_sum runs/r)
refuse "$latest: saved at step 3, past train.steps = 2: cannot resume from it" \
    "$build/train" a.ini run.name=r --resume train.steps=2 train.warmup_steps=1
check "refused resume past train.steps changed runs/r" [ "$(tree_sum runs/r)" = "$before" ]

# A good checkpoint, but logs that are not this run's: refused, untouched,
# the other logs too (a row past the checkpoint in metrics.csv, which a
# resume would drop, shows whether it was trimmed before the refusal).
cp runs/r/metrics.csv metrics.saved
echo 999999,0 >> runs/r/metrics.csv
for log in metrics.csv eval.csv qk.csv qk_eval.csv; do
    cp "runs/r/$log" saved.csv
    for damage in header empty gone; do
        case $damage in
        header) printf 'step,other\n1,2\n' > "runs/r/$log"
            msg="header is not that of this log; cannot resume into it" ;;
        empty) : > "runs/r/$log"
            msg="empty log; cannot resume into it" ;;
        gone) rm "runs/r/$log"
            msg="cannot reopen log to resume: No such file or directory" ;;
        esac
        before=$(tree_sum runs/r)
        refuse "runs/r/$log: $msg" "$build/train" a.ini run.name=r --resume
        check "resume into a damaged $log changed runs/r" [ "$(tree_sum runs/r)" = "$before" ]
    done
    cp saved.csv "runs/r/$log"
done
cp metrics.saved runs/r/metrics.csv

# The other commands that read a checkpoint refuse it the same way, and
# gauge writes nothing.
for f in cut_tail.st nan.st folder.st; do
    msg=$("$build/qkscope-info" "$f" 2>&1 >/dev/null || true)
    msg=${msg#qkscope: }
    refuse "$msg" "$build/qkscope-sample" "$f" --tokens 5
    refuse "$msg" "$build/qkscope-probe" "$f" --text "line 1" --out probe_out
    refuse "$msg" "$build/qkscope-gauge" "$f" gauged.st
    refuse "$msg" "$build/qkscope-compare" "$f" "$good" --out compare_out
    refuse "$msg" "$build/qkscope-compare" "$good" "$f" --out compare_out
    refuse "$msg" "$build/qkscope-eval" "$f" --records corpus.txt
done
check "gauge of a bad checkpoint wrote a file" [ ! -e gauged.st ]
check "a refused probe wrote its output folder" [ ! -e probe_out ]
check "a refused compare wrote its output folder" [ ! -e compare_out ]
finish
