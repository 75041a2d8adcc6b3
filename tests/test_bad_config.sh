#!/usr/bin/env bash
# The bad-config catalogue, with the real train binary: every key of the key
# table (`train --dump-keys`) with a value of the wrong type and values out of
# its range (in a file and as an override), generated here so that a new key
# is tested without editing this file; then the golden cases of
# tests/bad_config/ (malformed files, bad overrides, cross-key conflicts, bad
# config paths, run folders; README there). Each case: exit status 2 and
# exactly one stderr line, compared whole. Nothing may be written: no runs/
# folder appears, and an existing run folder stays byte-identical.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"
train="$build/train"

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
    [[ $3 == *min_open* ]] && lo=">"
    [[ $3 == *max_open* ]] && hi="<"
    why+=" $lo $(awk -v x="$1" 'BEGIN { printf "%g", x }')"
    [[ $2 == inf ]] || why+=" and $hi $(awk -v x="$2" 'BEGIN { printf "%g", x }')"
    echo "$why"
}

printf '[model]\nn_layer = 1\n' > ok.ini

# One line a key: section key type min max flags names longest ("-" where a
# column does not apply; flags joined by '|', names by ',').
"$train" --dump-keys > keys.txt || fail "train --dump-keys failed"
n_keys=0 n_task_keys=0
while read -r sec key type min max flags names longest; do
    n_keys=$((n_keys + 1))
    [[ $sec == task ]] && n_task_keys=$((n_task_keys + 1))
    case $type in
    int)
        for v in abc 2.5 $((min - 1)) $((max + 1)) 99999999999999999999; do
            bad_value "$sec" "$key" "$v" "$(int_why "$min" "$max")"
        done ;;
    u64)
        for v in abc -1 18446744073709551616; do bad_value "$sec" "$key" "$v" "$u64_why"; done ;;
    double)
        why=$(double_why "$min" "$max" "$flags")
        below=$(awk -v x="$min" -v open="$flags" 'BEGIN { print open ~ /min_open/ ? x : x - 1 }')
        above=inf
        [[ $max == inf ]] ||
            above=$(awk -v x="$max" -v open="$flags" 'BEGIN { print open ~ /max_open/ ? x : x + 1 }')
        for v in abc 1e5x nan "$below" "$above"; do bad_value "$sec" "$key" "$v" "$why"; done ;;
    bool)
        for v in maybe 2 ""; do bad_value "$sec" "$key" "$v" "$bool_why"; done ;;
    enum)
        # an empty value means the first name where the key says so (empty_first)
        empty='""'
        [[ $flags == *empty_first* ]] && empty=
        for v in sometimes 1 $empty; do bad_value "$sec" "$key" "$v" "expected one of ${names//,/, }"; done ;;
    string)
        long=$(printf "%$((longest + 11))s" '' | tr ' ' s)
        bad_value "$sec" "$key" "$long" "expected at most $longest bytes (got $((longest + 11)))"
        bad_value "$sec" "$key" $'a\x01b' "expected text without control characters"
        if [[ $flags == *nonempty* ]]; then bad_value "$sec" "$key" '""' "expected a non-empty value"; fi
        if [[ $flags == *folder* ]]; then
            for v in a/b .. .; do bad_value "$sec" "$key" "$v" "expected a folder name (no '/', not '.' or '..')"; done
        fi ;;
    *) fail "key table: [$sec] $key has type '$type', which this test does not know" ;;
    esac
done < keys.txt
[ -e runs ] && fail "a refused config created runs/"

# The table above must be the whole key table: as many keys as the resolved
# config.ini of a real corpus run holds, which leaves out the [task] section
# (and not a parse of nothing).
tiny_run
n_written=$(grep -c '^[a-z_0-9]* = ' runs/a/config.ini)
[[ $((n_keys - n_task_keys)) -eq $n_written && $n_keys -gt 30 && $n_task_keys -eq 8 ]] ||
    fail "train --dump-keys lists $n_keys keys ($n_task_keys of [task]), config.ini $n_written"
grep -q '^\[task\]' runs/a/config.ini && fail "a corpus run's config.ini has a [task] section"

# The golden cases (tests/bad_config/README.md): configs/NAME.ini, or the path
# made below, with the arguments of NAME.args; NAME.expected is the stderr
# line, @FILE@ standing for the config's path.
golden=$QK_SOURCE/tests/bad_config
for f in "$golden"/*.ini "$golden"/*.args; do
    [[ -f ${f%.*}.expected ]] || fail "$f: no ${f%.*}.expected beside it"
done
mkdir configs
cp "$golden"/*.ini configs/
# Config paths that are not config files.
mkdir configs/folder.ini
ln -s loop2.ini configs/symlink_loop.ini
ln -s symlink_loop.ini configs/loop2.ini
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ';' > configs/huge.ini
declare -A path_of=([dev_zero]=/dev/zero [empty_path]="")
# Next to runs/a, a folder that is not a run and a file: a refused config
# touches none of them, even with run.overwrite=true (the checks come before
# the old folder is removed).
mkdir -p runs/b && echo mine > runs/b/notes.txt
touch runs/c
before=$(tree_sum runs)
n_generated=$cases
for expected in "$golden"/*.expected; do
    name=$(basename "$expected" .expected)
    config=configs/$name.ini
    [[ -n ${path_of[$name]+set} ]] && config=${path_of[$name]}
    args=()
    if [[ -f $golden/$name.args ]]; then
        mapfile -t args < "$golden/$name.args"
        for i in "${!args[@]}"; do args[i]=$(printf '%b' "${args[i]}"); done
    fi
    want=$(< "$expected")
    [[ $(wc -l < "$expected") -eq 1 && $want == "qkscope: "* ]] ||
        fail "$expected: expected one line starting with 'qkscope: '"
    want=${want//@FILE@/$config}
    refuse "${want#qkscope: }" "$train" "$config" "${args[@]}"
done
echo "$n_generated cases generated from the key table, $((cases - n_generated)) golden cases"
check "refused configs changed runs/" [ "$(tree_sum runs)" = "$before" ]
finish
