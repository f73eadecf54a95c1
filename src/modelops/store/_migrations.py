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

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs, tasks, commits, shards and results tables", _V1),
    Migration(
        2,
        "jobs.content_key: the digest of the job's content, to tell two jobs of one id apart",
        ("ALTER TABLE jobs ADD COLUMN content_key TEXT",),
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
