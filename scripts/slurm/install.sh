#!/usr/bin/env bash
# Install a single-node Slurm (with accounting) from Debian's packages, without starting any service.
# Idempotent: does nothing when the programs are already there. Needs root (CI machines are root).
set -euo pipefail
needed=(sbatch slurmctld slurmd slurmdbd munged mariadbd)
missing=0
for program in "${needed[@]}"; do
    command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ] || missing=1
done
[ "$missing" = 0 ] && exit 0
# Keep apt's post-install scripts from starting daemons: we start our own, with our own state.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
# (an `if`, not `&&`: a false test as the trap's last command would become the script's exit status)
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurmctld slurmd slurm-client slurmdbd munge mariadb-server >/dev/null
