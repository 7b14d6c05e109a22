#!/usr/bin/env bash
# Sets up (Debian packages), builds and runs ferry's whole test suite: unit tests, end-to-end tests with
# real server and container processes, and the out-of-tree SDK test. Exit code 0 when all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset dev >/dev/null
cmake --build --preset dev
ctest --preset dev
