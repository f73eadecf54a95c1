"""The embedded result store: a SQLite ledger plus Parquet shards in one directory.

See :mod:`modelops.store._store` for the durability and exactly-once contract and
:mod:`modelops.store.ledger` for the schema.
"""

from __future__ import annotations

from modelops.store._records import (
    JOB_STATES,
    TASK_STATUSES,
    DoneTask,
    FailedTask,
    FailureRecord,
    JobRecord,
    JobState,
    ShardRecord,
    TaskRow,
    TaskStatus,
)
from modelops.store._store import ResultStore
from modelops.store.ledger import Ledger

__all__ = [
    "JOB_STATES",
    "TASK_STATUSES",
    "DoneTask",
    "FailedTask",
    "FailureRecord",
    "JobRecord",
    "JobState",
    "Ledger",
    "ResultStore",
    "ShardRecord",
    "TaskRow",
    "TaskStatus",
]
