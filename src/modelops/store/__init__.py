"""The embedded result store: a SQLite ledger plus Parquet shards in one directory.

See :mod:`modelops.store._store` for the durability and exactly-once contract,
:mod:`modelops.store.ledger` for the schema (numbered migrations in
:mod:`modelops.store._migrations`) and :mod:`modelops.store._reading` for the helpers that find
a store, resolve a job and tell its state.
"""

from __future__ import annotations

from modelops.store._reading import (
    JobLike,
    default_store,
    existing_store_root,
    job_state,
    job_status,
    open_existing_store,
    open_store,
    read_job,
    resolve_job,
)
from modelops.store._records import (
    JOB_STATES,
    TASK_STATUSES,
    CachedTask,
    DoneTask,
    FailedTask,
    FailureRecord,
    JobRecord,
    JobState,
    RowCounts,
    ShardRecord,
    TaskStatus,
)
from modelops.store._store import ResultStore
from modelops.store.ledger import Ledger

__all__ = [
    "JOB_STATES",
    "TASK_STATUSES",
    "CachedTask",
    "DoneTask",
    "FailedTask",
    "FailureRecord",
    "JobLike",
    "JobRecord",
    "JobState",
    "Ledger",
    "ResultStore",
    "RowCounts",
    "ShardRecord",
    "TaskStatus",
    "default_store",
    "existing_store_root",
    "job_state",
    "job_status",
    "open_existing_store",
    "open_store",
    "read_job",
    "resolve_job",
]
