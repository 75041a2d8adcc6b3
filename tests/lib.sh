# Shared pieces of the shell tests (tests/test_*.sh). A test sets its own shell
# options (set -euo pipefail, or set -u), then sources this file:
#     . "$QK_SOURCE/tests/lib.sh"
# (meson's test env sets QK_SOURCE and QK_BUILD). Sourcing it:
#   - makes a temp dir $tmp and cds into it; at exit, background jobs still
#     running are killed (kill -9) and $tmp is removed;
#   - sets build="$QK_BUILD/src" (the binaries) and py=/usr/bin/python3.
# Functions:
#   fail MESSAGE...             print "FAIL: MESSAGE" to stderr, exit 1
#   expect_exit CODE PATTERN CMD...
#                               run CMD (stdout to out.txt, stderr to err.txt):
#                               its exit status must be CODE and err.txt must
#                               match the grep pattern PATTERN
#   need_numpy                  skip the test (exit 77) unless $py imports numpy
#   untimed FILE                metrics.csv without the timing columns ms and
#                               tokens_per_s (6-7): cut -d, -f1-5,8-
#   tensors FILE                the data section of a safetensors file (after
#                               the 8-byte length and the JSON header, which
#                               holds the run name)
#   write_corpus FILE N FORMAT [MOD...]
#                               N lines, i = 0..N-1: printf FORMAT i (i % MOD)...
#                               (FORMAT ends with the line end; one conversion
#                               for i and one per MOD, or printf repeats it)
#   write_words_corpus FILE N FORMAT WORD...
#                               N lines: printf FORMAT word[i % W]
#                               word[(i * 7 + 3) % W] (i % 13), W words
#   write_config FILE [section.key=value...]
#                               the small model's INI (below), each
#                               section.key=value replacing that key's value or
#                               added to its section (a new section at the end):
#                               the syntax of the trainer's own overrides
#   tiny_run                    corpus.txt, a.ini (the small model, 3 steps, a
#                               checkpoint at the end, no heatmaps) and its
#                               trained run runs/a
# The bad-input catalogue (tests/test_bad_*.sh) counts cases and collects
# failures, so that one run shows every broken case:
#   refuse MESSAGE CMD...       CMD must exit with status 2 within 60 s (no
#                               crash, no hang) and print exactly one stderr
#                               line, "qkscope: MESSAGE"
#   check WHAT CMD...           CMD must succeed; WHAT names the failure
#   finish                      exit 1 if any case failed, else a summary line
#   tree_sum DIR                every entry below DIR with its type, mode,
#                               link target and file sha256: equal sums mean
#                               nothing in DIR was touched
# shellcheck shell=bash disable=SC2034 # build and py are for the tests
[[ -n ${QK_SOURCE:-} && -n ${QK_BUILD:-} ]] || {
    echo "QK_SOURCE and QK_BUILD must point at the source and build directories" >&2
    exit 1
}
build="$QK_BUILD/src"
py=/usr/bin/python3 # Debian's, which has python3-numpy; a pyenv python3 may not
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qk_$(basename "$0" .sh).XXXXXX") || exit 1
# shellcheck disable=SC2046 # one pid a word
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

fail() { echo "FAIL: $*" >&2; exit 1; }

expect_exit() {
    local code=$1 pattern=$2 rc
    shift 2
    # the shell's -e as it was, restored after the command
    local e=+e
    [[ $- == *e* ]] && e=-e
    set +e
    "$@" > out.txt 2> err.txt
    rc=$?
    set "$e"
    [ "$rc" -eq "$code" ] || fail "$*: exit $rc, expected $code; stderr: $(cat err.txt)"
    grep -q -- "$pattern" err.txt || fail "$*: stderr lacks '$pattern': $(cat err.txt)"
}

need_numpy() {
    if ! "$py" -c 'import numpy' 2>/dev/null; then
        echo "SKIP: $py cannot import numpy (apt-get install python3-numpy)"
        exit 77
    fi
}

untimed() { cut -d, -f1-5,8- "$1"; }

tensors() {
    local n
    n=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    tail -c +$((9 + n)) "$1"
}

write_corpus() {
    local file=$1 n=$2 format=$3 i m
    shift 3
    local -a args
    for ((i = 0; i < n; i++)); do
        args=("$i")
        for m in "$@"; do args+=($((i % m))); done
        # shellcheck disable=SC2059 # the format is the point
        printf "$format" "${args[@]}"
    done > "$file"
}

write_words_corpus() {
    local file=$1 n=$2 format=$3 i
    shift 3
    local -a words=("$@")
    local w=${#words[@]}
    for ((i = 0; i < n; i++)); do
        # shellcheck disable=SC2059 # the format is the point
        printf "$format" "${words[i % w]}" "${words[(i * 7 + 3) % w]}" $((i % 13))
    done > "$file"
}

# ini_override FILE [section.key=value ...]: the INI text on stdin with the
# given keys set (replaced where present, added to their section otherwise),
# written to FILE.
ini_override() {
    local file=$1 o
    shift
    for o in "$@"; do
        [[ $o =~ ^[a-z0-9_]+\.[a-z0-9_]+= ]] || fail "write_config: '$o' is not section.key=value"
    done
    QK_CONFIG_SET=$(printf '%s\n' "$@") awk '
        BEGIN {
            m = split(ENVIRON["QK_CONFIG_SET"], set, "\n")
            for (i = 1; i <= m; i++) {
                if (set[i] == "") continue
                dot = index(set[i], "."); eq = index(set[i], "=")
                id = substr(set[i], 1, eq - 1)
                if (!(id in value)) { n++; ids[n] = id; sec[n] = substr(set[i], 1, dot - 1)
                                      key[n] = substr(set[i], dot + 1, eq - dot - 1) }
                value[id] = substr(set[i], eq + 1)
            }
        }
        function rest(s,   i) { # the keys of section s not written yet
            for (i = 1; i <= n; i++)
                if (sec[i] == s && !(ids[i] in done)) { print key[i] " = " value[ids[i]]; done[ids[i]] = 1 }
        }
        /^\[/ { rest(section); section = substr($0, 2, length($0) - 2); print; next }
        {
            id = section "." substr($0, 1, index($0, " = ") - 1)
            if (id in value) { print substr($0, 1, index($0, " = ") - 1) " = " value[id]; done[id] = 1 }
            else print
        }
        END {
            rest(section)
            for (i = 1; i <= n; i++)
                if (!(ids[i] in done)) { print "[" sec[i] "]"; rest(sec[i]) }
        }' > "$file"
}

# write_config FILE [section.key=value ...]: a small corpus run (corpus.txt).
write_config() {
    local file=$1
    shift
    ini_override "$file" "$@" <<'INI'
[run]
name = a
out_dir = runs
[data]
path = corpus.txt
[model]
n_layer = 2
n_head = 2
n_embd = 16
block_size = 16
[train]
batch_size = 4
steps = 30
warmup_steps = 5
eval_every = 10
eval_batches = 2
log_every = 30
INI
}

# write_kv_config FILE [section.key=value ...]: a small kv task run (smeared
# keys, so that it learns in a few hundred steps).
write_kv_config() {
    local file=$1
    shift
    ini_override "$file" "$@" <<'INI'
[run]
name = a
threads = 1
[data]
task = kv
[task]
keys = 5
pairs_min = 2
pairs_max = 4
queries = 4
[model]
n_layer = 2
n_head = 2
n_embd = 16
block_size = 17
smear = key
[train]
batch_size = 8
steps = 300
warmup_steps = 10
eval_every = 50
eval_batches = 2
[log]
heatmap_every = 0
swap_batches = 1
roles_records = 4
INI
}

tiny_run() {
    write_corpus corpus.txt 200 'line %d: some %d words go by %d at a time.\n' 7 3
    write_config a.ini run.name=a run.threads=1 train.steps=3 train.warmup_steps=1 train.eval_every=3 \
        train.eval_batches=1 log.heatmap_every=0 log.swap_batches=0 log.checkpoint_every=3
    "$build/train" a.ini > /dev/null
}

cases=0
failures=0

refuse() {
    local want="qkscope: $1" rc e=+e
    shift
    cases=$((cases + 1))
    [[ $- == *e* ]] && e=-e
    set +e
    timeout 60 "$@" > out.txt 2> err.txt
    rc=$?
    set "$e"
    if [[ $rc -ne 2 || $(wc -l < err.txt) -ne 1 || $(< err.txt) != "$want" ]]; then
        printf 'FAIL: %s\n  wanted status 2 and: %s\n  got status %d and: %s\n' \
            "$*" "$want" "$rc" "$(head -c 2000 err.txt)" >&2
        failures=$((failures + 1))
    fi
}

check() {
    local what=$1
    shift
    cases=$((cases + 1))
    if ! "$@" > /dev/null 2>&1; then
        echo "FAIL: $what" >&2
        failures=$((failures + 1))
    fi
}

finish() {
    ((failures == 0)) || fail "$failures of $cases cases failed"
    echo "$(basename "$0" .sh): all $cases cases passed"
}

tree_sum() {
    (cd "$1" && find . -printf '%y %m %p -> %l\n' | LC_ALL=C sort &&
        find . -type f -exec sha256sum {} + | LC_ALL=C sort -k2)
}
