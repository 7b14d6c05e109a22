#!/usr/bin/env bash
# Builds in release mode and runs ferry's benchmark; prints a Markdown table and writes it to
# bench-results.md. Arguments go to the benchmark (ferry_bench --help); `--curves DIR` draws the scale
# curves with gnuplot, which this installs (Debian's gnuplot-nox) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [[ " $* " == *" --curves "* ]] && ! command -v gnuplot >/dev/null; then
  [ "$(id -u)" -eq 0 ] && sudo="" || sudo=sudo
  $sudo apt-get install -y --no-install-recommends gnuplot-nox >/dev/null
fi
cmake --preset release >/dev/null
cmake --build --preset release --target ferry_bench >/dev/null
exec ./build/release/bench/ferry_bench "$@"
