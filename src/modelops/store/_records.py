"""Plain records the store takes and returns: task outcomes, jobs, failures, shards.

Also the seed mapping: seeds are unsigned 64-bit but SQLite integers are signed, so a seed
``s >= 2**63`` is stored as ``s - 2**64`` (same 8 bytes, still an INTEGER) and mapped back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "JOB_STATES",
    "TASK_STATUSES",
    "CachedTask",
    "DoneTask",
    "FailedTask",
    "FailureRecord",
    "JobRecord",
    "JobState",
    "RowCounts",
    "ShardRecord",
    "TaskStatus",
    "seed_from_sql",
    "seed_to_sql",
]

TaskStatus = Literal["pending", "done", "cached", "failed", "timeout"]
JobState = Literal["created", "running", "completed", "failed", "cancelled", "interrupted"]
TASK_STATUSES: tuple[TaskStatus, ...] = get_args(TaskStatus)
JOB_STATES: tuple[JobState, ...] = get_args(JobState)

CachedTask = tuple[int, str]
"""(position in the job, task_id) of a task whose rows another job of the store holds."""

_U64 = 2**64
_I64 = 2**63


@dataclass(frozen=True, slots=True)
class DoneTask:
    """A task that finished in this run; ``seq`` is its position in the job's task order
    and ``attempts`` counts this run's tries only."""

    seq: int
    task_id: str
    duration: float | None = None
    worker: str | None = None
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class FailedTask:
    """A task that failed or timed out in this run (``seq``: its position in the job);
    ``attempts`` counts this run's tries."""

    seq: int
    task_id: str
    param_id: str
    replicate: int
    seed: int
    status: Literal["failed", "timeout"]
    error_type: str
    message: str
    traceback: str | None = None
    stderr_tail: str | None = None
    attempts: int = 1
    duration: float | None = None
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class RowCounts:
    """Rows per output of a commit's done tasks: ``usual`` is the JSON ``{output: rows}`` most
    of them have, ``special`` the JSON of each task id whose counts differ from it."""

    usual: str
    special: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ShardRecord:
    """One Parquet shard written by a commit: ``path`` is relative to the store root."""

    output: str
    path: str
    rows: int
    bytes: int


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as the ledger knows it; ``spec`` holds its description and provenance."""

    job_id: str
    state: str
    total: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """The last failure of a task whose status is ``failed`` or ``timeout``."""

    task_id: str
    param_id: str
    replicate: int
    seed: int
    status: str
    error_type: str | None
    message: str | None
    traceback: str | None
    stderr_tail: str | None
    attempts: int
    duration: float | None
    worker: str | None


def seed_to_sql(seed: int) -> int:
    """Map an unsigned 64-bit seed onto SQLite's signed INTEGER (two's complement)."""
    if not 0 <= seed < _U64:
        raise StoreError(f"seed {seed} is outside 0..2**64-1")
    return seed - _U64 if seed >= _I64 else seed


def seed_from_sql(value: int) -> int:
    """Inverse of :func:`seed_to_sql`."""
    return value + _U64 if value < 0 else value
