#!/usr/bin/env bash
# The e2e suite's core (calls, errors, map, futures, reduce, tail calls, async forms and cancellation, spawn,
# chaos) with every container on Slurm: `ferry server --agents slurm` on a local cluster of three nodes, so
# no container runs on the server's own host and each goes through an agent that Slurm started. Tests that
# run a program's app.main use one such server (FERRY_SERVER); tests that start servers of their own give
# them `--agents slurm` (E2E_SERVER_ARGS). Afterwards the server has had agents join, stopping it cancels
# their jobs, and `slurm-cluster.sh down` finds no process left. Needs root: skipped (77) otherwise.
#
# Left out, and why:
#   - tests of what an embedded server's containers inherit from the program (its environment, its stderr)
#     or how they reach it (its Unix socket: an agent's containers reach the server over TCP);
#   - `counter`'s, which keep a count in one container's memory between calls: on a full cluster an idle
#     container is stopped to make room for another function's, and the count with it;
#   - the longest (a million-step reduce, the examples), which the ordinary run covers.
#
#   e2e_core_on_slurm_test.sh SOURCE_DIR SCRATCH_DIR FERRY E2E_TEST
set -euo pipefail
source_dir=$1
scratch=$2
ferry=$3
e2e_test=$4
slurm_port=17927
# shellcheck source=tests/cluster/common.sh
source "$source_dir/tests/cluster/common.sh"

core='embedded.*:futures.*:async.every_caller*:async.inputs_*:async.gather*:async.create_task*:async.a_created_task*'
core+=':async.a_gathered_future*:async.a_failing_gather*:async.a_cancelled_map_aio*:async.a_cancelled_get_aio*'
core+=':deploy.*spawn*:client.a_program_without_app_main_looks_up*:chaos.*'
left_out='embedded.a_crash_stack*:embedded.hello_example*:embedded.the_program_and_its_containers_reach*:futures.a_failure_at_the_head_of_a_long_reduce*'
left_out+=':futures.a_call_task_not_yet_awaited*:futures.one_future_feeds_two_consumers*'

# Agents idle for 5 s are cancelled: the servers of the tests share three nodes, and one's idle agents would
# keep the next one's waiting in Slurm's queue.
agents="--agents slurm --slurm-idle 5"
# shellcheck disable=SC2086 # (two options and their values)
start_server $agents

status=0
FERRY_SERVER=$address FERRY_TOKEN=$(cat "$state/token") E2E_SERVER_ARGS=$agents \
  "$e2e_test" --gtest_filter="$core:-$left_out" --gtest_brief=1 >"$scratch/e2e.out" 2>&1 || status=$?
grep -E '^\[  (PASSED|FAILED) ' "$scratch/e2e.out" || true
[ "$status" -eq 0 ] || fail "the e2e core failed on Slurm (exit $status): $(grep -A8 'Failure' "$scratch/e2e.out" | head -n 60)"
ran=$(sed -n 's/^\[==========\] \([0-9]*\) tests from .* ran.*/\1/p' "$scratch/e2e.out")
[ "${ran:-0}" -ge 50 ] || fail "only ${ran:-0} tests ran (53 when written): is the filter still right?"
grep -q ' joined from .*(Slurm job ' "$scratch/server.log" || fail "no agent started by Slurm joined the server"

kill -TERM "$server_pid"
wait "$server_pid" || fail "the server exited with $?"
server_pid=""
empty() { [ -z "$(squeue -h -o %i)" ]; }
wait_until 60 empty || fail "jobs left after the server stopped: $(squeue 2>&1)"
cluster down >/dev/null || fail "slurm-cluster.sh down failed"
echo "e2e core on Slurm: $ran tests passed"
