#!/usr/bin/env bash
# Start a private, throw-away Slurm (munged + slurmctld + slurmd) on 127.0.0.1 for the tests.
#
#   slurm-up.sh --install   install the Debian packages if missing, then exit
#   slurm-up.sh DIR         (install if missing,) write everything under DIR and start the daemons
#
# On success DIR/env holds `SLURM_CONF=DIR/slurm.conf` (all that sbatch/squeue/scancel/sinfo need)
# and one line with the startup time is printed. On failure the daemons' log tails are printed,
# whatever was started is stopped (slurm-down.sh DIR) and the exit status is non-zero.
#
# Environment: SLURM_UP_CPUS (default 4) and SLURM_UP_MEMORY_MB (default 8000) size the node. They
# are declared, not detected (SlurmdParameters=config_overrides), so the cluster looks the same on
# every machine. SLURM_UP_TIMEOUT (default 60) bounds the wait for the node to become idle.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
packages=(slurmctld slurmd slurm-client munge)

die() {
    echo "slurm-up: $*" >&2
    exit 1
}

install_if_missing() {
    local missing=0 cmd
    for cmd in sbatch squeue scancel sinfo slurmctld slurmd munged mungekey; do
        # The daemons live in /usr/sbin, which a non-login PATH may lack.
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing=1
    done
    ((missing)) || return 0
    [[ $EUID -eq 0 ]] || die "Slurm is not installed and installing it needs root: apt-get install ${packages[*]}"
    echo "slurm-up: installing ${packages[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    local log
    log="$(mktemp)"
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "apt-get install ${packages[*]} failed"
    fi
    rm -f "$log"
}

case "${1:-}" in
    --install)
        [[ $# -eq 1 ]] || die "usage: slurm-up.sh --install | slurm-up.sh DIR"
        install_if_missing
        exit 0
        ;;
    "" | -*) die "usage: slurm-up.sh --install | slurm-up.sh DIR" ;;
esac
[[ $# -eq 1 ]] || die "usage: slurm-up.sh --install | slurm-up.sh DIR"

PATH="$PATH:/usr/sbin:/sbin"
start_ns=$(date +%s%N)
install_if_missing
[[ $EUID -eq 0 ]] || die "the test Slurm runs its daemons as root (SlurmUser=root); run as root"

mkdir -p "$1"
dir="$(cd "$1" && pwd)"
[[ -e "$dir/slurmctld.pid" || -e "$dir/munge/munged.pid" ]] && die "$dir already holds a Slurm; run slurm-down.sh $dir first"

cpus="${SLURM_UP_CPUS:-4}"
memory="${SLURM_UP_MEMORY_MB:-8000}"
timeout="${SLURM_UP_TIMEOUT:-60}"
conf="$dir/slurm.conf"
socket="$dir/munge/munge.socket"
# A unix socket path must fit in sun_path (108 bytes including the NUL).
((${#socket} < 100)) || die "DIR is too long for a unix socket path: $socket"

mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
chmod 700 "$dir" "$dir/munge"

fail() {
    echo "slurm-up: $*" >&2
    local f
    for f in "$dir/munge/munged.log" "$dir/log/slurmctld.log" "$dir/log/slurmd.log"; do
        [[ -s $f ]] || continue
        echo "--- tail of $f" >&2
        tail -n 25 "$f" >&2
    done
    bash "$here/slurm-down.sh" "$dir" >&2 || true
    exit 1
}

# --- munge: own key, own socket, own pid/log/seed files --------------------------------------
rm -f "$dir/munge/munge.key"
mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null 2>&1 \
    || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --force \
    --socket="$socket" \
    --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed" \
    || fail "munged did not start"

# --- slurm.conf --------------------------------------------------------------------------------
# Two free ports on 127.0.0.1, held open together so that they differ.
read -r ctld_port slurmd_port < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0))
b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])
') || fail "could not pick free ports"
host="$(hostname -s)"
# With NoCtldInAddrAny/NoInAddrAny the daemons listen on the address the hostname resolves to
# instead of 0.0.0.0. That keeps them on loopback only when the hostname resolves to 127.x (as on
# most Debian machines, through /etc/hosts); elsewhere it would put them out of reach of
# 127.0.0.1, so they listen on all addresses then. Either way every connection goes to 127.0.0.1.
comm_params="#CommunicationParameters= (hostname does not resolve to 127.x: daemons bind 0.0.0.0)"
if python3 -c 'import socket, sys; sys.exit(not socket.gethostbyname(socket.gethostname()).startswith("127."))' 2>/dev/null; then
    comm_params="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
fi

cat >"$conf" <<EOF
# Throw-away test cluster written by tests/slurm/slurm-up.sh; stop it with slurm-down.sh.
ClusterName=mops
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1
SlurmdParameters=config_overrides
MpiDefault=none
$comm_params
MailProg=/bin/true
ReturnToService=2
KillWait=5
MinJobAge=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

export SLURM_CONF="$conf"
echo "SLURM_CONF=$conf" >"$dir/env"

# --- daemons -----------------------------------------------------------------------------------
slurmctld -f "$conf" || fail "slurmctld did not start"
slurmd -f "$conf" || fail "slurmd did not start"

deadline=$(($(date +%s) + timeout))
state=""
while :; do
    state="$(sinfo -h -o %T 2>/dev/null || true)"
    [[ $state == idle ]] && break
    (($(date +%s) < deadline)) || fail "node not idle after ${timeout}s (sinfo: '${state:-no answer}')"
    sleep 0.2
done

end_ns=$(date +%s%N)
ms=$(((end_ns - start_ns) / 1000000))
printf 'slurm-up: Slurm idle on 127.0.0.1 (partition debug, %s CPUs) in %d.%03d s; SLURM_CONF=%s\n' \
    "$cpus" $((ms / 1000)) $((ms % 1000)) "$conf"
