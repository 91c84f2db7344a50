#!/usr/bin/env bash
# Stop the test cluster of tests/slurm/start.sh: slurmd, slurmctld and munged of STATE_DIR, by their pid files.
# Usage: bash tests/slurm/stop.sh [STATE_DIR]    (default: $CASPL_SLURM_DIR or /tmp/caspl-slurm)
set -uo pipefail

DIR="${1:-${CASPL_SLURM_DIR:-/tmp/caspl-slurm}}"
for name in slurmd slurmctld munged; do
    pid_file="$DIR/$name.pid"
    [ -f "$pid_file" ] || continue
    pid="$(cat "$pid_file")"
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
done
