#!/usr/bin/env bash
# Fails, printing them, when any process of the test run wrote a sanitizer report into directory $1
# (the asan and tsan test presets point ASAN_OPTIONS/UBSAN_OPTIONS/TSAN_OPTIONS' log_path there).
set -euo pipefail
reports=$1
shopt -s nullglob
files=("$reports"/report*)
if [ ${#files[@]} -eq 0 ]; then
  echo "no sanitizer reports in $reports"
  exit 0
fi
for f in "${files[@]}"; do
  echo "==== $f"
  cat "$f"
done
echo "${#files[@]} process(es) reported errors (above); each file is named after the process id" >&2
exit 1
