#!/usr/bin/env bash
# This build's train, eval, info and sample under valgrind memcheck on a tiny
# run (scripts/memcheck --build): no invalid access, no use of uninitialised
# memory, no definitely or indirectly lost block. Skipped (77) without
# valgrind, and for a sanitizer build (scripts/sanitize), which valgrind
# cannot run.
set -uo pipefail
if ! command -v valgrind > /dev/null; then
    echo "SKIP: valgrind is not installed (apt-get install valgrind)"
    exit 77
fi
if grep -qa -e __asan_init -e __ubsan_handle "$QK_BUILD/src/train"; then
    echo "SKIP: sanitizer build; valgrind cannot run ASan/UBSan binaries"
    exit 77
fi
exec bash "$QK_SOURCE/scripts/memcheck" --build "$QK_BUILD"
