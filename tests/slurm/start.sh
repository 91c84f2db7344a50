#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (for tests/test_slurm.py; root or the Slurm user).
#
# Usage: bash tests/slurm/start.sh [STATE_DIR]    (default: $CASPL_SLURM_DIR or /tmp/caspl-slurm)
# Writes STATE_DIR/slurm.conf for this host with its real CPU count and memory (`slurmd -C`), a fresh munge
# key, starts munged, slurmctld and slurmd on their own socket / ports (nothing under /etc is used or
# changed), waits until `sinfo` shows the node idle, and prints the line to use the cluster:
#   export SLURM_CONF=STATE_DIR/slurm.conf
# On failure it prints the daemons' logs and exits 1. Stop with tests/slurm/stop.sh STATE_DIR.
# Environment: SLURM_TEST_PORT (slurmctld's port, default 6917; slurmd uses the next one),
#              SLURM_TEST_TIMEOUT (seconds to wait for an idle node, default 60).
set -euo pipefail

DIR="${1:-${CASPL_SLURM_DIR:-/tmp/caspl-slurm}}"
PORT="${SLURM_TEST_PORT:-6917}"
TIMEOUT="${SLURM_TEST_TIMEOUT:-60}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for tool in munged slurmctld slurmd sinfo sbatch squeue scancel; do
    command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin:/sbin"
    command -v "$tool" >/dev/null || {
        echo "ERROR: $tool not found: install Slurm and munge (Debian: apt-get install slurm-wlm munge)" >&2
        exit 1
    }
done

# A previous cluster in this folder is stopped first (its daemons would hold the ports).
if [ -f "$DIR/slurm.conf" ]; then bash "$HERE/stop.sh" "$DIR" >/dev/null 2>&1 || true; fi
rm -rf "$DIR"
mkdir -p "$DIR"/{state,spool,log}
chmod 0700 "$DIR"
DIR="$(cd "$DIR" && pwd)"
USER_NAME="$(id -un)"

dump_logs() {
    local f
    for f in "$DIR"/log/*.log; do
        [ -f "$f" ] || continue
        echo "---- $f" >&2
        tail -n 40 "$f" >&2
    done
}
fail() {
    echo "ERROR: $*" >&2
    dump_logs
    exit 1
}

# munge: a fresh key, our own socket.
dd if=/dev/urandom of="$DIR/munge.key" bs=1024 count=1 status=none
chmod 0400 "$DIR/munge.key"
munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" --pid-file="$DIR/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/munged.seed" ||
    fail "munged did not start"

# The node as slurmd sees it (CPUs, sockets, cores, memory), named after this host.
NODE_LINE="$(slurmd -C | head -n 1)"
NODE="$(hostname -s)"
NODE_LINE="NodeName=$NODE NodeAddr=127.0.0.1 ${NODE_LINE#NodeName=* }"

cat >"$DIR/slurm.conf" <<CONF
# Written by tests/slurm/start.sh: a one-node test cluster.
ClusterName=caspltest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$USER_NAME
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=5
MinJobAge=600
SchedulerType=sched/backfill
# Schedule every second (defaults: 60 s / 30 s), so a job starts soon after the job it depends on ends.
SchedulerParameters=sched_interval=1,bf_interval=1,batch_sched_delay=0
$NODE_LINE State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$DIR/slurm.conf"
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" -N "$NODE" || fail "slurmd did not start"

deadline=$((SECONDS + TIMEOUT))
state=""
while [ $SECONDS -lt $deadline ]; do
    state="$(timeout 3 sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)"
    [ "$state" = idle ] && break
    sleep 0.5
done
[ "$state" = idle ] || fail "the node is not idle after ${TIMEOUT}s (sinfo state: '${state:-no answer}')"
echo "export SLURM_CONF=$SLURM_CONF"
