#!/usr/bin/env bash
# The bad-config catalogue, with the real train binary: every key of the key
# table in src/config.c with a value of the wrong type and values out of its
# range (in a file and as an override), then malformed files, bad overrides,
# cross-key conflicts and bad config paths. Each case: exit status 2 and
# exactly one stderr line, compared whole. Nothing may be written: no runs/
# folder appears, and an existing run folder stays byte-identical.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"
train="$build/train"

# keys_table: one line per key of src/config.c's table, in table order:
#   section key type min max flags enum-names string-size
# ("-" where a column does not apply), read from the C source itself so a new
# key is tested without editing this file.
keys_table() {
    awk '
        FILENAME ~ /config\.h$/ {
            if ($1 == "#define" && $2 == "CONFIG_STR") config_str = $3
            if ($1 == "char" && match($2, /\[[A-Z_0-9]+\]/)) {
                size = substr($2, RSTART + 1, RLENGTH - 2)
                size_of[substr($2, 1, RSTART - 1)] = size == "CONFIG_STR" ? config_str : size
            }
            next
        }
        /^static const char \*const [a-z_]+_names\[\] = \{/ {
            list = $0
            sub(/.*= \{/, "", list); sub(/, NULL\};.*/, "", list); gsub(/"/, "", list)
            names_of[$5] = list
            next
        }
        /^static const KeyDesc keys\[\] = \{/ { table = 1; next }
        table && /^\};/ { table = 0 }
        table { entry = entry " " $0 }
        table && /\},$/ { emit(entry); entry = "" }
        function field(text, name,   v) {
            if (!match(text, "\\." name " = [^,}]+")) return "-"
            v = substr(text, RSTART + length(name) + 4, RLENGTH - length(name) - 4)
            return v
        }
        function emit(e,   head, part, names) {
            match(e, /KEY\([^)]*\)/)
            head = substr(e, RSTART + 4, RLENGTH - 5)
            gsub(/[" ]/, "", head)
            split(head, part, ",")
            names = field(e, "names")
            print part[1], part[2], part[3], field(e, "min"), field(e, "max"),
                  field(e, "flags") == "-" ? "-" : field(e, "flags"),
                  names == "-" ? "-" : names_of[names "[]"],
                  part[3] == "KEY_STRING" ? size_of[part[4]] : "-"
        }' "$QK_SOURCE/src/config.h" "$QK_SOURCE/src/config.c" |
        # flags such as "NONEMPTY | FOLDER" and name lists "a, b" as one word
        sed -E 's/ \| /|/g; s/, /,/g'
}

# shown TEXT: TEXT as messages quote it: control bytes as \xNN, cut to 60
# bytes followed by "..." (the test's values are ASCII).
shown() {
    local s=$1 out="" i c
    ((${#s} > 60)) && s=${s:0:60}
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        if [[ $c == [[:cntrl:]] ]]; then out+=$(printf '\\x%02x' "'$c"); else out+=$c; fi
    done
    ((${#1} > 60)) && out+="..."
    printf '%s' "$out"
}

# bad_value SECTION KEY VALUE WHY: the value in a file and as an override.
bad_value() {
    local sec=$1 key=$2 value=$3 why=$4
    printf '[%s]\n%s = %s\n' "$sec" "$key" "$value" > v.ini
    refuse "v.ini:2: [$sec] $key = '$(shown "$value")': $why" "$train" v.ini
    refuse "override '$(shown "$sec.$key=$value")': [$sec] $key = '$(shown "$value")': $why" \
        "$train" ok.ini "$sec.$key=$value"
}

# The expected-value text of config.c's key_expect for each type.
int_why() { echo "expected an integer >= $1 and <= $2"; }
u64_why="expected an integer >= 0 and <= 18446744073709551615"
bool_why="expected true or false (or yes/no, on/off, 1/0)"
double_why() { # MIN MAX FLAGS
    local lo=">=" hi="<=" why="expected a number"
    [[ $3 == *MIN_OPEN* ]] && lo=">"
    [[ $3 == *MAX_OPEN* ]] && hi="<"
    why+=" $lo $(awk -v x="$1" 'BEGIN { printf "%g", x }')"
    [[ $2 == INFINITY ]] || why+=" and $hi $(awk -v x="$2" 'BEGIN { printf "%g", x }')"
    echo "$why"
}

printf '[model]\nn_layer = 1\n' > ok.ini

n_keys=0 n_task_keys=0
while read -r sec key type min max flags names size; do
    n_keys=$((n_keys + 1))
    [[ $sec == task ]] && n_task_keys=$((n_task_keys + 1))
    case $type in
    KEY_INT)
        why=$(int_why "$(awk -v x="$min" 'BEGIN { printf "%d", x }')" \
            "$(awk -v x="$max" 'BEGIN { printf "%d", x }')")
        for v in abc 2.5 "$(awk -v x="$min" 'BEGIN { printf "%d", x - 1 }')" \
            "$(awk -v x="$max" 'BEGIN { printf "%d", x + 1 }')" 99999999999999999999; do
            bad_value "$sec" "$key" "$v" "$why"
        done ;;
    KEY_U64)
        for v in abc -1 18446744073709551616; do bad_value "$sec" "$key" "$v" "$u64_why"; done ;;
    KEY_DOUBLE)
        why=$(double_why "$min" "$max" "$flags")
        below=$(awk -v x="$min" -v open="${flags//|/ }" 'BEGIN { print open ~ /MIN_OPEN/ ? x : x - 1 }')
        above=inf
        [[ $max == INFINITY ]] ||
            above=$(awk -v x="$max" -v open="${flags//|/ }" 'BEGIN { print open ~ /MAX_OPEN/ ? x : x + 1 }')
        for v in abc 1e5x nan "$below" "$above"; do bad_value "$sec" "$key" "$v" "$why"; done ;;
    KEY_BOOL)
        for v in maybe 2 ""; do bad_value "$sec" "$key" "$v" "$bool_why"; done ;;
    KEY_ENUM)
        # an empty value means the first name where the key says so (EMPTY_FIRST)
        empty='""'
        [[ $flags == *EMPTY_FIRST* ]] && empty=
        for v in sometimes 1 $empty; do bad_value "$sec" "$key" "$v" "expected one of ${names//,/, }"; done ;;
    KEY_STRING)
        long=$(printf "%$((size + 10))s" '' | tr ' ' s)
        bad_value "$sec" "$key" "$long" "expected at most $((size - 1)) bytes (got $((size + 10)))"
        bad_value "$sec" "$key" $'a\x01b' "expected text without control characters"
        if [[ $flags == *NONEMPTY* ]]; then bad_value "$sec" "$key" '""' "expected a non-empty value"; fi
        if [[ $flags == *FOLDER* ]]; then
            for v in a/b .. .; do bad_value "$sec" "$key" "$v" "expected a folder name (no '/', not '.' or '..')"; done
        fi ;;
    *) fail "key table: [$sec] $key has type '$type', which this test does not know" ;;
    esac
done < <(keys_table)
[ -e runs ] && fail "a refused config created runs/"

# The table above must be the whole key table: as many keys as the resolved
# config.ini of a real corpus run holds, which leaves out the [task] section
# (and not a parse of nothing).
tiny_run
n_written=$(grep -c '^[a-z_0-9]* = ' runs/a/config.ini)
[[ $((n_keys - n_task_keys)) -eq $n_written && $n_keys -gt 30 && $n_task_keys -eq 8 ]] ||
    fail "key table read from src/config.c has $n_keys keys ($n_task_keys of [task]), config.ini $n_written"
grep -q '^\[task\]' runs/a/config.ini && fail "a corpus run's config.ini has a [task] section"

# Malformed files, one line per case: printf format of the file | message.
long_line=$(printf '%5000s' '' | tr ' ' x)
while IFS= read -r line; do
    # shellcheck disable=SC2059 # the format is the point
    printf "${line%% | *}" "$long_line" > c.ini
    refuse "${line#* | }" "$train" c.ini
done <<'CASES'
[model]\nn_layer = 2\nn_head = 2\nn_layer = 3\n | c.ini:4: [model] n_layer set twice (first at line 2)
[model]\nn_layer = 2\n[train]\nsteps = 40\n[model]\nn_layer = 3\n | c.ini:6: [model] n_layer set twice (first at line 2)
 | c.ini: empty config file (expected [section] and key = value lines)
\n\n   \n | c.ini: empty config file (expected [section] and key = value lines)
; a comment\n[model]\n# another\n | c.ini: empty config file (expected [section] and key = value lines)
\177ELF\002\001\001\000\000\000 | c.ini:1: not a text file (NUL byte)
[model]\nn_layer = 2\n\000\000\000\000 | c.ini:3: not a text file (NUL byte)
\211PNG\r\n\032\n | c.ini:1: not a text file (invalid UTF-8)
[log]\nprobe = caf\351\n | c.ini:2: not a text file (invalid UTF-8)
\357\273\277[model]\nn_layer = 2\n\357\273\277 | c.ini:3: syntax error (expected [section] or key = value)
[log]\nprobe = %s\n | c.ini:2: line too long (5008 bytes, at most 4096 allowed)
[model]\n; %s\n | c.ini:2: line too long (5002 bytes, at most 4096 allowed)
%s | c.ini:1: line too long (5000 bytes, at most 4096 allowed)
[model]\nn_layer 2\n | c.ini:2: syntax error (expected [section] or key = value)
[model\nn_layer = 2\n | c.ini:1: syntax error (expected [section] or key = value)
n_layer = 2\n[model]\n | c.ini:1: key 'n_layer' before any [section] line
[modle]\nn_layer = 2\n | c.ini:1: unknown section [modle] (did you mean [model]?)
[optimizer]\nlr = 1\n | c.ini:1: unknown section [optimizer] (valid sections: [run], [data], [task], [model], [train], [log])
[]\n | c.ini:1: unknown section [] (valid sections: [run], [data], [task], [model], [train], [log])
[model]\nn_emb = 64\n | c.ini:2: unknown key 'n_emb' in [model] (did you mean 'n_embd'?)
[model]\nlr = 0.1\n | c.ini:2: unknown key 'lr' in [model] (did you mean [train] lr?)
[run]\n= 5\n | c.ini:2: unknown key '' in [run] (valid keys: name, out_dir, seed, threads, overwrite, resume)
[model]\nn_embd = 30\nn_head = 4\n | c.ini:3: n_embd (30) is not divisible by n_head (4)
[train]\nlr = 1e-4\nmin_lr = 0.001\n | c.ini:3: min_lr (0.001) must be <= lr (0.0001)
[train]\nsteps = 50\n | c.ini:2: warmup_steps (100) must be <= steps (50)
[train]\nstop_after = 2001\n | c.ini:2: stop_after (2001) must be <= steps (2000)
[model]\nqk_init = symmetric\nqk = tied\n | c.ini:3: qk_init = symmetric requires qk = untied (qk is tied)
[data]\npath = ""\n | c.ini:2: [data] path is empty: expected a corpus file (or set [data] task)
[data]\ntask = kv\npath = x.txt\n | c.ini:3: [data] path = 'x.txt' given together with [data] task = kv: a task generates its records; remove one of the two
[data]\npath = x.txt\ntask = repeat\n | c.ini:3: [data] path = 'x.txt' given together with [data] task = repeat: a task generates its records; remove one of the two
[data]\ntask = unknown\n | c.ini:2: [data] task = 'unknown': expected one of none, kv, repeat
[task]\nkeys = 5\n | c.ini:2: [task] keys is a parameter of task kv, but [data] task is none
[data]\ntask = repeat\n[task]\nkeys = 5\n | c.ini:4: [task] keys is a parameter of task kv, but [data] task is repeat
[data]\ntask = kv\n[task]\nlen_min = 3\n | c.ini:4: [task] len_min is a parameter of task repeat, but [data] task is kv
[data]\ntask = kv\n[task]\npairs_max = 13\n | c.ini:4: [task] pairs_max (13) must be <= keys (12): a record's keys are distinct
[data]\ntask = kv\n[task]\nkeys = 3\n | c.ini:4: [task] pairs_max (6) must be <= keys (3): a record's keys are distinct
[data]\ntask = kv\n[task]\npairs_min = 7\n | c.ini:4: [task] pairs_min (7) must be <= pairs_max (6)
[data]\ntask = repeat\n[task]\nlen_min = 9\nlen_max = 8\n | c.ini:5: [task] len_min (9) must be <= len_max (8)
[data]\ntask = kv\n[model]\nblock_size = 16\n | c.ini:4: [model] block_size = 16 is too short for task kv: its longest record has 29 characters, which needs block_size >= 28
[model]\nblock_size = 20\n[data]\ntask = repeat\n | c.ini:4: [model] block_size = 20 is too short for task repeat: its longest record has 29 characters, which needs block_size >= 28
CASES

# Config paths that are not config files.
mkdir folder.ini
ln -s loop1.ini loop2.ini
ln -s loop2.ini loop1.ini
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ';' > huge.ini
refuse "none.ini: cannot open config: No such file or directory" "$train" none.ini
refuse "folder.ini: cannot read config: Is a directory" "$train" folder.ini
refuse "loop1.ini: cannot open config: Too many levels of symbolic links" "$train" loop1.ini
refuse "huge.ini: config file larger than 1048576 bytes" "$train" huge.ini
refuse "/dev/zero: config file larger than 1048576 bytes" "$train" /dev/zero
refuse ": cannot open config: No such file or directory" "$train" ""

# Overrides: the syntax, then what applies after the file.
refuse "override 'model.n_embd': expected section.key=value" "$train" ok.ini model.n_embd
refuse "override 'n_embd=64': expected section.key=value" "$train" ok.ini n_embd=64
refuse "override '=5': expected section.key=value" "$train" ok.ini =5
refuse "override '': expected section.key=value" "$train" ok.ini ""
refuse "override '.n_embd=5': unknown section [] (valid sections: [run], [data], [task], [model], [train], [log])" \
    "$train" ok.ini .n_embd=5
refuse "override 'model.=5': unknown key '' in [model] (valid keys: n_layer, n_head, n_embd, block_size, bias, tie_embeddings, qk, qk_init, smear)" \
    "$train" ok.ini model.=5
refuse "override 'modle.n_embd=5': unknown section [modle] (did you mean [model]?)" \
    "$train" ok.ini modle.n_embd=5
refuse "override 'train.step=5': unknown key 'step' in [train] (did you mean 'steps'?)" \
    "$train" ok.ini train.step=5
refuse "override 'model.n_head=3': n_embd (128) is not divisible by n_head (3)" \
    "$train" ok.ini model.n_head=3
refuse "override 'train.steps=10': warmup_steps (100) must be <= steps (10)" \
    "$train" ok.ini train.steps=10
refuse "override 'log.probe=a\x0ab': [log] probe = 'a\x0ab': expected text without control characters" \
    "$train" ok.ini $'log.probe=a\nb'
mapfile -t many < <(seq -f 'run.seed=%g' 257)
refuse "too many overrides (at most 256)" "$train" ok.ini "${many[@]}"
[ "$(ls runs)" = a ] || fail "a refused config created a run folder: $(ls runs)"

# A refused config touches no run folder, even with run.overwrite=true (the
# checks come before the old folder is removed), nor a folder that is not a
# run.
mkdir -p runs/b && echo mine > runs/b/notes.txt
touch runs/c
before=$(tree_sum runs)
sed 's/^n_embd = 16$/n_embd = 16x/' a.ini > a2.ini
refuse "override 'model.n_head=3': n_embd (16) is not divisible by n_head (3)" \
    "$train" a.ini --overwrite model.n_head=3
refuse "a2.ini:$(grep -n '^n_embd' a2.ini | cut -d: -f1): [model] n_embd = '16x': expected an integer >= 1 and <= 65536" \
    "$train" a2.ini --overwrite
refuse "runs/a: run folder already holds a run; set run.overwrite=true to replace it, or choose another run.name" \
    "$train" a.ini
refuse "runs/b: not a qkscope run folder (no config.ini); refusing to overwrite it" \
    "$train" a.ini run.name=b --overwrite
refuse "runs/c: exists and is not a folder (run.name / run.out_dir)" "$train" a.ini run.name=c
check "refused configs changed runs/" [ "$(tree_sum runs)" = "$before" ]
finish
