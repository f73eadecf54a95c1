"""Batch-system clusters: Dask workers as Slurm (or PBS, SGE, LSF) jobs, through dask-jobqueue.

A :class:`BatchSettings` says what to ask the batch system for; :func:`load_batch_settings`
merges, field by field, the command line's flags over a study's ``cluster:`` section over the
user's ``cluster.yaml`` (``$XDG_CONFIG_HOME/modelops``, by default ``~/.config/modelops``).
:func:`check_batch_settings` refuses what the batch system would refuse later (no ``sbatch`` on
PATH, an unknown partition, a malformed walltime or memory), before anything is submitted.
:class:`BatchCluster` starts the dask-jobqueue cluster for one run, scales it adaptively
between 1 and ``jobs`` jobs, tells how many of its jobs are pending and running, and closes it,
cancelling its jobs.

The Dask backend (:class:`~modelops.services.dask.DaskSimulationService` with ``batch=``) runs
on it as on any Dask cluster: lost workers' chunks run again elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from modelops_contracts._loading import read_document
from modelops_contracts.errors import ClusterError, ContractViolationError

__all__ = [
    "BATCH_KINDS",
    "BatchCluster",
    "BatchSettings",
    "check_batch_settings",
    "load_batch_settings",
    "user_cluster_file",
]

BATCH_KINDS: dict[str, tuple[str, str, str]] = {
    "slurm": ("SLURMCluster", "sbatch", "squeue"),
    "pbs": ("PBSCluster", "qsub", "qstat"),
    "sge": ("SGECluster", "qsub", "qstat"),
    "lsf": ("LSFCluster", "bsub", "bjobs"),
}
"""Batch systems by ``--cluster`` name: dask-jobqueue's class, the submit and status commands."""

_WALLTIME = re.compile(r"(\d+-)?\d{1,3}:\d{2}:\d{2}|\d{1,3}:\d{2}|\d+")
_MEMORY = re.compile(r"\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]?|[bB])")
_STATES_EVERY = 2.0  # seconds between two squeue calls for the progress line


@dataclass(frozen=True)
class BatchSettings:
    """What each batch job asks for, and how many jobs at most.

    ``cores`` worker threads per job (each runs its chunks in a child process), ``memory`` per
    job (``4GB``), ``walltime`` per job (``HH:MM:SS``), ``queue`` the partition, ``account`` the
    project to charge, ``job_extra`` more scheduler directives (``--qos=debug``).
    ``interface`` is the network interface the scheduler and workers talk on (default: the
    host's), or ``host`` the address they listen on, dashboards included (``127.0.0.1`` keeps a
    one-machine cluster on loopback); ``start_timeout`` the seconds to wait for the first worker.
    """

    kind: str = "slurm"
    jobs: int = 1
    cores: int = 1
    memory: str = "4GB"
    walltime: str = "01:00:00"
    queue: str | None = None
    account: str | None = None
    job_extra: tuple[str, ...] = ()
    interface: str | None = None
    host: str | None = None
    start_timeout: float = 600.0
    python: str = field(default_factory=lambda: sys.executable)


_FIELDS = {f.name for f in fields(BatchSettings)} - {"python"}


def user_cluster_file() -> Path:
    """``$XDG_CONFIG_HOME/modelops/cluster.yaml`` (``~/.config/...`` when the variable is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "modelops" / "cluster.yaml"


def load_batch_settings(
    kind: str | None,
    flags: Mapping[str, Any],
    study_section: Mapping[str, Any] | None = None,
    user_file: Path | None = None,
) -> BatchSettings | None:
    """The settings of this run, or None when it does not run on a batch cluster.

    ``kind`` (``--cluster``) or the study section's ``kind`` chooses the batch system; each other
    field comes from ``flags`` (None means not given), else the study's section, else the user's
    file, else its default. The user's file never chooses the kind: a run goes to the batch
    system only when its command or its study says so.

    Raises:
        ContractViolationError: an unknown kind or key, or a value of the wrong type.
    """
    section = _section(study_section, "the study's cluster section")
    chosen = kind or section.get("kind")
    if chosen is None:
        return None
    if chosen not in BATCH_KINDS:
        raise ContractViolationError(
            f"cluster: unknown batch system {chosen!r} (known: {', '.join(BATCH_KINDS)})",
            field="cluster",
            value=chosen,
        )
    path = user_file if user_file is not None else user_cluster_file()
    user: Mapping[str, Any] = {}
    if path.exists():
        user = _section(read_document(path, what="cluster file"), str(path))
    merged: dict[str, Any] = {}
    for source in (user, section, {k: v for k, v in flags.items() if v is not None}):
        merged.update({k: v for k, v in source.items() if k != "kind"})
    return _settings(str(chosen), merged)


def _section(data: object, where: str) -> Mapping[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ContractViolationError(f"{where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ContractViolationError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))} "
            f"(known: {', '.join(sorted(_FIELDS))})",
            field="cluster",
        )
    return data


def _settings(kind: str, values: Mapping[str, Any]) -> BatchSettings:
    settings = BatchSettings(kind=kind)
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("jobs", "cores"):
            if type(value) is not int or value < 1:
                raise ContractViolationError(
                    f"cluster {name} must be a positive integer, got {value!r}", field=name
                )
        elif name == "start_timeout":
            if type(value) not in (int, float) or not value > 0:
                raise ContractViolationError(
                    f"cluster start_timeout must be a positive number of seconds, got {value!r}",
                    field=name,
                )
            value = float(value)
        elif name == "job_extra":
            value = tuple(shlex.split(value) if isinstance(value, str) else map(str, value))
        elif value is not None:
            value = str(value)
        changes[name] = value
    return replace(settings, **changes)


def check_batch_settings(settings: BatchSettings) -> None:
    """Refuse, before anything is submitted, what the batch system would refuse.

    Raises:
        ContractViolationError: a malformed walltime or memory, the batch system's commands not
            on PATH, dask-jobqueue not installed, or (Slurm) a partition it does not know.
    """
    if not _WALLTIME.fullmatch(settings.walltime):
        raise ContractViolationError(
            f"walltime must look like HH:MM:SS (or D-HH:MM:SS, MM:SS, minutes), got "
            f"{settings.walltime!r}",
            field="walltime",
        )
    if not _MEMORY.fullmatch(settings.memory):
        raise ContractViolationError(
            f"memory must be an amount such as 4GB or 512MiB, got {settings.memory!r}",
            field="memory",
        )
    _, submit, status = BATCH_KINDS[settings.kind]
    for command in (submit, status):
        if shutil.which(command) is None:
            raise ContractViolationError(
                f"cluster {settings.kind}: {command} is not on PATH (run on a login node of "
                f"the {settings.kind.upper()} cluster)",
                field="cluster",
            )
    try:
        _jobqueue()
    except ImportError:
        raise ContractViolationError(
            "a batch cluster needs dask-jobqueue: pip install 'modelops[slurm]'", field="cluster"
        ) from None
    if settings.kind == "slurm" and settings.queue is not None:
        _check_partition(settings.queue)


def _jobqueue() -> Any:
    """dask_jobqueue, imported with Ctrl-C left as it was: one of its modules sets a SIGINT
    handler that exits the process with status 0 at import, which would turn an interrupted run
    into a silent success instead of a resumable stop (exit 130)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    import dask_jobqueue

    if main and signal.getsignal(signal.SIGINT) is not previous:
        signal.signal(signal.SIGINT, previous)
    return dask_jobqueue


def _check_partition(name: str) -> None:
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ContractViolationError(f"queue: cannot ask Slurm for its partitions: {exc}") from None
    if done.returncode != 0:
        detail = " ".join(done.stderr.split())[:200]
        raise ContractViolationError(f"queue: sinfo failed: {detail}", field="queue")
    known = sorted({line.strip() for line in done.stdout.splitlines() if line.strip()})
    if name not in known:
        raise ContractViolationError(
            f"queue: Slurm has no partition {name!r} (partitions: {', '.join(known) or 'none'})",
            field="queue",
        )


class BatchCluster:
    """The dask-jobqueue cluster of one run: started, scaled adaptively, watched, closed.

    Every job it ever submitted is remembered (:attr:`job_ids`), so provenance can name them.
    """

    def __init__(self, settings: BatchSettings, log_directory: Path) -> None:
        self.settings = settings
        self.log_directory = log_directory
        self.cluster: Any = None
        self.job_ids: list[str] = []
        self._states: dict[str, int] = {}
        self._reasons: list[str] = []
        self._states_at = 0.0

    def start(self) -> Any:
        """Create the cluster (its scheduler runs in this process) and let it scale between 1
        and ``jobs`` jobs; returns the dask-jobqueue cluster.

        Raises:
            ClusterError: dask-jobqueue cannot start it (the batch system refused the job).
        """
        dask_jobqueue = _jobqueue()
        s = self.settings
        self.log_directory.mkdir(parents=True, exist_ok=True)
        cls = getattr(dask_jobqueue, BATCH_KINDS[s.kind][0])
        options: dict[str, Any] = {
            "cores": s.cores,
            "processes": 1,
            "memory": s.memory,
            "walltime": s.walltime,
            "queue": s.queue,
            "account": s.account,
            "job_extra_directives": list(s.job_extra),
            "log_directory": str(self.log_directory),
            "python": s.python,
            "name": "modelops-worker",
        }
        if s.interface is not None:
            options["interface"] = s.interface
        if s.host is not None:
            options["scheduler_options"] = {"host": s.host, "dashboard_address": f"{s.host}:0"}
            options["worker_extra_args"] = ["--host", s.host, "--dashboard-address", f"{s.host}:0"]
        try:
            self.cluster = cls(**options)
            self.cluster.adapt(minimum_jobs=1, maximum_jobs=s.jobs)
        except Exception as exc:
            self.close()
            raise ClusterError(
                f"cannot start the {s.kind} cluster: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}",
                hint="check the cluster's queue, account and job_extra settings",
            ) from exc
        return self.cluster

    def refresh_job_ids(self) -> None:
        """Remember the ids of the jobs the cluster has submitted so far."""
        cluster = self.cluster
        if cluster is None:
            return
        with contextlib.suppress(Exception):
            for job in list(cluster.workers.values()):
                job_id = getattr(job, "job_id", None)
                if job_id and str(job_id) not in self.job_ids:
                    self.job_ids.append(str(job_id))

    def job_states(self) -> dict[str, int]:
        """How many of this run's jobs are in each state (``PENDING``, ``RUNNING``, ...);
        asked of the batch system at most every few seconds. Slurm only (empty otherwise)."""
        now = time.monotonic()
        if self.settings.kind != "slurm" or now - self._states_at < _STATES_EVERY:
            return dict(self._states)
        self._states_at = now
        self.refresh_job_ids()
        if not self.job_ids:
            return {}
        try:
            done = subprocess.run(
                ["squeue", "-h", "-o", "%i %T %r", "-j", ",".join(self.job_ids)],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return dict(self._states)
        states: dict[str, int] = {}
        reasons: set[str] = set()
        for line in done.stdout.splitlines():
            parts = line.split(maxsplit=2)
            if len(parts) >= 2:
                states[parts[1]] = states.get(parts[1], 0) + 1
            if len(parts) == 3 and parts[1] == "PENDING" and parts[2] not in ("None", "(null)"):
                reasons.add(parts[2])
        self._states, self._reasons = states, sorted(reasons)
        return dict(states)

    def status_line(self) -> str | None:
        """``slurm jobs: 1 running, 1 pending`` (None before any job, or for other systems)."""
        states = self.job_states()
        if not states:
            return None
        shown = ", ".join(f"{count} {state.lower()}" for state, count in sorted(states.items()))
        why = f", waiting for {', '.join(self._reasons)}" if self._reasons else ""
        return f"{self.settings.kind} jobs: {shown}{why}"

    def provenance(self) -> dict[str, Any]:
        """The cluster's kind, its settings and every job id it submitted."""
        self.refresh_job_ids()
        s = self.settings
        return {
            "kind": s.kind,
            "job_ids": list(self.job_ids),
            "max_jobs": s.jobs,
            "cores": s.cores,
            "memory": s.memory,
            "walltime": s.walltime,
            "queue": s.queue,
            "account": s.account,
            "log_directory": str(self.log_directory),
        }

    def close(self, timeout: float = 30.0) -> None:
        """Close the cluster: its jobs are cancelled, its scheduler stopped."""
        self.refresh_job_ids()
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=timeout)
