#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang 16, ASan + UBSan) and fuzzes each for a bounded
# time, starting from its seed corpus (tests/fuzz/corpus/TARGET) plus what earlier runs on this machine
# found (build/fuzz/corpus/TARGET), as many targets at once as there are cores. Prints, per target, the
# inputs it ran and the new ones it found.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     SECONDS per target (default 60); targets: codec frame handshake http
#
# A crash (or a hang past 10 s, or a leak) fails the run with exit code 1 and leaves the input in
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
  [ -x "build/fuzz/tests/fuzz/${target}_fuzz" ] ||
    { echo "fuzz.sh: no fuzz target '$target' (targets: codec frame handshake http)" >&2; exit 2; }
done

# A fuzzer uses one core: as many run at once as there are cores, each for its full time.
fuzz() {
  local target=$1 corpus=build/fuzz/corpus/$1 artifacts=build/fuzz/artifacts/$1/ dict=()
  mkdir -p "$corpus" "$artifacts"
  [ -f "tests/fuzz/$target.dict" ] && dict=(-dict="tests/fuzz/$target.dict")
  local status=0
  "build/fuzz/tests/fuzz/${target}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts" "${dict[@]}" "$corpus" "tests/fuzz/corpus/$target" \
    >"build/fuzz/$target.log" 2>&1 || status=$?
  echo "$status" >"build/fuzz/$target.status"
}
running=0
for target in "${targets[@]}"; do
  if ((running >= $(nproc))); then
    wait -n || true
    running=$((running - 1))
  fi
  echo "fuzz: $target for ${seconds} s (log: build/fuzz/$target.log)" >&2
  rm -f "build/fuzz/$target.status"
  fuzz "$target" &
  running=$((running + 1))
done
wait

failed=0
for target in "${targets[@]}"; do
  log=build/fuzz/$target.log
  if [ "$(cat "build/fuzz/$target.status" 2>/dev/null)" != 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target FAILED: the input is in build/fuzz/artifacts/$target/ (see the lines above and $log)" >&2
    failed=1
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  found=$(sed -n 's/^stat::new_units_added: *//p' "$log")
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  echo "fuzz: $target: $runs inputs in ${seconds} s, $found new, ${coverage:-cov: ?}, no crash"
done
exit "$failed"
