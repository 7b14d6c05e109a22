#!/usr/bin/env bash
# Installs ferry from the build tree into a scratch prefix, then configures, builds and runs an
# out-of-tree app against it with find_package(ferry CONFIG REQUIRED), as an SDK user would.
set -euo pipefail
source_dir=$1 build_dir=$2 work=$3
rm -rf "$work"
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/tests/install/app" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
out=$("$work/build/out_of_tree_app")
test -x "$work/prefix/bin/ferry"
if [ "$out" != "sum=6 greeting=hello, sdk" ]; then
  echo "unexpected output: $out" >&2
  exit 1
fi
echo "out-of-tree app: $out"
