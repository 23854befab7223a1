#!/usr/bin/env bash
# Builds every fuzz target (fuzz/fuzz_targets/*.rs, libFuzzer entry points, stable toolchain, no
# sanitizer: a debug build, so overflow checks are on) and runs each one over every input of its
# corpus in fuzz/corpus/<target>/: a target must not panic on any of them. A target without a
# corpus fails the suite. Long fuzzing campaigns are run with cargo fuzz (fuzz/README.md).
#   fuzz/run.sh        (FLEETGATE_FUZZ_TARGET_DIR: build directory, default fuzz/target)
set -euo pipefail
fuzz=$(cd "$(dirname "$0")" && pwd)
. "$fuzz/../scripts/lib.sh"
require_cmd cargo || exit 0
require_cmd c++ "libFuzzer is C++; Debian package g++" || exit 0
# The fuzz crate is its own workspace with its own lockfile: keep its build apart.
export CARGO_TARGET_DIR=${FLEETGATE_FUZZ_TARGET_DIR:-$fuzz/target}

log "building the fuzz targets"
cargo build --manifest-path "$fuzz/Cargo.toml" --bins

failed=0
targets=0
for source in "$fuzz"/fuzz_targets/*.rs; do
  target=$(basename "$source" .rs)
  targets=$((targets + 1))
  corpus=$fuzz/corpus/$target
  inputs=("$corpus"/*)
  if [ ! -d "$corpus" ] || [ ! -e "${inputs[0]}" ]; then
    echo "FAIL: $target has no corpus in $corpus (seed it and minimise it: fuzz/README.md)" >&2
    failed=$((failed + 1))
    continue
  fi
  # libFuzzer runs each file named on its command line once, in order, and stops at the first
  # panic; xargs keeps the command lines short.
  if printf '%s\0' "${inputs[@]}" | xargs -0 -n 200 "$CARGO_TARGET_DIR/debug/$target" >"$CARGO_TARGET_DIR/$target.replay.log" 2>&1; then
    echo "ok:   $target: ${#inputs[@]} corpus inputs"
  else
    echo "FAIL: $target crashed on its corpus; the end of its output:" >&2
    tail -n 30 "$CARGO_TARGET_DIR/$target.replay.log" >&2
    failed=$((failed + 1))
  fi
done
[ "$targets" -gt 0 ] || { echo "FAIL: no fuzz target in $fuzz/fuzz_targets" >&2; exit 1; }
echo "fuzz corpus: $((targets - failed)) of $targets targets replayed clean"
[ "$failed" -eq 0 ]
