#!/usr/bin/env bash
# End to end: the real train binary refuses bad configs and overrides before
# doing anything, with exit status 2 and exactly one stderr line naming the
# file and line (or the override), the key and what is allowed.
set -u
# Relative config paths keep the expected messages readable; anything a
# broken binary might write lands in the temp dir too (lib.sh cds there).
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"
train="$build/train"
mkdir configs

failures=0

# expect_error MESSAGE CONFIG [OVERRIDE...]: train must exit 2 and print
# exactly "qkscope: MESSAGE" as its only stderr line.
expect_error() {
    local want="qkscope: $1"
    shift
    local err status
    err=$("$train" "$@" 2>&1 >/dev/null)
    status=$?
    if [[ $status -ne 2 || $err != "$want" ]]; then
        printf 'FAIL: train %s\n  wanted status 2 and: %s\n  got status %d and: %s\n' \
            "$*" "$want" "$status" "$err" >&2
        failures=$((failures + 1))
    fi
}

# write FILE FORMAT [ARGS...]: printf into configs/FILE.
write() {
    local file=$1
    shift
    # shellcheck disable=SC2059 # the format is the point
    printf "$@" >"configs/$file"
}

expect_error "configs/none.ini: cannot open config: No such file or directory" configs/none.ini

write x.ini '[run]\nseed = 7\n\n[model]\nn_layer = 2\nn_embd = abc\n'
expect_error "configs/x.ini:6: [model] n_embd = 'abc': expected an integer >= 1 and <= 65536" configs/x.ini

write x.ini '[train]\nbeta2 = 1\n'
expect_error "configs/x.ini:2: [train] beta2 = '1': expected a number >= 0 and < 1" configs/x.ini

write x.ini '[model]\nqk = sometimes\n'
expect_error "configs/x.ini:2: [model] qk = 'sometimes': expected one of untied, tied" configs/x.ini

write x.ini '[model]\nn_layer = 2\nn_emb = 64\n'
expect_error "configs/x.ini:3: unknown key 'n_emb' in [model] (did you mean 'n_embd'?)" configs/x.ini

write x.ini '[run]\nseed = 1\n[modle]\nn_layer = 2\n'
expect_error "configs/x.ini:3: unknown section [modle] (did you mean [model]?)" configs/x.ini

write x.ini '[model]\nn_layer = 2\nn_head = 2\nn_layer = 3\n'
expect_error "configs/x.ini:4: [model] n_layer set twice (first at line 2)" configs/x.ini

write x.ini '[model]\nn_layer 2\n'
expect_error "configs/x.ini:2: syntax error (expected [section] or key = value)" configs/x.ini

write x.ini '[train]\nsteps = 50\n'
expect_error "configs/x.ini:2: warmup_steps (100) must be <= steps (50)" configs/x.ini

write empty.ini '; nothing but a comment\n\n'
expect_error "configs/empty.ini: empty config file (expected [section] and key = value lines)" configs/empty.ini

write bin.ini '[model]\nn_layer = 2\0\n'
expect_error "configs/bin.ini:2: not a text file (NUL byte)" configs/bin.ini

long=$(printf '%5000s' '' | tr ' ' x)
write long.ini '[log]\nprobe = %s\n' "$long"
expect_error "configs/long.ini:2: line too long (5008 bytes, at most 4096 allowed)" configs/long.ini

# Overrides apply after the file and are validated like it.
write ok.ini '[model]\nn_layer = 2\n'
expect_error "override 'model.n_head=3': n_embd (128) is not divisible by n_head (3)" \
    configs/ok.ini model.n_head=3
expect_error "override 'model.n_embd=abc': [model] n_embd = 'abc': expected an integer >= 1 and <= 65536" \
    configs/ok.ini model.n_layer=3 model.n_embd=abc
expect_error "override 'model.n_embd': expected section.key=value" configs/ok.ini model.n_embd
expect_error "override 'foo=1': expected section.key=value" configs/ok.ini foo=1
expect_error "override 'train.step=5': unknown key 'step' in [train] (did you mean 'steps'?)" \
    configs/ok.ini train.step=5
expect_error "override 'model.lr=0.1': unknown key 'lr' in [model] (did you mean [train] lr?)" \
    configs/ok.ini model.lr=0.1

if ((failures)); then
    echo "test_config_cli: $failures check(s) failed" >&2
    exit 1
fi
echo "test_config_cli: all checks passed"
