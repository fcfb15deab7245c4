#!/bin/bash
# Runs one libFuzzer harness on RUNS inputs, starting from its corpora.
#
# Usage: run-fuzzer.sh FUZZER RUNS DICT ARTIFACT_DIR CORPUS...
#
# The random seed is fixed (HEXZ_FUZZ_SEED, default 1), so the run tries
# the same mutations each time. The seed corpus contains snapshots with a
# fresh id and creation time, so the inputs still differ slightly between
# builds. A run also stops after 180 seconds on a slow machine.
#
# New inputs go to a temporary folder removed at the end, so the corpora
# given stay as they are. A crash, leak or timeout is kept in ARTIFACT_DIR;
# bench/fuzz --keep copies such files into tests/fuzz/regressions/.
set -u

fuzzer=$1
runs=$2
dict=$3
artifacts=$4
shift 4

work=$(mktemp -d "${TMPDIR:-/tmp}/hexz-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"

corpora=()
for dir in "$@"; do
  [ -d "$dir" ] && corpora+=("$dir")
done

options=(-seed="${HEXZ_FUZZ_SEED:-1}" -runs="$runs" -max_total_time=180 -timeout=20 -rss_limit_mb=2048 -max_len=262144
         -print_final_stats=1 -artifact_prefix="$artifacts/")
[ -f "$dict" ] && options+=(-dict="$dict")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

"$fuzzer" "${options[@]}" "$work" "${corpora[@]}"
status=$?

if [ $status -ne 0 ]; then
  echo "$(basename "$fuzzer") failed with status $status; the input is in $artifacts:" >&2
  ls -l "$artifacts" >&2
fi
exit $status
