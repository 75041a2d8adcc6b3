#!/usr/bin/env bash
# The bad-argument catalogue, with the real binaries: for every command,
# missing arguments and values, unknown flags, negative or malformed counts
# and numbers, and values that do not fit the checkpoint. Each case: exit
# status 2 and exactly one stderr line, compared whole; --help still works.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

tiny_run
mkdir not_a_run

# One case a line: COMMAND ARG... | MESSAGE. The command is a binary of the
# build; the word @CK stands for the run's checkpoint (in the message too);
# arguments are single words ('' for an empty one).
ck=runs/a/ckpt/latest.safetensors
while IFS= read -r line; do
    read -ra words <<< "${line%% | *}"
    args=()
    for w in "${words[@]:1}"; do
        case $w in
        @CK) args+=("$ck") ;;
        "''") args+=("") ;;
        *) args+=("$w") ;;
        esac
    done
    msg=${line#* | }
    refuse "${msg//@CK/$ck}" "$build/${words[0]}" "${args[@]}"
done <<'CASES'
train | train: 0 arguments given, expected a CONFIG file (train CONFIG [section.key=value ...]; see train --help)
train --resume a.ini | unknown option '--resume' (see train --help; the CONFIG file comes first)
train a.ini --bogus | unknown option '--bogus' (see train --help)
train a.ini -5 | unknown option '-5' (see train --help)
train --dump-keys a.ini | train: unexpected argument 'a.ini' after --dump-keys (see train --help)
train a.ini train.steps | override 'train.steps': expected section.key=value
train a.ini train.steps=-5 | override 'train.steps=-5': [train] steps = '-5': expected an integer >= 1 and <= 1000000000
train a.ini train.batch_size=-1 | override 'train.batch_size=-1': [train] batch_size = '-1': expected an integer >= 1 and <= 16384
train a.ini run.threads=-2 | override 'run.threads=-2': [run] threads = '-2': expected an integer >= 0 and <= 1024
train a.ini model.init=xavier | override 'model.init=xavier': [model] init = 'xavier': expected one of gpt2, torch
train a.ini --resume run.name=none | runs/none/ckpt/latest.safetensors: no checkpoint to resume from (run.resume=true needs a run that saved one)
qkscope-info | info: 0 arguments given, expected 1 (qkscope info CKPT; see qkscope info --help)
qkscope-info @CK @CK | info: 2 arguments given, expected 1 (qkscope info CKPT; see qkscope info --help)
qkscope-info --bogus | info: unexpected argument '--bogus' (see qkscope info --help)
qkscope-info '' | : cannot open checkpoint: No such file or directory
qkscope-eval | eval: 0 arguments given, expected 1 (qkscope eval CKPT [--data FILE | --records FILE] [--json]; see qkscope eval --help)
qkscope-eval @CK --data | --data: missing value (see qkscope eval --help)
qkscope-eval @CK --records corpus.txt | @CK: --records: the checkpoint was trained on a corpus (corpus.txt), not a task; use --data FILE
qkscope-eval @CK --records | --records: missing value (see qkscope eval --help)
qkscope-eval @CK --bogus | eval: unexpected argument '--bogus' (see qkscope eval --help)
qkscope-eval @CK @CK | eval: unexpected argument '@CK' (see qkscope eval --help)
qkscope-eval @CK model.init=torch | eval: 'model.init=torch': [model] init is a config key, and config keys apply when training (train CONFIG model.init=...; allowed: gpt2, torch)
qkscope-roles @CK model.init=torch | roles: 'model.init=torch': [model] init is a config key, and config keys apply when training (train CONFIG model.init=...; allowed: gpt2, torch)
qkscope-sample @CK train.steps=5 | sample: 'train.steps=5': [train] steps is a config key, and config keys apply when training (train CONFIG train.steps=...)
qkscope-sample | sample: 0 arguments given, expected 1 (qkscope sample CKPT [--prompt TEXT] [--tokens N] [--temperature T]; see qkscope sample --help)
qkscope-sample @CK --tokens | --tokens: missing value, expected an integer from 0 to 10000000
qkscope-sample @CK --tokens -5 | --tokens '-5': expected an integer from 0 to 10000000
qkscope-sample @CK --tokens 5x | --tokens '5x': expected an integer from 0 to 10000000
qkscope-sample @CK --tokens 1e3 | --tokens '1e3': expected an integer from 0 to 10000000
qkscope-sample @CK --tokens 99999999999999999999 | --tokens '99999999999999999999': expected an integer from 0 to 10000000
qkscope-sample @CK --top-k -1 | --top-k '-1': expected an integer from 0 to 1048576
qkscope-sample @CK --seed -1 | --seed '-1': expected an integer from 0 to 2147483647
qkscope-sample @CK --temperature 0 | --temperature '0': expected a number from 0.001 to 1000
qkscope-sample @CK --temperature -1 | --temperature '-1': expected a number from 0.001 to 1000
qkscope-sample @CK --temperature nan | --temperature 'nan': expected a number from 0.001 to 1000
qkscope-sample @CK --temperature inf | --temperature 'inf': expected a number from 0.001 to 1000
qkscope-sample @CK --temperature '' | --temperature '': expected a number from 0.001 to 1000
qkscope-sample @CK --temperature | --temperature: missing value, expected a number from 0.001 to 1000
qkscope-sample @CK --prompt | --prompt: missing value (see qkscope sample --help)
qkscope-sample @CK --prompt QQ | --prompt: character 'Q' (U+0051) at character 0 is not in the vocabulary
qkscope-sample @CK -t 5 | sample: unexpected argument '-t' (see qkscope sample --help)
qkscope-sample @CK extra | sample: unexpected argument 'extra' (see qkscope sample --help)
qkscope-probe | probe: 0 arguments given, expected 1 (qkscope probe CKPT (--text TEXT | --file F) [--out DIR]; see qkscope probe --help)
qkscope-probe @CK | probe: give exactly one of --text and --file
qkscope-probe @CK --text line --file corpus.txt | probe: give exactly one of --text and --file
qkscope-probe @CK --text '' | --text: empty text, expected at least 2 characters (inputs and targets)
qkscope-probe @CK --text l | --text: one character, expected at least 2 characters (inputs and targets)
qkscope-probe @CK --text QQ | --text: character 'Q' (U+0051) at character 0 is not in the vocabulary
qkscope-probe @CK --file | --file: missing value (see qkscope probe --help)
qkscope-probe @CK --text line --out | --out: missing value (see qkscope probe --help)
qkscope-probe @CK --text line --out corpus.txt | corpus.txt: exists and is not a folder
qkscope-probe @CK --text line --out corpus.txt/x | corpus.txt: exists and is not a folder
qkscope-gauge | gauge: 0 arguments given, expected 2 (qkscope gauge CKPT OUT [--seed S]; see qkscope gauge --help)
qkscope-gauge @CK | gauge: 1 argument given, expected 2 (qkscope gauge CKPT OUT [--seed S]; see qkscope gauge --help)
qkscope-gauge @CK out.st --seed -3 | --seed '-3': expected an integer from 0 to 2147483647
qkscope-gauge @CK out.st --seed x | --seed 'x': expected an integer from 0 to 2147483647
qkscope-gauge @CK no_folder/out.st | no_folder/out.st: cannot write checkpoint: No such file or directory
qkscope-gauge @CK not_a_run | not_a_run: cannot write checkpoint: Is a directory
qkscope-gauge @CK model.init=torch | gauge: 'model.init=torch': [model] init is a config key, and config keys apply when training (train CONFIG model.init=...; allowed: gpt2, torch)
qkscope-compare | compare: 0 arguments given, expected 2 (qkscope compare A B [--text TEXT] [--out DIR]; see qkscope compare --help)
qkscope-compare @CK | compare: 1 argument given, expected 2 (qkscope compare A B [--text TEXT] [--out DIR]; see qkscope compare --help)
qkscope-compare @CK @CK @CK | compare: unexpected argument '@CK' (see qkscope compare --help)
qkscope-compare @CK @CK --text QQ | --text (A's vocabulary): character 'Q' (U+0051) at character 0 is not in the vocabulary
qkscope-compare @CK @CK --text '' | --text: empty text, expected at least 1 character
qkscope-compare @CK @CK --out corpus.txt | corpus.txt: exists and is not a folder
qkscope-report | report: 0 arguments given, expected 1 or 2 (qkscope report RUN_DIR [--out FILE]; see qkscope report --help)
qkscope-report runs/a runs/a runs/a | report: unexpected argument 'runs/a' (see qkscope report --help)
qkscope-report runs/a --out | --out: missing value (see qkscope report --help)
qkscope-report none | none: not a run folder (cannot read none/config.ini)
qkscope-report not_a_run | not_a_run: not a run folder (cannot read not_a_run/config.ini)
qkscope-verify | verify: 0 arguments given, expected at least 1 (qkscope verify CKPT...; see qkscope verify --help)
qkscope-verify @CK --bogus | verify: unexpected argument '--bogus' (see qkscope verify --help)
qkscope-verify @CK none.st | none.st: cannot open checkpoint: No such file or directory
qkscope-report runs/a not_a_run | not_a_run: not a run folder (cannot read not_a_run/config.ini)
qkscope-report runs/a --out not_a_run | not_a_run: cannot write: Is a directory
qkscope-bench | bench: 0 arguments given, expected at least 1 (qkscope bench CONFIG [--steps N] [--warmup N] [--threads N] [section.key=value ...]; see qkscope bench --help)
qkscope-bench a.ini --steps -1 | --steps '-1': expected an integer from 1 to 1000000
qkscope-bench a.ini --steps 0 | --steps '0': expected an integer from 1 to 1000000
qkscope-bench a.ini --warmup -1 | --warmup '-1': expected an integer from 0 to 1000000
qkscope-bench a.ini --threads -1 | --threads '-1': expected an integer from 1 to 1024
qkscope-bench a.ini --threads | --threads: missing value, expected an integer from 1 to 1024
qkscope-bench a.ini --bogus | bench: unexpected argument '--bogus' (see qkscope bench --help)
qkscope-bench none.ini | none.ini: cannot open config: No such file or directory
qkscope-bench a.ini train.steps | override 'train.steps': expected section.key=value
qkscope-bench a.ini model.init=xavier | override 'model.init=xavier': [model] init = 'xavier': expected one of gpt2, torch
CASES
check "refused gauges wrote a checkpoint" [ ! -e out.st ]
check "a refused override was written as a file" [ ! -e model.init=torch ]

# --help is not an error: usage on stdout, status 0, nothing on stderr.
for cmd in train qkscope-info qkscope-eval qkscope-sample qkscope-probe qkscope-gauge \
    qkscope-compare qkscope-report qkscope-bench qkscope-roles qkscope-verify; do
    # shellcheck disable=SC2016 # $1 is the inner shell's
    check "$cmd --help" bash -c '"$1" --help > help.txt 2> err.txt && grep -q "^usage: " help.txt &&
        [ ! -s err.txt ]' _ "$build/$cmd"
done
finish
