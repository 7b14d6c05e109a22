#!/usr/bin/env bash
# scripts/slurm-cluster.sh as a user meets it: `up` brings up three idle nodes, a job step runs on the node it
# names, a batch job runs; `down` with that job still running leaves no process of the cluster, nor the job's,
# behind. Needs root (as the script does): skipped (77) otherwise.
#
#   slurm_cluster_test.sh SOURCE_DIR SCRATCH_DIR
set -euo pipefail
script=$1/scripts/slurm-cluster.sh
dir=$2/slurm
[ "$(id -u)" -eq 0 ] || { echo "skipped: needs root"; exit 77; }
cluster() { bash "$script" --dir "$dir" --port 17817 "$@"; }
fail() {
  echo "FAILED: $*" >&2
  exit 1
}

cluster down 2>/dev/null || true  # what an interrupted earlier run left
trap 'cluster down >/dev/null 2>&1 || true' EXIT
eval "$(cluster up --nodes 3)"
[ "$SLURM_CONF" = "$dir/etc/slurm.conf" ] || fail "up printed SLURM_CONF=$SLURM_CONF"

idle=$(sinfo -h -N -t idle -o %N | sort -u | tr '\n' ' ')
[ "$idle" = "n1 n2 n3 " ] || fail "idle nodes after up: '$idle'"
node=$(timeout 60 srun -w n2 -N1 -n1 bash -c 'echo $SLURMD_NODENAME')
[ "$node" = "n2" ] || fail "a step on n2 ran on '$node'"

# A batch job still running at `down`: its process must go too.
job=$(sbatch --parsable --output="$dir/job-%j.out" --wrap "echo \$\$ > $dir/job.pid; exec sleep 600")
for _ in $(seq 300); do
  [ -s "$dir/job.pid" ] && break
  sleep 0.1
done
[ -s "$dir/job.pid" ] || fail "batch job $job did not start within 30 s: $(squeue -j "$job" 2>&1)"
job_pid=$(cat "$dir/job.pid")
kill -0 "$job_pid" || fail "the job's process $job_pid is not running"

daemons=$(cat "$dir"/run/*.pid "$dir"/munge/munged.pid | tr '\n' ' ')
[ "$(wc -w <<<"$daemons")" -eq 5 ] || fail "expected 5 PID files (slurmctld, 3 slurmd, munged): $daemons"
cluster down
trap - EXIT
for pid in $daemons $job_pid; do
  ! kill -0 "$pid" 2>/dev/null || fail "process $pid ($(cat /proc/"$pid"/comm 2>/dev/null)) is still running after down"
done
[ -z "$(ls "$dir"/run/*.pid 2>/dev/null)" ] || fail "PID files left: $(ls "$dir"/run)"
echo "slurm cluster: 3 nodes up, a step on n2, a batch job; down left nothing running"
