#!/usr/bin/env bash
# ferry on a Slurm cluster, as docs/cluster.md runs it: `ferry server --agents slurm` asks Slurm for agents
# when work waits; examples/cluster_map maps 400 items, each reporting the node it ran on. Mid-map (every item
# held at a gate) one agent's job is cancelled: its containers' items run again elsewhere, Slurm is asked for
# the capacity again, and every result comes back right, from at least two nodes. Stopping the server cancels
# its agents' jobs. Then, on a new server, tests/cluster/slurm_shapes_app.cpp: jobs are sized to what the
# functions ask (memory), and what Slurm will never run (a GPU, 64 CPUs) fails the call saying so; killed
# and started again, that server adopts its agents' jobs and cancels them once idle. `slurm-cluster.sh down`
# then finds no process left. Needs root: skipped (77) otherwise.
#
#   ferry_on_slurm_test.sh SOURCE_DIR SCRATCH_DIR FERRY CLUSTER_MAP SHAPES_APP
set -euo pipefail
source_dir=$1
scratch=$2
ferry=$3
cluster_map=$4
shapes_app=$5
slurm_port=17827
# shellcheck source=tests/cluster/common.sh
source "$source_dir/tests/cluster/common.sh"

rm -rf "$scratch/gate"
start_server --agents slurm --slurm-cpus-per-agent 4

"$ferry" run --server "$address" --state-dir "$state" "$cluster_map" 400 "$scratch/gate" >"$scratch/map.out" 2>&1 &
map_pid=$!

# 8 containers wait (the function's maximum): two agents of 4 CPUs, a node each (nodes have 4 CPUs).
joined() { [ "$(grep -c ' joined from ' "$scratch/server.log")" -ge "$1" ]; }
wait_until 60 joined 2 || fail "two agents did not join within 60 s: $(squeue 2>&1)"
ready() { [ "$("$ferry" ps --server "$address" --state-dir "$state" | grep -c ' ready ')" -ge 8 ]; }
wait_until 60 ready || fail "8 containers were not ready within 60 s: $("$ferry" ps --server "$address" --state-dir "$state")"
nodes=$(squeue -h -o %N | sort -u | wc -l)
[ "$nodes" -ge 2 ] || fail "the agents' jobs run on $nodes node(s): $(squeue 2>&1)"

# One agent's job goes, with 4 items in flight: they run again, on capacity asked for again (none of them
# uses a retry: the function has none).
job=$(sed -n 's/.*(Slurm job \([0-9]*\)).*/\1/p' "$scratch/server.log" | head -n 1)
scancel "$job"
wait_until 60 grep -q "stopped as its agent on .* stopped" "$scratch/server.log" ||
  fail "the cancelled agent's containers were not reported stopped with it"
asked() { [ "$(grep -c 'asked Slurm for an agent' "$scratch/server.log")" -ge 3 ]; }
wait_until 60 asked || fail "the server did not ask Slurm again for the lost capacity"
# Its replacement joins, and 8 items are held again, on two nodes.
wait_until 60 joined 3 || fail "no agent replaced the cancelled one within 60 s: $(squeue 2>&1)"
wait_until 60 ready || fail "8 containers were not ready again: $("$ferry" ps --server "$address" --state-dir "$state")"
touch "$scratch/gate"

status=0
wait "$map_pid" || status=$?
[ "$status" -eq 0 ] || fail "the map exited with $status: $(cat "$scratch/map.out")"
result=$(grep ' items, ' "$scratch/map.out") || fail "no result line: $(cat "$scratch/map.out")"
echo "$result"
[[ "$result" =~ ^400\ items,\ 0\ wrong,\ on\ ([0-9]+)\ nodes ]] || fail "unexpected result: $result"
[ "${BASH_REMATCH[1]}" -ge 2 ] || fail "the map ran on fewer than two nodes: $result"

# Stopping the server cancels its agents' jobs.
kill -TERM "$server_pid"
wait "$server_pid" || fail "the server exited with $?"
server_pid=""
empty() { [ -z "$(squeue -h -o %i)" ]; }
wait_until 60 empty || fail "jobs left after the server stopped: $(squeue 2>&1)"

# Jobs sized to what functions need, on a new server (no agent left over from the map to take them).
rm -rf "$scratch/shapes" && mkdir -p "$scratch/shapes"
start_server --agents slurm
"$ferry" run --server "$address" --state-dir "$state" "$shapes_app" "$scratch/shapes" >"$scratch/shapes.out" 2>&1 ||
  fail "the shapes app failed: $(cat "$scratch/shapes.out")"
cat "$scratch/shapes.out"
# Two containers of 1500 MiB at once: one job for both (3000 MiB) is more than a node has, so one job each.
grep -Eq '^memory: n[1-3]:1500 n[1-3]:1500$' "$scratch/shapes.out" || fail "needs_memory: $(cat "$scratch/shapes.out")"
grep -q "Slurm refused a job for 2 containers of 1500 MiB" "$scratch/server.log" || fail "no job was tried for both"
grep -q "^needs_gpu: 'needs_gpu' cannot run: Slurm will not give an agent with 1 GPU (sbatch: error: Invalid generic resource" \
  "$scratch/shapes.out" || fail "needs_gpu did not fail as Slurm refused it"
grep -q "^needs_64_cpus: 'needs_64_cpus' cannot run: Slurm will not give an agent with 64 CPUs (.*pends for PartitionConfig" \
  "$scratch/shapes.out" || fail "needs_64_cpus did not fail as its job can never start"

# The server dies (kill -9) with its two agents' jobs running; started again on the same port and state, it
# adopts them as their agents reconnect, and cancels them once they are idle.
[ "$(squeue -h -o %i | wc -l)" -eq 2 ] || fail "expected the 2 jobs of needs_memory: $(squeue 2>&1)"
port=${address##*:}
kill -KILL "$server_pid"
wait "$server_pid" 2>/dev/null || true
"$ferry" server --port "$port" --state-dir "$state" --agents slurm --slurm-idle 3 >"$scratch/server.log" 2>&1 &
server_pid=$!
adopted() { [ "$(grep -c 'adopted Slurm job' "$scratch/server.log")" -ge 2 ]; }
wait_until 60 adopted || fail "the restarted server did not adopt its agents' jobs"
wait_until 60 empty || fail "the adopted jobs were not cancelled once idle: $(squeue 2>&1)"
grep -q "cancelling Slurm job .*: its agent has been idle for 3 s" "$scratch/server.log" || fail "no idle cancel"
kill -TERM "$server_pid"
wait "$server_pid" || fail "the second server exited with $?"
server_pid=""
cluster down
trap - EXIT
! pgrep -f "$ferry agent" >/dev/null || fail "an agent outlived the cluster: $(pgrep -af "$ferry agent")"
