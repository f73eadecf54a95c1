"""The ledger's schema as numbered migrations, applied in order above ``PRAGMA user_version``.

Migration ``n`` takes a ledger from schema ``n - 1`` to ``n``; v1 creates the tables of an
empty file. A migration is never edited once released: a schema change is a new migration,
and a test opens a checked-in store of each old version and upgrades it. Migrations run in the
ledger's one write transaction (see :meth:`modelops.store.ledger.Ledger`), so a failed upgrade
leaves the file as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "apply_migrations"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: SQL statements run in order, or a function given the connection."""

    version: int
    summary: str
    steps: tuple[str, ...] | Callable[[sqlite3.Connection], None]

    def apply(self, conn: sqlite3.Connection) -> None:
        """Run this step on ``conn`` inside the caller's transaction."""
        if callable(self.steps):
            self.steps(conn)
            return
        for statement in self.steps:
            conn.execute(statement)


_V1 = (
    """CREATE TABLE jobs (
    job_key INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'created',
    total INTEGER NOT NULL,
    spec TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE tasks (
    job_key INTEGER NOT NULL REFERENCES jobs(job_key),
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    param_id TEXT NOT NULL,
    replicate INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    duration REAL,
    worker TEXT,
    error_type TEXT,
    message TEXT,
    traceback TEXT,
    stderr_tail TEXT,
    PRIMARY KEY (job_key, seq),
    UNIQUE (job_key, task_id)
) WITHOUT ROWID""",
    "CREATE INDEX tasks_by_status ON tasks (job_key, status, seq)",
    """CREATE TABLE commits (
    commit_id INTEGER PRIMARY KEY,
    job_key INTEGER NOT NULL REFERENCES jobs(job_key),
    committed_at REAL NOT NULL,
    n_done INTEGER NOT NULL,
    n_failed INTEGER NOT NULL,
    n_cached INTEGER NOT NULL
)""",
    """CREATE TABLE shards (
    commit_id INTEGER NOT NULL REFERENCES commits(commit_id),
    output TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (commit_id, output)
)""",
    """CREATE TABLE results (
    task_id TEXT PRIMARY KEY,
    commit_id INTEGER NOT NULL REFERENCES commits(commit_id),
    job_key INTEGER NOT NULL REFERENCES jobs(job_key),
    rows TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID""",
)

_V3_TABLES = (
    """CREATE TABLE outcomes (
    okey INTEGER PRIMARY KEY,
    task_id BLOB NOT NULL CHECK (length(task_id) = 32),
    status INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    duration REAL,
    worker TEXT,
    commit_id INTEGER,
    rows TEXT,
    rkey INTEGER
)""",
    """CREATE TABLE failures (
    okey INTEGER PRIMARY KEY,
    param_id TEXT NOT NULL,
    replicate INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    error_type TEXT,
    message TEXT,
    traceback TEXT,
    stderr_tail TEXT
)""",
    "ALTER TABLE commits ADD COLUMN rows TEXT",
    "ALTER TABLE commits ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0",
    """CREATE TABLE compiled (
    source_key TEXT PRIMARY KEY,
    job_key INTEGER NOT NULL REFERENCES jobs(job_key)
) WITHOUT ROWID""",
)

_V2_STATUS = "CASE t.status WHEN 'done' THEN 1 WHEN 'cached' THEN 2 WHEN 'failed' THEN 3 ELSE 4 END"


def _to_v3(conn: sqlite3.Connection) -> None:
    """Per-task registration rows become outcome rows keyed by (job, position).

    A v2 task's ``seq`` is its registration order, which the engine always made the task's
    position in the job; pending tasks have no outcome. Each ``results`` record becomes an
    index entry pointing at the outcome of the job that produced the rows.
    """
    conn.create_function("mops_blob", 1, bytes.fromhex, deterministic=True)
    conn.create_function("mops_rkey", 1, _result_key_of_hex, deterministic=True)
    for statement in _V3_TABLES:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO outcomes (okey, task_id, status, attempts, duration, worker, commit_id, rows, "
        f"rkey) SELECT (t.job_key << 32) | t.seq, mops_blob(t.task_id), {_V2_STATUS}, t.attempts, "
        "t.duration, t.worker, r.commit_id, r.rows, mops_rkey(t.task_id) FROM tasks AS t "
        "LEFT JOIN results AS r ON r.task_id = t.task_id AND t.status IN ('done', 'cached') "
        "WHERE t.status != 'pending'"
    )
    conn.execute(
        "INSERT INTO failures (okey, param_id, replicate, seed, error_type, message, traceback, "
        "stderr_tail) SELECT (t.job_key << 32) | t.seq, t.param_id, t.replicate, t.seed, "
        "t.error_type, t.message, t.traceback, t.stderr_tail FROM tasks AS t "
        "WHERE t.status IN ('failed', 'timeout')"
    )
    conn.execute("ALTER TABLE results RENAME TO results_v2")
    conn.execute("CREATE TABLE results (rkey INTEGER PRIMARY KEY, okey INTEGER NOT NULL)")
    conn.execute(
        "INSERT OR REPLACE INTO results (rkey, okey) SELECT mops_rkey(r.task_id), "
        "(t.job_key << 32) | t.seq FROM results_v2 AS r JOIN tasks AS t "
        "ON t.task_id = r.task_id AND t.job_key = r.job_key ORDER BY r.commit_id"
    )
    conn.execute("DROP TABLE results_v2")
    conn.execute("UPDATE commits SET indexed = 1")
    conn.execute("DROP TABLE tasks")


def _result_key_of_hex(task_id: str) -> int:
    return int.from_bytes(bytes.fromhex(task_id)[:8], "big", signed=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs, tasks, commits, shards and results tables", _V1),
    Migration(
        2,
        "jobs.content_key: the digest of the job's content, to tell two jobs of one id apart",
        ("ALTER TABLE jobs ADD COLUMN content_key TEXT",),
    ),
    Migration(
        3,
        "outcome rows keyed by (job, position) replace registered tasks; a compact cache index",
        _to_v3,
    ),
)
"""Every migration, in version order (1, 2, ... without gaps)."""

SCHEMA_VERSION = MIGRATIONS[-1].version
"""The schema this code writes; a ledger with a higher ``user_version`` is refused."""


def apply_migrations(conn: sqlite3.Connection, current: int) -> int:
    """Apply every migration above ``current`` and set ``user_version``; returns the new one.

    The caller holds a write transaction and has checked ``current <= SCHEMA_VERSION``.
    """
    for migration in MIGRATIONS:
        if migration.version > current:
            migration.apply(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION
