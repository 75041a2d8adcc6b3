#!/usr/bin/env bash
# The bad-corpus catalogue, with the real binaries: each bad text file as the
# trainer's corpus (data.path, with --overwrite of an existing run, which must
# survive untouched), as `eval --data` and as `probe --file` of a checkpoint.
# Each refusal: exit status 2 and exactly one stderr line, compared whole.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

tiny_run
ck=runs/a/ckpt/latest.safetensors
size=$(wc -c < corpus.txt)

# The files; every character outside the bad bytes is in the checkpoint's
# vocabulary, so eval and probe meet the same fault as the trainer.
: > empty.txt
head -c 65536 "$build/train" > program.bin # an ELF file: \177ELF then a NUL at offset 7
{ head -c 100 corpus.txt; printf '\0'; tail -c +101 corpus.txt; } > nul.txt
{ printf '\303'; cat corpus.txt; } > bad_start.txt
{ head -c 3000 corpus.txt; printf '\342\202'; tail -c +3001 corpus.txt; } > bad_middle.txt
{ cat corpus.txt; printf '\360\237\230'; } > bad_end.txt
{ head -c 3000 corpus.txt; printf '\200'; tail -c +3001 corpus.txt; } > stray.txt
{ head -c 3000 corpus.txt; printf '\300\257'; tail -c +3001 corpus.txt; } > overlong.txt
{ head -c 3000 corpus.txt; printf '\355\240\200'; tail -c +3001 corpus.txt; } > surrogate.txt
{ head -c 3000 corpus.txt; printf '\364\220\200\200'; tail -c +3001 corpus.txt; } > beyond.txt
printf '\377\376l\0i\0n\0e\0' > utf16.txt
head -c 5000 /dev/zero | tr '\0' a > repeated.txt
for _ in $(seq 2000); do printf '\303\251'; done > repeated_e.txt
printf 'line 1: some\n' > short.txt
head -c 100 corpus.txt > short_val.txt
"$py" -c 'import sys; sys.stdout.write("".join(chr(c) for c in range(0x100, 0x100 + 65537 + 2048) if not 0xD800 <= c <= 0xDFFF))' > wide.txt
mkdir folder.txt
ln -s loop2.txt loop1.txt
ln -s loop1.txt loop2.txt

# text_case MESSAGE CMD ARG...: qkscope-CMD on the checkpoint refuses with
# MESSAGE, or succeeds when MESSAGE is "ok".
text_case() {
    local msg=$1 cmd=$2
    shift 2
    if [ "$msg" = ok ]; then
        check "$cmd $*: should succeed" "$build/qkscope-$cmd" "$ck" "$@"
    else
        refuse "$msg" "$build/qkscope-$cmd" "$ck" "$@"
    fi
}

before=$(tree_sum runs)
# file | train's message | eval --data's | probe --file's ("ok": it must succeed)
while IFS='|' read -r file train_msg eval_msg probe_msg; do
    refuse "$train_msg" "$build/train" a.ini --overwrite data.path="$file"
    text_case "$eval_msg" eval --data "$file"
    text_case "$probe_msg" probe --file "$file" --out probe_out
done <<CASES
empty.txt|empty.txt: corpus is empty|empty.txt: 0 characters, fewer than one window of block_size+1 = 17|empty.txt: empty text, expected at least 2 characters (inputs and targets)
program.bin|program.bin: binary file (NUL byte at offset 7), expected UTF-8 text|program.bin: binary file (NUL byte at offset 7), expected UTF-8 text|program.bin: binary file (NUL byte at offset 7), expected UTF-8 text
nul.txt|nul.txt: binary file (NUL byte at offset 100), expected UTF-8 text|nul.txt: binary file (NUL byte at offset 100), expected UTF-8 text|nul.txt: binary file (NUL byte at offset 100), expected UTF-8 text
bad_start.txt|bad_start.txt: invalid UTF-8 at byte offset 0|bad_start.txt: invalid UTF-8 at byte offset 0|bad_start.txt: invalid UTF-8 at byte offset 0
bad_middle.txt|bad_middle.txt: invalid UTF-8 at byte offset 3000|bad_middle.txt: invalid UTF-8 at byte offset 3000|bad_middle.txt: invalid UTF-8 at byte offset 3000
bad_end.txt|bad_end.txt: invalid UTF-8 at byte offset $size|bad_end.txt: invalid UTF-8 at byte offset $size|bad_end.txt: invalid UTF-8 at byte offset $size
stray.txt|stray.txt: invalid UTF-8 at byte offset 3000|stray.txt: invalid UTF-8 at byte offset 3000|stray.txt: invalid UTF-8 at byte offset 3000
overlong.txt|overlong.txt: invalid UTF-8 at byte offset 3000|overlong.txt: invalid UTF-8 at byte offset 3000|overlong.txt: invalid UTF-8 at byte offset 3000
surrogate.txt|surrogate.txt: invalid UTF-8 at byte offset 3000|surrogate.txt: invalid UTF-8 at byte offset 3000|surrogate.txt: invalid UTF-8 at byte offset 3000
beyond.txt|beyond.txt: invalid UTF-8 at byte offset 3000|beyond.txt: invalid UTF-8 at byte offset 3000|beyond.txt: invalid UTF-8 at byte offset 3000
utf16.txt|utf16.txt: binary file (NUL byte at offset 3), expected UTF-8 text|utf16.txt: binary file (NUL byte at offset 3), expected UTF-8 text|utf16.txt: binary file (NUL byte at offset 3), expected UTF-8 text
repeated.txt|repeated.txt: the corpus is one character (U+0061) repeated; nothing to learn|ok|ok
repeated_e.txt|repeated_e.txt: the corpus is one character (U+00E9) repeated; nothing to learn|repeated_e.txt: character 'é' (U+00E9) at character 0 is not in the vocabulary|repeated_e.txt: character 'é' (U+00E9) at character 0 is not in the vocabulary
short.txt|short.txt: corpus too short: 13 characters give a train split of 12 and a validation split of 1; each needs at least block_size+1 = 17|short.txt: 13 characters, fewer than one window of block_size+1 = 17|ok
short_val.txt|short_val.txt: corpus too short: 100 characters give a train split of 90 and a validation split of 10; each needs at least block_size+1 = 17|ok|ok
wide.txt|wide.txt: 65537 distinct characters, more than the limit of 65536|wide.txt: character 'Ā' (U+0100) at character 0 is not in the vocabulary|wide.txt: character 'Ā' (U+0100) at character 0 is not in the vocabulary
folder.txt|folder.txt: is a directory, expected a UTF-8 text file|folder.txt: is a directory, expected a UTF-8 text file|folder.txt: is a directory, expected a UTF-8 text file
/dev/zero|/dev/zero: not a regular file, expected a UTF-8 text file|/dev/zero: not a regular file, expected a UTF-8 text file|/dev/zero: not a regular file, expected a UTF-8 text file
loop1.txt|loop1.txt: cannot open corpus: Too many levels of symbolic links|loop1.txt: cannot open corpus: Too many levels of symbolic links|loop1.txt: cannot open corpus: Too many levels of symbolic links
none.txt|none.txt: cannot open corpus: No such file or directory|none.txt: cannot open corpus: No such file or directory|none.txt: cannot open corpus: No such file or directory
CASES
check "refused corpora changed runs/" [ "$(tree_sum runs)" = "$before" ]

# The run's own corpus, gone or changed, for eval without --data and resume.
mv corpus.txt corpus.saved
refuse "corpus.txt: cannot open corpus: No such file or directory" "$build/qkscope-eval" "$ck"
refuse "corpus.txt: cannot open corpus: No such file or directory" "$build/train" a.ini --resume
tr 'l' 'L' < corpus.saved > corpus.txt
refuse "$ck: vocabulary (29 characters) differs from that of corpus.txt (29 characters)" \
    "$build/qkscope-eval" "$ck"
refuse "runs/a/ckpt/latest.safetensors: vocabulary (29 characters) differs from that of corpus.txt (29 characters)" \
    "$build/train" a.ini --resume
check "refused resumes changed runs/" [ "$(tree_sum runs)" = "$before" ]
finish
