#!/usr/bin/env bash
# Builds in release mode and runs ferry's benchmark; prints a Markdown table and writes it to
# bench-results.md. Arguments go to the benchmark (ferry_bench --help); `--curves DIR` draws the scale
# curves with gnuplot, which this installs (Debian's gnuplot-nox) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
[[ " $* " == *" --curves "* ]] && extra=(gnuplot-nox)
bash scripts/setup.sh "${extra[@]}"
cmake --preset release >/dev/null
cmake --build --preset release --target ferry_bench >/dev/null
exec ./build/release/bench/ferry_bench "$@"
