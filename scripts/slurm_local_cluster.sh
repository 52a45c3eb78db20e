#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for trying and testing profiles/slurm without a cluster.
#
#   scripts/slurm_local_cluster.sh install   # apt-get install slurmctld slurmd slurm-client munge (root; Debian/Ubuntu)
#   scripts/slurm_local_cluster.sh start     # write the config, start munged + slurmctld + slurmd, wait for the node
#   scripts/slurm_local_cluster.sh stop      # stop the daemons this script started
#   scripts/slurm_local_cluster.sh status    # sinfo
#
# Then point the SLURM commands at it:  export SLURM_CONF=/tmp/groot-ft-slurm/slurm.conf
#
# Everything (config, spool, logs, pid files) lives under GROOT_SLURM_DIR (default /tmp/groot-ft-slurm) and the
# daemons listen on their own ports, so an existing /etc/slurm setup is neither read nor overwritten.
# The node advertises GROOT_SLURM_GPUS (default 2) fake GPUs: gres entries backed by device files that are copies
# of /dev/null, so jobs asking for --gpus=N are scheduled on a machine without GPUs (they get CUDA_VISIBLE_DEVICES
# set, which CPU torch ignores).
# Exit status: 0 ok, 1 failure, 3 the packages are missing and cannot be installed here (not root, no apt-get).
set -euo pipefail

DIR=${GROOT_SLURM_DIR:-/tmp/groot-ft-slurm}
GPUS=${GROOT_SLURM_GPUS:-2}
CTLD_PORT=${GROOT_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${GROOT_SLURM_SLURMD_PORT:-16818}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { echo "slurm_local_cluster: $*" >&2; }

have_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null
}

install() {
    have_packages && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "cannot install ${PACKAGES[*]}: needs root and apt-get (run: sudo apt-get install ${PACKAGES[*]})"
        exit 3
    fi
    log "installing ${PACKAGES[*]} with apt-get"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${PACKAGES[@]}"; } >"${TMPDIR:-/tmp}/groot-ft-slurm-apt.log" 2>&1; then
        tail -n 20 "${TMPDIR:-/tmp}/groot-ft-slurm-apt.log" >&2
        log "apt-get could not install ${PACKAGES[*]} (log above)"
        exit 3
    fi
    have_packages || { log "installed, but slurmctld/slurmd/sbatch/munged are still not on PATH"; exit 3; }
}

write_config() {
    local host node_line i
    host=$(hostname -s)
    # slurmd -C prints this machine's real layout: "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105"
    node_line=$(slurmd -C | head -n 1 | sed -E "s/^NodeName=[^ ]+ //; s/ *UpTime=.*//")
    mkdir -p "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/log" "$DIR/dev"
    : >"$DIR/gres.conf.tmp"
    for ((i = 0; i < GPUS; i++)); do
        # a distinct file per fake GPU: slurmd counts gres/gpu by File= entries and a missing one makes the node INVAL
        [ -e "$DIR/dev/gpu$i" ] || cp -a /dev/null "$DIR/dev/gpu$i" 2>/dev/null || : >"$DIR/dev/gpu$i"
        echo "NodeName=$host Name=gpu File=$DIR/dev/gpu$i" >>"$DIR/gres.conf.tmp"
    done
    mv "$DIR/gres.conf.tmp" "$DIR/gres.conf"
    cat >"$CONF.tmp" <<EOF
# written by scripts/slurm_local_cluster.sh
ClusterName=grootftlocal
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmdSpoolDir=$DIR/spool/d
StateSaveLocation=$DIR/spool/ctld
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
InactiveLimit=0
KillWait=5
# squeue must still see a finished job when the executor asks (no accounting database here for sacct)
MinJobAge=300
Waittime=0
MailProg=/bin/true
# slurmd fetches this config from slurmctld and keeps a copy in /run/slurm/conf, where SLURM commands look when
# SLURM_CONF is unset, as it is inside a job step Snakemake starts (its jobstep clears inherited SLURM_* variables)
SlurmctldParameters=enable_configless
NodeName=$host NodeAddr=127.0.0.1 Gres=gpu:$GPUS $node_line State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    have_packages || { log "SLURM is not installed; run: $0 install"; exit 3; }
    write_config
    mkdir -p /run/munge
    chown munge:munge /run/munge 2>/dev/null || true
    # probe the daemon itself: a pgrep on the name also matches a defunct munged and skips the start
    if ! munge -n >/dev/null 2>&1; then
        rm -f /run/munge/munged.pid
        runuser -u munge -- /usr/sbin/munged
        for _ in $(seq 1 20); do [ -s /run/munge/munged.pid ] && break; sleep 0.25; done
        cp /run/munge/munged.pid "$DIR/munged.pid"  # ours to stop; a munged that was already running is left alone
    fi
    alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
    alive "$DIR/slurmd.pid" || SLURM_CONF= slurmd --conf-server "127.0.0.1:$CTLD_PORT"
    for _ in $(seq 1 120); do
        if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            log "node $(hostname -s) up ($GPUS fake GPUs); export SLURM_CONF=$CONF"
            return 0
        fi
        sleep 0.5
    done
    log "the node did not come up within 60 s:"
    sinfo -N -l >&2 || true
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 1
}

stop_pid() {  # stop_pid PIDFILE NAME: SIGTERM, then SIGKILL after 10 s
    local pidfile=$1 pid
    alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { log "$2 ($pid) ignored SIGTERM; killing it"; kill -9 "$pid" 2>/dev/null || true; }
    rm -f "$pidfile"
}

stop() {
    [ -f "$CONF" ] || return 0
    # cancel what is left so that slurmd does not keep job processes around
    if alive "$DIR/slurmctld.pid"; then scancel --full --quiet --user "$(id -un)" 2>/dev/null || true; fi
    stop_pid "$DIR/slurmd.pid" slurmd
    stop_pid "$DIR/slurmctld.pid" slurmctld
    stop_pid "$DIR/munged.pid" munged
    # slurmd's copy of our config would otherwise point SLURM commands at a controller that is gone
    if grep -qs "written by scripts/slurm_local_cluster.sh" /run/slurm/conf/slurm.conf; then rm -rf /run/slurm/conf; fi
    log "stopped"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) sinfo -N -o "%N %t %c %m %G" ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
