#!/usr/bin/env bash
# Sets up (Debian packages), builds and runs ferry's whole test suite, in stages:
#   dev    Debug build (build/dev-unity): unit and end-to-end tests with real server and container
#          processes, chaos and soak, docs, the dashboard in a browser, the out-of-tree SDK install
#   tidy   clang-tidy over src/ and the headers it includes (.clang-tidy), on the dev build's compile commands
#   fuzz   the libFuzzer targets, a bounded time each (scripts/fuzz.sh; FERRY_FUZZ_SECONDS, default 60)
#   asan   AddressSanitizer + UndefinedBehaviorSanitizer build: the tests that run ferry's code, but the soak,
#          browser and install tests
#   tsan   ThreadSanitizer build: the same tests
# `scripts/test.sh STAGE...` runs only those stages (`scripts/test.sh dev` while developing). Stops at the
# first stage that fails; exit code 0 when all pass.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,11s/^# \{0,1\}//p' "$0"; }
all_stages=(dev tidy fuzz asan tsan)
stages=()
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    dev | tidy | fuzz | asan | tsan) stages+=("$arg") ;;
    *) echo "test.sh: unknown stage '$arg' (stages: ${all_stages[*]})" >&2; exit 2 ;;
  esac
done
[ ${#stages[@]} -gt 0 ] || stages=("${all_stages[@]}")

bash scripts/setup.sh

run_stage() {
  local stage=$1 start=$SECONDS
  echo "== test.sh: stage $stage" >&2
  case "$stage" in
    fuzz) bash scripts/fuzz.sh "${FERRY_FUZZ_SECONDS:-60}" ;;
    tidy)
      cmake --preset dev >/dev/null
      bash tests/support/check_tidy.sh . build/dev
      ;;
    *)
      # The dev stage builds as unity batches, in a directory of its own (build/dev stays per-file, for
      # clang-tidy and incremental builds).
      local preset=$stage
      [ "$stage" = dev ] && preset=dev-unity
      cmake --preset "$preset" >/dev/null
      cmake --build --preset "$preset"
      ctest --preset "$preset"
      ;;
  esac
  echo "== test.sh: stage $stage passed in $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s" >&2
}

# (Not `run_stage || ...`: that would turn off `set -e` inside it.)
current=""
trap 'status=$?; [ $status -eq 0 ] || [ -z "$current" ] || echo "== test.sh: stage $current FAILED" >&2' EXIT
for current in "${stages[@]}"; do
  run_stage "$current"
done
current=""
