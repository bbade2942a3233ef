#!/usr/bin/env bash
# A single-node SLURM cluster with job accounting, for the `cluster` tests.
#
#   tests/cluster/slurm.sh install        install Debian's slurm-wlm, slurmdbd, munge and mariadb-server if missing
#   tests/cluster/slurm.sh start DIR      write the configs for this host into DIR, start MariaDB, munged, slurmdbd,
#                                         slurmctld and slurmd from there, wait until the node is idle
#   tests/cluster/slurm.sh stop DIR       stop the daemons started into DIR (their pid files), nothing else
#
# Everything a cluster writes lives under DIR: configs, state, logs, sockets and the database. The daemons listen on
# ports of their own (SLURM_TEST_PORT_BASE, default 16817: slurmctld, +1 slurmd, +2 slurmdbd, +3 MariaDB), so the
# cluster uses no system MariaDB or munged. Its one file outside DIR is the link /etc/slurm/slurm.conf -> DIR/slurm.conf:
# Snakemake's SLURM job step runs `srun` without the job's SLURM_* variables (SLURM_CONF included), so the default
# path must lead to the cluster; `start` refuses to replace a slurm.conf it did not write.
# Needs root (slurmd starts jobs as their user) and, for `install`, Debian's apt.
set -euo pipefail

PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
PORT_BASE=${SLURM_TEST_PORT_BASE:-16817}
CLUSTER=dualmd
SYSTEM_CONF=/etc/slurm/slurm.conf
MARKER="# one-node test cluster written by tests/cluster/slurm.sh"

die() {
    echo "slurm.sh: $*" >&2
    exit 1
}

install() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    ((EUID == 0)) || die "missing packages ${missing[*]}; installing them needs root"
    echo "slurm.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # the packages' scripts must not start system-wide daemons (munged, MariaDB, slurmctld without a config):
    # policy-rc.d exiting 101 forbids it, as in container images; ours is removed again afterwards
    local policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        trap "rm -f $policy" EXIT
    fi
    apt-get update -qq
    # --force-confold: keep existing config files untouched on a re-run
    apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
}

# Wait up to $2 seconds for the command $1 to succeed; fail naming $3 and showing the log $4 otherwise.
wait_for() {
    local deadline=$((SECONDS + $2))
    until eval "$1" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "slurm.sh: $3 not ready after $2 s; last lines of $4:" >&2
            tail -n 30 "$4" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}

write_configs() {
    local dir=$1 host node
    host=$(hostname -s)
    # the node as slurmd detects it: CPUs, sockets, cores, threads and memory of this host
    node=$(slurmd -C | head -n 1)
    [[ $node == NodeName=* ]] || die "slurmd -C did not describe this host: $node"
    cat >"$dir/slurm.conf" <<CONF
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT_BASE
SlurmdPort=$((PORT_BASE + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state/ctld
SlurmdSpoolDir=$dir/state/d
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# containers: no cgroup hierarchy to manage; track job processes through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
MpiDefault=none
ReturnToService=2
# CPUs and memory are both consumable: a job gets the cores and the memory it asks for, or waits
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$host
AccountingStoragePort=$((PORT_BASE + 2))
# with auth/munge this names the munged socket for talking to slurmdbd (AuthInfo covers the rest)
AccountingStoragePass=$dir/munge/munge.socket
# keep sbatch --comment (Snakemake's rule and wildcards) in the accounting records
AccountingStoreFlags=job_comment
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    cat >"$dir/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$((PORT_BASE + 2))
SlurmUser=root
LogFile=$dir/log/slurmdbd.log
PidFile=$dir/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT_BASE + 3))
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
    chmod 600 "$dir/slurmdbd.conf" # slurmdbd refuses a config others can read: it holds the database password
    sed -i "s/^NodeName=\\S*/NodeName=$host/" "$dir/slurm.conf"
}

# Point the default config path at DIR/slurm.conf, unless a config this script did not write is there.
link_system_conf() {
    local dir=$1
    # a dangling link (an earlier test cluster's folder, deleted) is replaced
    if [[ -e $SYSTEM_CONF ]] && [[ $(head -n 1 "$SYSTEM_CONF") != "$MARKER" ]]; then
        die "$SYSTEM_CONF belongs to another SLURM configuration; the test cluster needs that path"
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$dir/slurm.conf" "$SYSTEM_CONF"
}

start_mariadb() {
    local dir=$1
    if [[ ! -d $dir/db/mysql ]]; then
        mariadb-install-db --no-defaults --user=root --datadir="$dir/db" --auth-root-authentication-method=normal \
            --skip-test-db >"$dir/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: see $dir/log"
    fi
    cat >"$dir/db-init.sql" <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
    mariadbd --no-defaults --user=root --datadir="$dir/db" --socket="$dir/run/mariadb.sock" \
        --port=$((PORT_BASE + 3)) --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$dir/run/mariadb.pid" \
        --log-error="$dir/log/mariadb.log" --init-file="$dir/db-init.sql" --innodb-buffer-pool-size=64M \
        >/dev/null 2>&1 &
    wait_for "mariadb --no-defaults -h 127.0.0.1 -P $((PORT_BASE + 3)) -u slurm -pslurm -e 'select 1'" 60 \
        MariaDB "$dir/log/mariadb.log"
}

start_munge() {
    local dir=$1
    [[ -f $dir/munge/munge.key ]] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 700 "$dir/munge" && chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" \
        || die "munged did not start: see $dir/log/munged.log"
    wait_for "munge -S $dir/munge/munge.socket -n" 20 munged "$dir/log/munged.log"
}

start() {
    local dir=${1:?usage: $0 start DIR}
    ((EUID == 0)) || die "the cluster needs root: slurmd starts jobs as their user"
    for tool in slurmctld slurmd slurmdbd munged mariadbd sinfo sacct; do
        command -v "$tool" >/dev/null || die "$tool not found: run '$0 install' first"
    done
    local port
    for port in $(seq "$PORT_BASE" $((PORT_BASE + 3))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "port $port is in use (another test cluster?): stop it, or set SLURM_TEST_PORT_BASE"
        fi
    done
    mkdir -p "$dir"/{munge,db,state/ctld,state/d,run,log}
    dir=$(cd "$dir" && pwd)
    export SLURM_CONF=$dir/slurm.conf
    write_configs "$dir"
    link_system_conf "$dir"
    start_munge "$dir"
    start_mariadb "$dir"
    # slurmdbd reads slurmdbd.conf from the folder of SLURM_CONF
    slurmdbd || die "slurmdbd did not start: see $dir/log/slurmdbd.log"
    wait_for "sacctmgr -n list cluster" 60 slurmdbd "$dir/log/slurmdbd.log"
    # -i: fresh state, no jobs or reservations from an earlier cluster in this folder
    slurmctld -i || die "slurmctld did not start: see $dir/log/slurmctld.log"
    wait_for "scontrol ping | grep -q UP" 60 slurmctld "$dir/log/slurmctld.log"
    slurmd || die "slurmd did not start: see $dir/log/slurmd.log"
    # the cluster registers itself with slurmdbd on slurmctld's first connection
    wait_for "sinfo -h -N -o %T | grep -qx idle" 90 "the node (sinfo: idle)" "$dir/log/slurmd.log"
    wait_for "sacctmgr -n list cluster format=cluster | grep -qw $CLUSTER" 60 \
        "the cluster's accounting record" "$dir/log/slurmctld.log"
    echo "slurm.sh: cluster '$CLUSTER' up; export SLURM_CONF=$dir/slurm.conf"
}

stop() {
    local dir=${1:?usage: $0 stop DIR} name pid
    dir=$(cd "$dir" && pwd)
    # reverse start order; each daemon only by the pid it wrote into this folder
    for name in slurmd slurmctld slurmdbd mariadb munged; do
        [[ -f $dir/run/$name.pid ]] || continue
        pid=$(cat "$dir/run/$name.pid")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        fi
        rm -f "$dir/run/$name.pid"
    done
    if [[ $(readlink "$SYSTEM_CONF" 2>/dev/null) == "$dir/slurm.conf" ]]; then
        rm -f "$SYSTEM_CONF"
    fi
}

case "${1:-}" in
install) install ;;
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
*) die "usage: $0 install | start DIR | stop DIR" ;;
esac
