#!/usr/bin/env bash
# Sets up, builds and runs an example app on the embedded server (no ferry server needed).
#   scripts/run-example.sh [EXAMPLE] [ARGS...]     EXAMPLE defaults to hello
set -euo pipefail
cd "$(dirname "$0")/.."
example=${1:-hello}
[ $# -gt 0 ] && shift
bash scripts/setup.sh
cmake --preset dev >/dev/null
cmake --build --preset dev --target "$example" >/dev/null
exec "./build/dev/examples/$example" "$@"
