#!/usr/bin/env bash
# Builds in release mode and runs ferry's benchmark; prints a Markdown table and writes it to
# bench-results.md. Arguments go to the benchmark (ferry_bench --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target ferry_bench >/dev/null
exec ./build/release/bench/ferry_bench "$@"
