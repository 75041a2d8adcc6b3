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

# write FILE FORMAT [ARGS...]: printf into configs/FILE.
write() {
    local file=$1
    shift
    # shellcheck disable=SC2059 # the format is the point
    printf "$@" >"configs/$file"
}

refuse "configs/none.ini: cannot open config: No such file or directory" "$train" configs/none.ini

write x.ini '[run]\nseed = 7\n\n[model]\nn_layer = 2\nn_embd = abc\n'
refuse "configs/x.ini:6: [model] n_embd = 'abc': expected an integer >= 1 and <= 65536" "$train" configs/x.ini

write x.ini '[train]\nbeta2 = 1\n'
refuse "configs/x.ini:2: [train] beta2 = '1': expected a number >= 0 and < 1" "$train" configs/x.ini

write x.ini '[model]\nqk = sometimes\n'
refuse "configs/x.ini:2: [model] qk = 'sometimes': expected one of untied, tied" "$train" configs/x.ini

write x.ini '[model]\nn_layer = 2\nn_emb = 64\n'
refuse "configs/x.ini:3: unknown key 'n_emb' in [model] (did you mean 'n_embd'?)" "$train" configs/x.ini

write x.ini '[run]\nseed = 1\n[modle]\nn_layer = 2\n'
refuse "configs/x.ini:3: unknown section [modle] (did you mean [model]?)" "$train" configs/x.ini

write x.ini '[model]\nn_layer = 2\nn_head = 2\nn_layer = 3\n'
refuse "configs/x.ini:4: [model] n_layer set twice (first at line 2)" "$train" configs/x.ini

write x.ini '[model]\nn_layer 2\n'
refuse "configs/x.ini:2: syntax error (expected [section] or key = value)" "$train" configs/x.ini

write x.ini '[train]\nsteps = 50\n'
refuse "configs/x.ini:2: warmup_steps (100) must be <= steps (50)" "$train" configs/x.ini

write empty.ini '; nothing but a comment\n\n'
refuse "configs/empty.ini: empty config file (expected [section] and key = value lines)" "$train" configs/empty.ini

write bin.ini '[model]\nn_layer = 2\0\n'
refuse "configs/bin.ini:2: not a text file (NUL byte)" "$train" configs/bin.ini

long=$(printf '%5000s' '' | tr ' ' x)
write long.ini '[log]\nprobe = %s\n' "$long"
refuse "configs/long.ini:2: line too long (5008 bytes, at most 4096 allowed)" "$train" configs/long.ini

# Overrides apply after the file and are validated like it.
write ok.ini '[model]\nn_layer = 2\n'
refuse "override 'model.n_head=3': n_embd (128) is not divisible by n_head (3)" "$train" \
    configs/ok.ini model.n_head=3
refuse "override 'model.n_embd=abc': [model] n_embd = 'abc': expected an integer >= 1 and <= 65536" "$train" \
    configs/ok.ini model.n_layer=3 model.n_embd=abc
refuse "override 'model.n_embd': expected section.key=value" "$train" configs/ok.ini model.n_embd
refuse "override 'foo=1': expected section.key=value" "$train" configs/ok.ini foo=1
refuse "override 'train.step=5': unknown key 'step' in [train] (did you mean 'steps'?)" "$train" \
    configs/ok.ini train.step=5
refuse "override 'model.lr=0.1': unknown key 'lr' in [model] (did you mean [train] lr?)" "$train" \
    configs/ok.ini model.lr=0.1

finish
