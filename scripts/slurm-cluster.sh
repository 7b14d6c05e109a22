#!/usr/bin/env bash
# A Slurm cluster on this machine, for trying and testing ferry's cluster work: munge, slurmctld and N slurmd
# nodes (n1, n2, ...) on loopback, from Debian's packages, as root. Everything lives in one directory; every
# daemon writes its PID file there and is stopped by that PID.
#
#   slurm-cluster.sh up [--nodes N]   installs the packages if missing, starts the cluster (N: 3), waits until
#                                     every node is idle, and prints the environment to use (eval it)
#   slurm-cluster.sh env              prints that environment again
#   slurm-cluster.sh status           sinfo and squeue of the running cluster
#   slurm-cluster.sh down             cancels every job, stops the daemons, and checks that none is left
#
# Options: --dir DIR (default $FERRY_SLURM_DIR, else /tmp/ferry-slurm), --port P (slurmctld's port, default
# 16817; slurmd takes P+1, nodes P+84+K). Exit code 0 on success, 1 on failure, 2 on bad usage.
set -euo pipefail

usage() { sed -n '2,14s/^# \{0,1\}//p' "$0"; }
die() {
  echo "slurm-cluster: $*" >&2
  exit 1
}

command=""
nodes=3
dir=${FERRY_SLURM_DIR:-/tmp/ferry-slurm}
port=16817
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    up | down | env | status) command=$1 ;;
    --nodes) nodes=${2:?--nodes needs a number}; shift ;;
    --dir) dir=${2:?--dir needs a directory}; shift ;;
    --port) port=${2:?--port needs a number}; shift ;;
    *) echo "slurm-cluster: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$command" ] || { usage >&2; exit 2; }
[[ "$nodes" =~ ^[1-9][0-9]?$ ]] || { echo "slurm-cluster: --nodes takes 1 to 99" >&2; exit 2; }
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1024 ] && [ "$port" -le 65000 ] ||
  { echo "slurm-cluster: --port takes 1024 to 65000" >&2; exit 2; }
dir=$(realpath -m "$dir")

environment() {
  echo "export SLURM_CONF=$dir/etc/slurm.conf"
}

# Every PID file the cluster writes: the nodes', the controller's, munge's.
pid_files() { ls "$dir"/run/*.pid "$dir"/munge/munged.pid 2>/dev/null || true; }

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Stops the process in PID file $1: SIGTERM, then SIGKILL after 5 s.
stop_pid_file() {
  local pid
  pid=$(cat "$1" 2>/dev/null || true)
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "slurm-cluster: $(basename "$1" .pid) ($pid) did not stop within 5 s of SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    fi
  fi
  alive "$pid" && return 1
  rm -f "$1"
}

down() {
  [ -d "$dir" ] || return 0
  if [ -f "$dir/etc/slurm.conf" ] && pid_files | grep -q slurmctld; then
    # Jobs first, so that their steps end while the nodes that run them are still there.
    export SLURM_CONF=$dir/etc/slurm.conf
    timeout 10 scancel --quiet --full --user=root 2>/dev/null || true
    for _ in $(seq 100); do
      [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null || true)" ] && break
      sleep 0.1
    done
  fi
  local failed=0 f
  for f in $(pid_files | grep -v munged.pid); do stop_pid_file "$f" || failed=1; done
  # Job steps that outlived their node (a slurmd that died before `down`): slurmstepd processes that run
  # with this cluster's configuration in their environment, with what they started.
  local stat pid child
  for stat in /proc/[0-9]*/stat; do
    pid=${stat#/proc/}
    pid=${pid%/stat}
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmstepd ] || continue
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_CONF=$dir/etc/slurm.conf" || continue
    for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do kill -KILL "$child" 2>/dev/null || true; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  [ -f "$dir/munge/munged.pid" ] && { stop_pid_file "$dir/munge/munged.pid" || failed=1; }
  [ $failed -eq 0 ] || die "some daemons are still running (PID files in $dir/run, $dir/munge)"
}

install_packages() {
  local missing=() p
  for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "slurm-cluster: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
  local host i
  host=$(hostname)
  cat >"$dir/etc/slurm.conf" <<EOF
# Written by ferry's scripts/slurm-cluster.sh: $nodes nodes on loopback, all state under $dir.
ClusterName=ferry
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket.2
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=300
KillWait=5
EOF
  for i in $(seq "$nodes"); do
    echo "NodeName=n$i NodeHostname=$host NodeAddr=127.0.0.1 Port=$((port + 84 + i)) CPUs=4 RealMemory=2000 State=UNKNOWN" \
      >>"$dir/etc/slurm.conf"
  done
  echo "PartitionName=main Nodes=n[1-$nodes] Default=YES MaxTime=INFINITE State=UP" >>"$dir/etc/slurm.conf"
}

up() {
  [ "$(id -u)" -eq 0 ] || die "needs root (slurmd and munged run as root and munge); run it with sudo"
  if [ -n "$(pid_files)" ]; then
    die "a cluster is already running in $dir (slurm-cluster.sh down, or --dir for another)"
  fi
  install_packages
  rm -rf "$dir"
  mkdir -p "$dir"/{etc,state,log,run,munge}
  for i in $(seq "$nodes"); do mkdir -p "$dir/spool/n$i"; done
  # munged refuses a key or directory that others can read; it runs as the munge user.
  chown munge:munge "$dir/munge" && chmod 0700 "$dir/munge"
  dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" 2>/dev/null
  chown munge:munge "$dir/munge/munge.key" && chmod 0400 "$dir/munge/munge.key"
  runuser -u munge -- munged --force --socket="$dir/munge/munge.socket.2" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" ||
    die "munged did not start (see $dir/munge/munged.log)"
  chmod 0755 "$dir/munge"  # clients reach the socket
  write_config
  export SLURM_CONF=$dir/etc/slurm.conf
  trap 'echo "slurm-cluster: up failed; stopping what started (logs in $dir/log)" >&2; down || true' ERR
  slurmctld -f "$SLURM_CONF" -i
  for i in $(seq "$nodes"); do slurmd -f "$SLURM_CONF" -N "n$i"; done
  # Ready when every node is idle (about 2 s); 30 s at most.
  local idle=0
  for _ in $(seq 300); do
    idle=$(timeout 5 sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l || true)
    [ "$idle" -eq "$nodes" ] && break
    sleep 0.1
  done
  if [ "$idle" -ne "$nodes" ]; then
    echo "slurm-cluster: only $idle of $nodes nodes became idle within 30 s:" >&2
    timeout 5 sinfo -N >&2 || true
    false
  fi
  trap - ERR
  echo "slurm-cluster: $nodes nodes up in $dir (slurm-cluster.sh down to stop); to use it:" >&2
  environment
}

case "$command" in
  up) up ;;
  down)
    [ "$(id -u)" -eq 0 ] || die "needs root, as up did"
    down
    ;;
  env)
    [ -f "$dir/etc/slurm.conf" ] || die "no cluster in $dir (slurm-cluster.sh up)"
    environment
    ;;
  status)
    [ -n "$(pid_files)" ] || die "no cluster is running in $dir"
    export SLURM_CONF=$dir/etc/slurm.conf
    sinfo -N
    squeue
    ;;
esac
