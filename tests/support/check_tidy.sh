#!/usr/bin/env bash
# Fails, listing each finding, when clang-tidy (.clang-tidy) finds something in the project's sources: every
# translation unit under src/, and the headers under src/ and include/ that they include. Needs a build
# directory with compile_commands.json (every preset writes one). Fix what it reports; a finding that is
# wrong for one line gets `// NOLINT(check-name): why` there.
#
#   check_tidy.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
tidy=$(command -v clang-tidy-16 || command -v clang-tidy || true)
run=$(command -v run-clang-tidy-16 || command -v run-clang-tidy || true)
if [ -z "$tidy" ] || [ -z "$run" ]; then
  echo "check_tidy: clang-tidy is not installed (scripts/setup.sh installs clang-tidy-16)" >&2
  exit 1
fi
[ -f "$build/compile_commands.json" ] || { echo "check_tidy: no $build/compile_commands.json; configure first" >&2; exit 1; }
# (run-clang-tidy takes regular expressions of the files to check, matched against compile_commands.json.)
if ! out=$("$run" -clang-tidy-binary "$tidy" -p "$build" -quiet -j "$(nproc)" \
  -header-filter "^$src/(src|include)/" "^$src/src/.*\\.cpp\$" 2>&1); then
  if grep -qE '(warning|error): ' <<<"$out"; then
    grep -E '(warning|error): ' <<<"$out" | sort -u >&2
    echo "check_tidy: clang-tidy found the above (checks in .clang-tidy)" >&2
  else
    # No finding: clang-tidy itself failed (it crashes on some code: see the stack dump's file and check).
    grep -E 'Program arguments|^[0-9]+\.\s|Stack dump|error' <<<"$out" | head -n 20 >&2 || tail -n 20 <<<"$out" >&2
    echo "check_tidy: clang-tidy failed without a finding (above: what it was doing)" >&2
  fi
  exit 1
fi
