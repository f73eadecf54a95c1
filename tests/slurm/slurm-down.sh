#!/usr/bin/env bash
# Stop the throw-away Slurm that slurm-up.sh started in DIR: cancel the jobs of *that* cluster, then
# stop slurmd, slurmctld and munged by their pid files (SIGTERM, a bounded wait, then SIGKILL).
# A pid is only signalled when /proc/PID/cmdline shows that daemon started on DIR's files, so a
# stale pid file never hits an unrelated process. Safe to run twice; never fails on a missing piece.
set -uo pipefail

[[ $# -eq 1 && -n $1 ]] || {
    echo "usage: slurm-down.sh DIR" >&2
    exit 2
}
[[ -d $1 ]] || exit 0
dir="$(cd "$1" && pwd)"
PATH="$PATH:/usr/sbin:/sbin"

# The pid in FILE if it is alive and is NAME started on DIR's files; nothing otherwise.
our_pid() {
    local file=$1 name=$2 pid cmd
    [[ -r $file ]] || return 1
    read -r pid <"$file" 2>/dev/null || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ $cmd == *"$name"* && $cmd == *"$dir/"* ]] || return 1
    echo "$pid"
}

# SIGTERM every daemon named by "FILE NAME" pairs at once, wait for all of them (10 s), SIGKILL the
# rest, remove the pid files. Each daemon takes 1.5-2 s to exit, so they are stopped together (none
# of them needs another to shut down: slurmd and slurmctld send nothing through munge on the way).
stop() {
    local pids=() names=() files=() pid i alive
    while (($#)); do
        files+=("$1")
        if pid="$(our_pid "$1" "$2")"; then
            kill -TERM "$pid" 2>/dev/null && pids+=("$pid") && names+=("$2")
        fi
        shift 2
    done
    for ((i = 0; i < 100; i++)); do # 10 s
        alive=0
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "slurm-down: ${names[$i]} (${pids[$i]}) ignored SIGTERM for 10 s; SIGKILL" >&2
            kill -KILL "${pids[$i]}" 2>/dev/null
        fi
    done
    rm -f "${files[@]}"
}

# Cancel this cluster's jobs while its controller is still up, so that no job step (a Dask worker)
# outlives the cluster; wait (bounded) until squeue lists no unfinished job (KillWait=5).
if our_pid "$dir/slurmctld.pid" slurmctld >/dev/null && [[ -f $dir/slurm.conf ]]; then
    export SLURM_CONF="$dir/slurm.conf"
    mapfile -t jobs < <(timeout 10 squeue -h -o %i 2>/dev/null)
    if ((${#jobs[@]})); then
        timeout 10 scancel "${jobs[@]}" 2>/dev/null
        for ((i = 0; i < 150; i++)); do # 15 s
            [[ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ]] && break
            sleep 0.1
        done
    fi
fi

stop "$dir/slurmd.pid" slurmd "$dir/slurmctld.pid" slurmctld "$dir/munge/munged.pid" munged
exit 0
