#!/usr/bin/env bash
# Stop the Slurm that scripts/slurm/start.sh started: each daemon by the PID in its PID file,
# newest first, then wait for it to exit (SIGKILL after 15 s). Touches no other process.
set -uo pipefail
STATE=${VLPBENCH_SLURM_DIR:-/tmp/vlpbench-slurm}
for file in "$STATE"/run/slurmd-*.pid "$STATE"/run/slurmd.pid "$STATE"/run/{slurmctld,slurmdbd,mariadbd,munged}.pid; do
    [ -f "$file" ] || continue
    name=$(basename "$file" .pid)
    name=${name%%-*}
    pid=$(cat "$file")
    # only a live process of that program (a stale PID file may name a reused PID)
    if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && grep -q "${name:0:15}" "/proc/$pid/comm"; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.3; done
        [ -e "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null
        echo "stopped $name ($pid)"
    fi
    rm -f "$file"
done
