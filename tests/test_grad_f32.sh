#!/usr/bin/env bash
# The float build's gradients (the product's kernels) against the double
# build's, which test_grad checks by finite differences.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"
"$QK_BUILD/tests/grad_dump_f32" "$tmp/g32.bin"
"$QK_BUILD/tests/grad_dump_f64" --compare "$tmp/g32.bin"
