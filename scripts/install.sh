#!/usr/bin/env bash
# Builds ferry's SDK (headers, static library, CMake package) and the `ferry` CLI optimized (Release), and
# installs them under PREFIX, for apps built out of tree with find_package(ferry CONFIG REQUIRED).
#   scripts/install.sh [PREFIX]        PREFIX defaults to /usr/local
# Sets up the Debian packages it needs first (scripts/setup.sh). Prints the prefix's layout when done.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h | --help) sed -n '2,5s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac
prefix=${1:-/usr/local}
bash scripts/setup.sh
cmake --preset install >/dev/null
cmake --build --preset install
cmake --install build/install --prefix "$prefix" >/dev/null
library=$(find "$prefix" -name libferry.a -newer build/install/CMakeCache.txt | head -1)
echo "installed $(build/install/src/ferry --version | head -1) into $prefix:"
echo "  $prefix/bin/ferry, $prefix/include/ferry/, $library, $(dirname "$library")/cmake/ferry/"
echo "  apps: find_package(ferry CONFIG REQUIRED) with -DCMAKE_PREFIX_PATH=$prefix"
