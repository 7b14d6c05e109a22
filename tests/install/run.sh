#!/usr/bin/env bash
# The SDK as a user installs it: scripts/install.sh (a Release build of the library and the CLI) into a
# scratch prefix, then two out-of-tree apps built against it with find_package(ferry CONFIG REQUIRED) and no
# other settings: tests/install/app, and the README's own CMakeLists.txt and first app, taken verbatim.
set -euo pipefail
source_dir=$1 work=$2
rm -rf "$work"
mkdir -p "$work"
bash "$source_dir/scripts/install.sh" "$work/prefix" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; exit 1; }
prefix=$work/prefix
"$prefix/bin/ferry" --version >/dev/null
if ! ls "$prefix"/lib*/cmake/ferry/ferry-targets-release.cmake >/dev/null 2>&1; then
  echo "the installed library is not a Release build:" "$prefix"/lib*/cmake/ferry/ferry-targets-*.cmake >&2
  exit 1
fi

build_and_run() {  # SOURCE_DIR NAME: configures with nothing but the prefix, builds, runs; prints its output
  cmake -S "$1" -B "$work/build-$2" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >"$work/$2.log" 2>&1 &&
    cmake --build "$work/build-$2" >>"$work/$2.log" 2>&1 || { cat "$work/$2.log" >&2; exit 1; }
  "$work/build-$2/$2"
}

out=$(build_and_run "$source_dir/tests/install/app" out_of_tree_app)
if [ "$out" != "sum=6 greeting=hello, sdk" ]; then
  echo "unexpected output of tests/install/app: $out" >&2
  exit 1
fi

# The README's snippets, verbatim: the first ```cmake block after "## Using the SDK", the first ```cpp block
# after "## A first app".
readme_block() {  # HEADING LANGUAGE
  awk -v heading="$1" -v lang="$2" '
    index($0, heading) == 1 { in_section = 1; next }
    in_section && $0 == "```" lang { in_block = 1; next }
    in_block && $0 == "```" { exit }
    in_block { print }' "$source_dir/README.md"
}
mkdir -p "$work/readme"
readme_block "## Using the SDK from your own project" cmake >"$work/readme/CMakeLists.txt"
readme_block "## A first app" cpp >"$work/readme/main.cpp"
grep -q find_package "$work/readme/CMakeLists.txt" || { echo "no CMake snippet found in README.md" >&2; exit 1; }
grep -q app.main "$work/readme/main.cpp" || { echo "no first app found in README.md" >&2; exit 1; }
out=$(build_and_run "$work/readme" app)
if [ "$out" != "42" ]; then
  echo "unexpected output of the README's app: $out" >&2
  exit 1
fi
echo "installed SDK: tests/install/app and the README's app build and run"
