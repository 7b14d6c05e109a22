#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang 16, ASan + UBSan) and fuzzes each for a bounded
# time, starting from its seed corpus (tests/fuzz/corpus/TARGET) plus what earlier runs on this machine
# found (build/fuzz/corpus/TARGET). Prints, per target, the inputs it ran and the new ones it found.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     SECONDS per target (default 60); targets: codec frame handshake http
#
# A crash (or a hang past 10 s, or a leak) stops the run with exit code 1 and leaves the input in
# build/fuzz/artifacts/TARGET/. Reproduce it with `build/fuzz/tests/fuzz/TARGET_fuzz FILE`; once fixed, copy
# it into tests/fuzz/regressions/TARGET/ under a name that says what it found, so that every build's
# fuzz_replay.TARGET test runs it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in -h | --help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(codec frame handshake http)
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2; }

bash scripts/setup.sh
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz

export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-/usr/lib/llvm-16/bin/llvm-symbolizer}  # reports name lines
for target in "${targets[@]}"; do
  binary=build/fuzz/tests/fuzz/${target}_fuzz
  [ -x "$binary" ] || { echo "fuzz.sh: no fuzz target '$target' (targets: codec frame handshake http)" >&2; exit 2; }
  corpus=build/fuzz/corpus/$target
  artifacts=build/fuzz/artifacts/$target/
  log=build/fuzz/$target.log
  mkdir -p "$corpus" "$artifacts"
  dict=()
  [ -f "tests/fuzz/$target.dict" ] && dict=(-dict="tests/fuzz/$target.dict")
  echo "fuzz: $target for ${seconds} s (log: $log)" >&2
  # New inputs go into the first directory (the machine's own corpus); the seeds are only read.
  if ! "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$artifacts" "${dict[@]}" "$corpus" "tests/fuzz/corpus/$target" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target FAILED: the input is in $artifacts (see the lines above and $log)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  found=$(sed -n 's/^stat::new_units_added: *//p' "$log")
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  echo "fuzz: $target: $runs inputs in ${seconds} s, $found new, ${coverage:-cov: ?}, no crash"
done
