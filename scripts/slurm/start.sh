#!/usr/bin/env bash
# Start a private single-node Slurm with accounting (munge, MariaDB, slurmdbd, slurmctld, slurmd)
# under its own state directory and ports, from a clean state. Prints the line to source:
#   export SLURM_CONF=<state>/etc/slurm.conf
# Stop it with scripts/slurm/stop.sh (which kills exactly the PIDs recorded here).
#
# Two nodes on this one host, each its own slurmd (Debian's Slurm is built with multiple-slurmd
# support): <host> in the default partition `debug` (jobs land on the one node), and <host>-n2 with
# it in the partition `multi`, for multi-node jobs (a Ray cluster across nodes, DDP across nodes).
#
# Environment: VLPBENCH_SLURM_DIR (default /tmp/vlpbench-slurm), VLPBENCH_SLURM_PORT_BASE
# (default 16810: MariaDB +6, slurmctld +7, slurmd of <host> +8, slurmdbd +9, slurmd of <host>-n2 +10),
# VLPBENCH_SLURM_CPUS (CPUs of each node, default: nproc; more than the host has is allowed, for
# tests that run several tiny jobs at once on one node).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
STATE=${VLPBENCH_SLURM_DIR:-/tmp/vlpbench-slurm}
BASE=${VLPBENCH_SLURM_PORT_BASE:-16810}
CPUS=${VLPBENCH_SLURM_CPUS:-$(nproc)}
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
HOST=$(hostname -s)
NODE2="$HOST-n2"
CLUSTER=vlpbench
started=$(date +%s.%N)

bash "$here/install.sh"
# A clean start: stop whatever an earlier run of this script left behind (by its PID files only).
VLPBENCH_SLURM_DIR="$STATE" bash "$here/stop.sh" >/dev/null 2>&1 || true
rm -rf "$STATE"
for port in $((BASE + 6)) $((BASE + 7)) $((BASE + 8)) $((BASE + 9)) $((BASE + 10)); do
    if ! python3 -c "import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $port))" 2>/dev/null; then
        echo "slurm/start.sh: port $port is taken (another Slurm or MariaDB?); choose other ports with VLPBENCH_SLURM_PORT_BASE (now $BASE)." >&2
        exit 1
    fi
done
mkdir -p "$STATE"/{etc,munge,mysql,log,run,ctld,spool}
chmod 755 "$STATE/munge"

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "slurm/start.sh: $what did not come up within ${limit}s; logs in $STATE/log" >&2
            tail -n 20 "$STATE"/log/*.log >&2 || true
            exit 1
        fi
        sleep 0.3
    done
}

# munge: own key and socket
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$STATE/munge/munge.key"
MUNGE_SOCKET="$STATE/munge/munge.socket"
munged --force --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/seed"
wait_for 10 munged test -S "$MUNGE_SOCKET"

# MariaDB for slurmdbd: own datadir, socket and port; no native AIO (not available here)
MYSQL_SOCKET="$STATE/run/mysql.sock"
mariadb-install-db --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
    --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1
mariadbd --user=root --datadir="$STATE/mysql" --socket="$MYSQL_SOCKET" --port=$((BASE + 6)) \
    --bind-address=127.0.0.1 --pid-file="$STATE/run/mariadbd.pid" --innodb-use-native-aio=0 \
    --log-error="$STATE/log/mariadb.log" --skip-name-resolve >/dev/null 2>&1 &
echo $! > "$STATE/run/mariadbd.pid"
wait_for 30 MariaDB mariadb --socket="$MYSQL_SOCKET" -u root -e "select 1"
mariadb --socket="$MYSQL_SOCKET" -u root -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'vlpbench';
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

AUTH="AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET"
cat > "$STATE/etc/slurmdbd.conf" <<CONF
$AUTH
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((BASE + 9))
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((BASE + 6))
StorageUser=slurm
StoragePass=vlpbench
StorageLoc=slurm_acct_db
CONF
chmod 600 "$STATE/etc/slurmdbd.conf"
cat > "$STATE/etc/slurm.conf" <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$((BASE + 7))
SlurmdPort=$((BASE + 8))
$AUTH
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((BASE + 9))
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SchedulerTimeSlice=5
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
# More CPUs declared than the host has (VLPBENCH_SLURM_CPUS): slurmd accepts the declared count.
$( [ "$CPUS" -gt "$(nproc)" ] && echo "SlurmdParameters=config_overrides" )
NodeName=$HOST NodeAddr=127.0.0.1 Port=$((BASE + 8)) CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
NodeName=$NODE2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((BASE + 10)) CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=multi Nodes=$HOST,$NODE2 MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$STATE/etc/slurm.conf"

slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
wait_for 30 slurmdbd sacctmgr -i -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
slurmctld -c -f "$SLURM_CONF"
wait_for 30 slurmctld scontrol ping
mkdir -p "$STATE/spool/$HOST" "$STATE/spool/$NODE2"
slurmd -f "$SLURM_CONF" -N "$HOST"
slurmd -f "$SLURM_CONF" -N "$NODE2"
wait_for 30 "the nodes" sh -c "[ \$(sinfo -h -N -p multi -o %T | grep -cE '^(idle|mixed|allocated)') -eq 2 ]"
elapsed=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
echo "slurm: up in ${elapsed}s (state $STATE, controller port $((BASE + 7)), nodes $HOST and $NODE2 with $CPUS CPUs each)" >&2
echo "export SLURM_CONF=$SLURM_CONF"
