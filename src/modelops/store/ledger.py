"""The SQLite ledger: jobs, their tasks, which commit holds each task's rows, and the shards.

Contract:

- One ``sqlite3`` connection per :class:`Ledger`. It may be used from several threads (e.g.
  a job run in a thread, its results read in the main thread): a lock serializes them.
- WAL mode: any number of reader processes (``mops status``) run concurrently with the one
  writer; writers from other processes (``mops cancel``) wait up to :data:`BUSY_TIMEOUT_MS`.
- ``synchronous=FULL``: once a write method returns, the change survives a power cut. The
  shard protocol would stay exactly-once with ``NORMAL`` too (a lost transaction only turns
  fsynced shards into orphans), but a finished batch could then silently need re-running; one
  extra fsync per commit batch is cheap next to the shard fsyncs already paid.
- Each method is one transaction. Every error surfaces as ``StoreError``.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    jobs     job_key INTEGER PK, job_id UNIQUE, state, total, spec (JSON), created_at,
             started_at, finished_at (unix seconds), cancel_requested
    tasks    (job_key, seq) PK, (job_key, task_id) UNIQUE, param_id, replicate, seed,
             status (pending|done|cached|failed|timeout), attempts, duration, worker,
             error_type, message, traceback, stderr_tail;  index (job_key, status, seq)
    commits  commit_id PK, job_key, committed_at, n_done, n_failed, n_cached
    shards   (commit_id, output) PK, path UNIQUE (relative to the store root), rows, bytes
    results  task_id PK, commit_id, job_key (whose shards hold the rows),
             rows (JSON {output: row count}); one record per task id, the newest commit wins

Layout choices, for speed at 10^5-10^6 tasks per job: tasks refer to their job by the
integer ``job_key``, not the 64-character job id (the tasks table and its indexes are half the
size); the table is clustered by ``(job_key, seq)``, ``seq`` being the registration order, so a
commit of tasks run in that order touches few pages; ``(job_key, task_id)`` is unique.
Seeds are stored as signed 64-bit integers (see :func:`~modelops.store._records.seed_to_sql`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from modelops.store._fs import check_name
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
    seed_from_sql,
    seed_to_sql,
)
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["BUSY_TIMEOUT_MS", "SCHEMA_VERSION", "Ledger"]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

_PAGE = 10_000
_BATCH = 50_000
_CACHE_KIB = 8 * 1024  # page cache; the OS caches the rest, and driver memory stays flat
_TERMINAL = frozenset({"completed", "failed", "cancelled", "interrupted"})

_SCHEMA = """
CREATE TABLE jobs (
    job_key INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'created',
    total INTEGER NOT NULL,
    spec TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE tasks (
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
) WITHOUT ROWID;
CREATE INDEX tasks_by_status ON tasks (job_key, status, seq);
CREATE TABLE commits (
    commit_id INTEGER PRIMARY KEY,
    job_key INTEGER NOT NULL REFERENCES jobs(job_key),
    committed_at REAL NOT NULL,
    n_done INTEGER NOT NULL,
    n_failed INTEGER NOT NULL,
    n_cached INTEGER NOT NULL
);
CREATE TABLE shards (
    commit_id INTEGER NOT NULL REFERENCES commits(commit_id),
    output TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (commit_id, output)
);
CREATE TABLE results (
    task_id TEXT PRIMARY KEY,
    commit_id INTEGER NOT NULL REFERENCES commits(commit_id),
    job_key INTEGER NOT NULL REFERENCES jobs(job_key),
    rows TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
"""

_JOB_COLUMNS = "job_id, state, total, created_at, started_at, finished_at, cancel_requested, spec"
_WITH_RESULT = (
    "FROM tasks AS t JOIN results AS r ON r.task_id = t.task_id "
    "WHERE t.job_key = ? AND t.status IN ('done', 'cached')"
)


class Ledger:
    """Transactional record of jobs, tasks, commits and shards in one SQLite file.

    Raises ``StoreError`` when the database cannot be opened, was made by a newer ModelOps,
    a job is unknown, or a statement fails (e.g. no write lock within the busy timeout).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mutex = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                path,
                isolation_level=None,
                timeout=BUSY_TIMEOUT_MS / 1e3,
                check_same_thread=False,  # safe: every use goes through self._mutex
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open ledger {path}: {exc}") from exc
        try:
            self._configure()
        except BaseException:
            self._conn.close()
            raise

    def _configure(self) -> None:
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open ledger {self.path}: {exc}") from exc
        if mode != "wal":
            raise StoreError(f"ledger {self.path} cannot use WAL mode (got {mode!r})")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"ledger {self.path} has schema v{version}, newer than v{SCHEMA_VERSION}",
                hint="upgrade ModelOps",
            )
        if version < SCHEMA_VERSION:
            with self._write() as conn:  # re-check: another process may have just created it
                if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection; the instance is unusable afterwards."""
        with self._mutex:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------

    def _fail(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        hint = "another process held the ledger too long; retry" if "locked" in text else None
        return StoreError(f"ledger {self.path}: {text}", hint=hint)

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            yield from self._transaction_unlocked(begin)

    def _transaction_unlocked(self, begin: str) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._fail(exc) from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._fail(exc) from exc

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlock)."""
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction: its queries all see one snapshot."""
        return self._transaction("BEGIN")

    @staticmethod
    def _job_key(conn: sqlite3.Connection, job_id: str) -> int:
        row = conn.execute("SELECT job_key FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown job {job_id!r}", hint="`mops jobs` lists the jobs")
        return int(row[0])

    # -- jobs -----------------------------------------------------------------------------

    def create_job(self, job_id: str, *, total: int, spec: Mapping[str, Any]) -> bool:
        """Register a job; returns True if it already existed (it is then left unchanged)."""
        check_name("job id", job_id)
        if total < 0:
            raise StoreError(f"job {job_id}: total must be >= 0, got {total}")
        text = _dump_spec(spec)
        with self._write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO jobs (job_id, total, spec, created_at) VALUES (?, ?, ?, ?)",
                (job_id, total, text, time.time()),
            )
            return cur.rowcount == 0

    def get_job(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if the ledger has no such job."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        return None if row is None else _job_record(row)

    def list_jobs(self) -> list[JobRecord]:
        """All jobs, oldest first."""
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY job_key").fetchall()
        return [_job_record(row) for row in rows]

    def set_job_state(
        self,
        job_id: str,
        state: JobState,
        *,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Set a job's state and timestamps.

        ``running`` sets ``started_at`` (now unless given) and clears ``finished_at`` and the
        cancel flag, so a re-run after ``mops cancel`` starts clean. A terminal state
        (completed, failed, cancelled, interrupted) sets ``finished_at`` (now unless given).
        """
        if state not in JOB_STATES:
            raise StoreError(f"unknown job state {state!r}", hint=f"use one of {JOB_STATES}")
        now = time.time()
        with self._write() as conn:
            key = self._job_key(conn, job_id)
            if state == "running":
                start = started_at.timestamp() if started_at else now
                conn.execute(
                    "UPDATE jobs SET state = ?, started_at = ?, finished_at = NULL, "
                    "cancel_requested = 0 WHERE job_key = ?",
                    (state, start, key),
                )
            elif state in _TERMINAL:
                end = finished_at.timestamp() if finished_at else now
                conn.execute(
                    "UPDATE jobs SET state = ?, finished_at = ? WHERE job_key = ?",
                    (state, end, key),
                )
            else:
                conn.execute("UPDATE jobs SET state = ? WHERE job_key = ?", (state, key))

    def update_job_spec(self, job_id: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into the job's spec (nested dicts merge) and return the result."""
        with self._write() as conn:
            key = self._job_key(conn, job_id)
            (text,) = conn.execute("SELECT spec FROM jobs WHERE job_key = ?", (key,)).fetchone()
            merged = _merge(json.loads(text), patch)
            conn.execute("UPDATE jobs SET spec = ? WHERE job_key = ?", (_dump_spec(merged), key))
        return merged

    def request_cancel(self, job_id: str) -> None:
        """Ask the driver running ``job_id`` (usually another process) to stop."""
        with self._write() as conn:
            key = self._job_key(conn, job_id)
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE job_key = ?", (key,))

    def cancel_requested(self, job_id: str) -> bool:
        """True if a cancel was requested since the job last entered ``running``."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT cancel_requested FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        if row is None:
            raise StoreError(f"unknown job {job_id!r}", hint="`mops jobs` lists the jobs")
        return bool(row[0])

    # -- tasks ----------------------------------------------------------------------------

    def add_tasks(self, job_id: str, rows: Iterable[TaskRow]) -> int:
        """Register ``(task_id, param_id, replicate, seed)`` rows as pending tasks.

        Tasks already registered are left as they are. ``rows`` is consumed in batches
        (bounded memory); each batch is inserted sorted by task id, which keeps index inserts
        local, while ``seq`` keeps the caller's order. All batches form one transaction, so a
        failure registers nothing. Returns the number of tasks added.

        Raises:
            StoreError: unknown job, a seed outside ``0..2**64-1``, or SQLite error.
        """
        added = 0
        source = iter(rows)
        with self._write() as conn:
            key = self._job_key(conn, job_id)
            (seq,) = conn.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM tasks WHERE job_key = ?", (key,)
            ).fetchone()
            while batch := list(islice(source, _BATCH)):
                params = [
                    (key, t, seq + i, p, r, seed_to_sql(s)) for i, (t, p, r, s) in enumerate(batch)
                ]
                params.sort(key=_task_id_of)
                seq += len(batch)
                cur = conn.executemany(
                    "INSERT OR IGNORE INTO tasks "
                    "(job_key, task_id, seq, param_id, replicate, seed) VALUES (?, ?, ?, ?, ?, ?)",
                    params,
                )
                added += max(cur.rowcount, 0)
        return added

    def done_task_ids(self, job_id: str) -> set[str]:
        """Task ids of the job whose status is ``done`` or ``cached``."""
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            rows = conn.execute(
                "SELECT task_id FROM tasks WHERE job_key = ? AND status IN ('done', 'cached')",
                (key,),
            ).fetchall()
        return {row[0] for row in rows}

    def classify_done(self, job_id: str, task_ids: Sequence[str]) -> tuple[set[str], set[str]]:
        """Split ``task_ids`` into those already done or cached in this job and those with
        results elsewhere in the store (candidates to mark cached); the rest need running.

        One query per call, so the engine can check a block of a huge job without holding the
        job's whole done-set in memory.
        """
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            rows = conn.execute(
                "SELECT r.task_id, t.status FROM results AS r "
                "LEFT JOIN tasks AS t ON t.job_key = ? AND t.task_id = r.task_id "
                "WHERE r.task_id IN (SELECT value FROM json_each(?))",
                (key, json.dumps(list(task_ids))),
            ).fetchall()
        here = {task_id for task_id, status in rows if status in ("done", "cached")}
        return here, {task_id for task_id, _ in rows} - here

    def pending_tasks(self, job_id: str) -> Iterator[TaskRow]:
        """Pending ``(task_id, param_id, replicate, seed)`` in registration order.

        Rows are fetched page by page and no statement stays open in between, so the caller
        may commit while iterating (a task committed meanwhile may still be yielded).
        """
        with self._read() as conn:
            key = self._job_key(conn, job_id)
        last = -1
        while True:
            with self._read() as conn:
                page = conn.execute(
                    "SELECT seq, task_id, param_id, replicate, seed FROM tasks "
                    "WHERE job_key = ? AND status = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
                    (key, last, _PAGE),
                ).fetchall()
            for _, task_id, param_id, replicate, seed in page:
                yield (task_id, param_id, replicate, seed_from_sql(seed))
            if len(page) < _PAGE:
                return
            last = page[-1][0]

    def counts(self, job_id: str) -> dict[str, int]:
        """Number of the job's tasks per status; every status is present, zeros included."""
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            rows = conn.execute(
                "SELECT status, COUNT(*) FROM tasks WHERE job_key = ? GROUP BY status", (key,)
            ).fetchall()
        counts: dict[str, int] = dict.fromkeys(TASK_STATUSES, 0)
        counts.update(dict(rows))
        return counts

    def failures(self, job_id: str, *, limit: int | None = None) -> list[FailureRecord]:
        """Tasks whose status is ``failed`` or ``timeout``, in registration order."""
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            rows = conn.execute(
                "SELECT task_id, param_id, replicate, seed, status, error_type, message, "
                "traceback, stderr_tail, attempts, duration, worker FROM tasks "
                "WHERE job_key = ? AND status IN ('failed', 'timeout') ORDER BY seq LIMIT ?",
                (key, -1 if limit is None else limit),
            ).fetchall()
        return [FailureRecord(r[0], r[1], r[2], seed_from_sql(r[3]), *r[4:]) for r in rows]

    def next_commit_id(self) -> int:
        """The id the next commit will get (the single writer calls it under the run lock)."""
        with self._read() as conn:
            (value,) = conn.execute(
                "SELECT COALESCE(MAX(commit_id), 0) + 1 FROM commits"
            ).fetchone()
        return int(value)

    def record_commit(
        self,
        job_id: str,
        commit_id: int,
        *,
        shards: Sequence[ShardRecord],
        done: Sequence[DoneTask],
        row_counts: Mapping[str, str],
        failed: Sequence[FailedTask],
        cached: Sequence[str],
    ) -> None:
        """Record one commit atomically: its shards and the new status of its tasks.

        Done tasks become ``done`` (attempts added, error fields cleared) and their
        ``results`` record points at this commit with ``row_counts[task_id]`` (JSON
        ``{output: rows}``); failed tasks take their status and error; cached tasks become
        ``cached``.

        Raises:
            StoreError: unknown job, a task not registered in it, a cached task without
                results, or a SQLite error; nothing is recorded then.
        """
        with self._write() as conn:
            key = self._job_key(conn, job_id)
            conn.execute(
                "INSERT INTO commits (commit_id, job_key, committed_at, n_done, n_failed, "
                "n_cached) VALUES (?, ?, ?, ?, ?, ?)",
                (commit_id, key, time.time(), len(done), len(failed), len(cached)),
            )
            conn.executemany(
                "INSERT INTO shards (commit_id, output, path, rows, bytes) VALUES (?, ?, ?, ?, ?)",
                [(commit_id, s.output, s.path, s.rows, s.bytes) for s in shards],
            )
            cur = conn.executemany(
                "UPDATE tasks SET status = 'done', attempts = attempts + ?, duration = ?, "
                "worker = ?, error_type = NULL, message = NULL, traceback = NULL, "
                "stderr_tail = NULL WHERE job_key = ? AND task_id = ?",
                [(d.attempts, d.duration, d.worker, key, d.task_id) for d in done],
            )
            _expect(cur.rowcount if done else 0, len(done), "done", job_id)
            conn.executemany(
                "INSERT OR REPLACE INTO results (task_id, commit_id, job_key, rows) "
                "VALUES (?, ?, ?, ?)",
                [(d.task_id, commit_id, key, row_counts.get(d.task_id, "{}")) for d in done],
            )
            cur = conn.executemany(
                "UPDATE tasks SET status = ?, attempts = attempts + ?, duration = ?, worker = ?, "
                "error_type = ?, message = ?, traceback = ?, stderr_tail = ? "
                "WHERE job_key = ? AND task_id = ?",
                [
                    (f.status, f.attempts, f.duration, f.worker, f.error_type, f.message,
                     f.traceback, f.stderr_tail, key, f.task_id)
                    for f in failed
                ],
            )  # fmt: skip
            _expect(cur.rowcount if failed else 0, len(failed), "failed", job_id)
            cur = conn.executemany(
                "UPDATE tasks SET status = 'cached' WHERE job_key = ? AND task_id = ? "
                "AND EXISTS (SELECT 1 FROM results WHERE results.task_id = tasks.task_id)",
                [(key, task_id) for task_id in cached],
            )
            _expect(cur.rowcount if cached else 0, len(cached), "cached", job_id)

    def result_index(self, job_id: str) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
        """What a reader of the job's results needs, from one snapshot.

        Returns ``(keys, shards)``: ``keys`` are the ``(task_id, commit_id)`` the ``results``
        records give for the job's done and cached tasks; ``shards`` are ``(output, path)``
        of every recorded shard of those commits.
        """
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            keys = conn.execute(f"SELECT t.task_id, r.commit_id {_WITH_RESULT}", (key,)).fetchall()
            commits = json.dumps(sorted({commit for _, commit in keys}))
            shards = conn.execute(
                "SELECT output, path FROM shards "
                "WHERE commit_id IN (SELECT value FROM json_each(?)) ORDER BY commit_id, output",
                (commits,),
            ).fetchall()
        return keys, shards

    def output_counts(self, job_id: str) -> dict[str, int]:
        """Rows per output over the job's done and cached tasks, from the ledger alone."""
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            rows = conn.execute(
                f"SELECT j.key, SUM(j.value) FROM (SELECT r.rows AS rows {_WITH_RESULT}) AS x, "
                "json_each(x.rows) AS j GROUP BY j.key ORDER BY j.key",
                (key,),
            ).fetchall()
        return {output: int(total) for output, total in rows}

    def shard_paths(self) -> set[str]:
        """Relative paths of every recorded shard in the store."""
        with self._read() as conn:
            rows = conn.execute("SELECT path FROM shards").fetchall()
        return {row[0] for row in rows}


def _task_id_of(params: tuple[Any, ...]) -> str:
    return str(params[1])


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _job_record(row: tuple[Any, ...]) -> JobRecord:
    job_id, state, total, created, started, finished, cancel, spec = row
    return JobRecord(
        job_id=job_id,
        state=state,
        total=total,
        created_at=datetime.fromtimestamp(created, UTC),
        started_at=_ts(started),
        finished_at=_ts(finished),
        cancel_requested=bool(cancel),
        spec=json.loads(spec),
    )


def _merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: nested dicts merge, any other value in ``patch`` replaces."""
    merged = dict(base)
    for name, value in patch.items():
        old = merged.get(name)
        merged[name] = (
            _merge(old, value) if isinstance(old, dict) and isinstance(value, Mapping) else value
        )
    return merged


def _dump_spec(spec: Mapping[str, Any]) -> str:
    try:
        return json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"job spec is not plain JSON: {exc}") from exc


def _expect(changed: int, wanted: int, kind: str, job_id: str) -> None:
    if changed != wanted:
        extra = " or have no results in the store" if kind == "cached" else ""
        raise StoreError(
            f"commit names {wanted - changed} {kind} task(s) not registered in job {job_id}{extra}"
        )
