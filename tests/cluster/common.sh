# What the cluster tests share, sourced once `source_dir`, `scratch`, `ferry` and `slurm_port` (slurmctld's:
# each test its own, so that they never meet) are set. Skips (77) unless root; brings the cluster up, after
# taking down what an interrupted earlier run left, and takes it down again on exit, with any server started
# here. Each test's state directory is $state and its server's log $scratch/server.log.
# shellcheck shell=bash
[ "$(id -u)" -eq 0 ] || { echo "skipped: needs root"; exit 77; }
dir=$scratch/slurm
state=$scratch/state
cluster() { bash "$source_dir/scripts/slurm-cluster.sh" --dir "$dir" --port "$slurm_port" "$@"; }
fail() {
  echo "FAILED: $*" >&2
  [ -f "$scratch/server.log" ] && { echo "--- server log:" >&2; tail -n 40 "$scratch/server.log" >&2; }
  exit 1
}
# Waits (up to $1 s) until the command in the other arguments succeeds.
wait_until() {
  local limit=$1
  shift
  for _ in $(seq $((limit * 10))); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}
# Starts `ferry server` on a free port with state directory $state (made afresh) and the arguments given;
# sets server_pid and address.
start_server() {
  rm -rf "$state" && mkdir -p "$scratch" && mkdir -m 700 "$state"
  "$ferry" server --port 0 --state-dir "$state" "$@" >"$scratch/server.log" 2>&1 &
  server_pid=$!
  wait_until 30 grep -q " listening on " "$scratch/server.log" || fail "the server did not start"
  address=$(sed -n 's/.* listening on \([^ ]*\) .*/\1/p' "$scratch/server.log")
}

server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null
  cluster down >/dev/null 2>&1 || true
}
cluster down 2>/dev/null || true
trap cleanup EXIT
eval "$(cluster up --nodes 3)"
