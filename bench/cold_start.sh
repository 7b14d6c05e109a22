#!/usr/bin/env bash
# Cold start of a container (docs/benchmarks.md, "Beyond one machine"): `ferry run examples/hello` (a
# program that registers, makes one call in a new container, and exits), median of 11, against a server that
# runs its containers itself, then against one whose containers run on an agent on this machine.
#
#   cold_start.sh [FERRY [HELLO]]   (default: the release build's)
set -euo pipefail
ferry=${1:-build/release/src/ferry}
hello=${2:-build/release/examples/hello}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() {
  for _ in $(seq 11); do
    s=$(date +%s%N); "$ferry" run --server "$1" --state-dir "$2" "$hello" >/dev/null; e=$(date +%s%N)
    echo $(( (e - s) / 1000 ))
  done | median
}
for mode in local manual; do
  state=$(mktemp -d)
  "$ferry" server --port 0 --state-dir "$state" --agents "$mode" >"$state/log" 2>&1 &
  server=$!
  until grep -q " listening on " "$state/log"; do sleep 0.05; done
  address=$(sed -n 's/.* listening on \([^ ]*\) .*/\1/p' "$state/log")
  agent=""
  if [ "$mode" = manual ]; then
    "$ferry" agent --server "$address" --state-dir "$state" --cache-dir "$state/cache" 2>"$state/agent.log" &
    agent=$!
    until grep -q "joined" "$state/log"; do sleep 0.05; done
  fi
  echo "$mode: $(measure "$address" "$state") us"
  [ -n "$agent" ] && kill -TERM "$agent" && wait "$agent" || true
  kill -TERM "$server"; wait "$server" || true
  rm -rf "$state"
done
