#!/usr/bin/env bash
# Fails, listing each file and what would change, when a C++ source of the project is not as clang-format
# (.clang-format) writes it. Fix with: clang-format -i FILE...
#
#   check_format.sh SOURCE_DIR
set -euo pipefail
cd "$1"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.h' | grep -v '^tests/browser/')
else
  mapfile -t files < <(find src include tests bench examples -name '*.cpp' -o -name '*.hpp' -o -name '*.h' |
    grep -v '^tests/browser/')
fi
if ! problems=$(clang-format --dry-run --Werror "${files[@]}" 2>&1); then
  grep -oE '^[^: ]+\.(cpp|hpp|h):[0-9]+' <<<"$problems" | sed 's/:[0-9]*$//' | sort -u | sed 's/^/not formatted: /' >&2
  head -40 <<<"$problems" >&2
  echo "fix with: clang-format -i FILE... (clang-format $(clang-format --version | grep -o '[0-9][0-9.]*' | head -1))" >&2
  exit 1
fi
