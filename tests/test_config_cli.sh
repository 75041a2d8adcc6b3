#!/usr/bin/env bash
# End to end: `train --dump-keys`, the key table that tests/test_bad_config.sh
# generates its per-key cases from (and that test holds the refusals of bad
# configs): exit status 0, nothing on stderr, nothing written; one line of 8
# columns a key, each column filled where its type has one; sections in one
# block each; the keys, in order, of the resolved config.ini of a run.
set -u
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"
train="$build/train"

"$train" --dump-keys > keys.txt 2> err.txt
rc=$?
check "train --dump-keys: exit $rc, expected 0" [ "$rc" -eq 0 ]
check "train --dump-keys printed on stderr: $(cat err.txt)" [ ! -s err.txt ]
check "train --dump-keys wrote files: $(ls)" [ "$(ls)" = "$(printf 'err.txt\nkeys.txt')" ]

# A column is "-" exactly where the key's type has no such thing.
bad_lines=$(awk '
    function num(x) { return x ~ /^-?[0-9.e+]+$|^inf$/ }
    {
        ok = NF == 8 && $3 ~ /^(int|u64|double|bool|enum|string)$/
        ranged = $3 == "int" || $3 == "double"
        ok = ok && (ranged ? num($4) && num($5) : $4 == "-" && $5 == "-")
        ok = ok && $6 ~ /^(-|[a-z_]+(\|[a-z_]+)*)$/
        ok = ok && ($3 == "enum" ? $7 ~ /^[a-z][a-z0-9]*(,[a-z][a-z0-9]*)+$/ : $7 == "-")
        ok = ok && ($3 == "string" ? $8 ~ /^[0-9]+$/ : $8 == "-")
        if (!ok) print NR ": " $0
    }' keys.txt)
check "train --dump-keys: malformed lines: $bad_lines" [ -z "$bad_lines" ]
sections=$(cut -d' ' -f1 keys.txt | uniq | tr '\n' ' ')
check "train --dump-keys: sections not in one block each: $sections" \
    [ "$sections" = "run data task model train log " ]

# A corpus run writes every key but those of [task], in table order.
tiny_run
written=$(awk '/^\[/ { sec = substr($0, 2, length($0) - 2) } /^[a-z_0-9]* = / { print sec, $1 }' \
    runs/a/config.ini)
check "config.ini's keys are not the table's: $(diff <(echo "$written") \
    <(awk '$1 != "task" { print $1, $2 }' keys.txt))" \
    [ "$written" = "$(awk '$1 != "task" { print $1, $2 }' keys.txt)" ]
finish
