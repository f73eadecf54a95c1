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
- Upgrades: the schema is the numbered migrations of :mod:`modelops.store._migrations`.
  Opening for writing applies, in one write transaction, every migration above the file's
  ``PRAGMA user_version`` (re-read inside the transaction, so two processes opening an old
  file at once upgrade it once). A file newer than :data:`SCHEMA_VERSION` is refused.
- Read-only (``Ledger(path, readonly=True)``): SQLite opened with ``mode=ro`` (or
  ``immutable=1`` when the WAL's ``-shm`` file cannot be created, e.g. on a read-only mount);
  no pragma that writes, no upgrade (reading methods use only v1 columns, so an older known
  schema reads fine), and every writing method raises ``StoreError``.

Schema v2 (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    jobs     job_key INTEGER PK, job_id UNIQUE, state, total, spec (JSON), created_at,
             started_at, finished_at (unix seconds), cancel_requested,
             content_key (v2: digest of the job's content, NULL if unknown)
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
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from modelops.store._fs import check_name
from modelops.store._migrations import SCHEMA_VERSION, apply_migrations
from modelops.store._records import (
    JOB_STATES,
    TASK_STATUSES,
    DoneTask,
    FailedTask,
    FailureRecord,
    JobRecord,
    JobState,
    ShardRecord,
    TaskKey,
    seed_from_sql,
    seed_to_sql,
)
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["BUSY_TIMEOUT_MS", "SCHEMA_VERSION", "Ledger"]

BUSY_TIMEOUT_MS = 30_000

_READABLE_FROM = 1  # the oldest schema the reading methods understand without an upgrade
_BATCH = 50_000
_CACHE_KIB = 8 * 1024  # page cache; the OS caches the rest, and driver memory stays flat
_TERMINAL = frozenset({"completed", "failed", "cancelled", "interrupted"})

_JOB_COLUMNS = "job_id, state, total, created_at, started_at, finished_at, cancel_requested, spec"
_WITH_RESULT = (
    "FROM tasks AS t JOIN results AS r ON r.task_id = t.task_id "
    "WHERE t.job_key = ? AND t.status IN ('done', 'cached')"
)


class Ledger:
    """Transactional record of jobs, tasks, commits and shards in one SQLite file.

    Raises ``StoreError`` when the database cannot be opened, was made by a newer ModelOps,
    a job is unknown, a statement fails (e.g. no write lock within the busy timeout), or a
    write is asked of a read-only ledger.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._mutex = threading.RLock()
        if readonly:
            self._conn = self._open_readonly()
            return
        try:
            self._conn = _connect(path, uri=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open ledger {path}: {exc}") from exc
        try:
            self._configure()
        except BaseException:
            self._conn.close()
            raise

    def _configure(self) -> None:
        conn = self._conn
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open ledger {self.path}: {exc}") from exc
        if mode != "wal":
            raise StoreError(f"ledger {self.path} cannot use WAL mode (got {mode!r})")
        self._check_version(version)
        if version < SCHEMA_VERSION:
            with self._write() as conn:  # re-check: another process may have just upgraded it
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                self._check_version(current)
                if current < SCHEMA_VERSION:
                    apply_migrations(conn, current)

    def _open_readonly(self) -> sqlite3.Connection:
        """Open with ``mode=ro``; ``immutable=1`` if SQLite cannot set up the WAL index.

        ``mode=ro`` on a WAL database needs its ``-shm`` and ``-wal`` files to exist or be
        creatable (on a writable directory SQLite may create them: they hold no data). On a
        read-only mount they may be neither; nothing writes the store there, and
        ``immutable=1`` reads the main file without any shared memory.
        """
        base = "file:" + urllib.parse.quote(str(self.path.absolute()))
        try:
            conn = _connect(f"{base}?mode=ro", uri=True)
        except sqlite3.Error:
            try:
                conn = _connect(f"{base}?mode=ro&immutable=1", uri=True)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open ledger {self.path} read-only: {exc}") from exc
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            if version < _READABLE_FROM:
                raise StoreError(f"{self.path} is not a ModelOps ledger (it has no schema)")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open ledger {self.path} read-only: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"ledger {self.path} has schema v{version}, newer than v{SCHEMA_VERSION}",
                hint="upgrade ModelOps",
            )

    @property
    def schema_version(self) -> int:
        """The file's ``PRAGMA user_version`` (below :data:`SCHEMA_VERSION` only read-only)."""
        with self._read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

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
        """A write transaction that takes the write lock up front (no upgrade deadlock).

        Raises:
            StoreError: the ledger is open read-only.
        """
        if self.readonly:
            raise StoreError(
                f"ledger {self.path} is open read-only", hint="open the store for writing"
            )
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

    def create_job(
        self,
        job_id: str,
        *,
        total: int,
        spec: Mapping[str, Any],
        content_key: str | None = None,
    ) -> bool:
        """Register a job; returns True if it already existed (it is then left unchanged).

        ``content_key`` identifies the job's content (its tasks), so that one id cannot name
        two different jobs: a new job stores it, an existing job without one takes it (jobs
        recorded before schema v2), and an existing job with another key is refused.

        Raises:
            StoreError: invalid id or total, or ``job_id`` already names a job with a
                different content key.
        """
        check_name("job id", job_id)
        if total < 0:
            raise StoreError(f"job {job_id}: total must be >= 0, got {total}")
        text = _dump_spec(spec)
        with self._write() as conn:
            row = conn.execute(
                "SELECT job_key, content_key FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO jobs (job_id, total, spec, created_at, content_key) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (job_id, total, text, time.time(), content_key),
                )
                return False
            key, known = row
            if content_key is not None and known is None:
                conn.execute(
                    "UPDATE jobs SET content_key = ? WHERE job_key = ?", (content_key, key)
                )
            elif content_key is not None and known != content_key:
                raise StoreError(
                    f"job id {job_id!r} already names a different job in this store",
                    hint="choose another job id",
                )
            return True

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

    def add_tasks(self, job_id: str, rows: Iterable[TaskKey]) -> int:
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

    def forget_shards(self, paths: Iterable[str]) -> int:
        """Forget recorded shards whose file is gone, and the results that lived in them.

        In one transaction: every ``results`` record of a commit that had one of ``paths``
        is dropped, the tasks with those ids that were ``done`` or ``cached`` (in any job)
        become ``pending`` again, and the shard records of ``paths`` are deleted. The rows
        still in the commit's other shards become invisible (readers keep rows of the
        recorded commit only), so every such task runs again and appears once. Returns the
        number of results dropped.

        Raises:
            StoreError: a SQLite error; nothing is changed then.
        """
        wanted = json.dumps(sorted(set(paths)))
        if wanted == "[]":
            return 0
        with self._write() as conn:
            lost = "SELECT commit_id FROM shards WHERE path IN (SELECT value FROM json_each(?))"
            conn.execute(
                "UPDATE tasks SET status = 'pending' WHERE status IN ('done', 'cached') AND "
                f"task_id IN (SELECT task_id FROM results WHERE commit_id IN ({lost}))",
                (wanted,),
            )
            cur = conn.execute(f"DELETE FROM results WHERE commit_id IN ({lost})", (wanted,))
            dropped = max(cur.rowcount, 0)
            conn.execute(
                "DELETE FROM shards WHERE path IN (SELECT value FROM json_each(?))", (wanted,)
            )
        return dropped

    def shard_paths(self) -> set[str]:
        """Relative paths of every recorded shard in the store."""
        with self._read() as conn:
            rows = conn.execute("SELECT path FROM shards").fetchall()
        return {row[0] for row in rows}


def _connect(target: Path | str, *, uri: bool) -> sqlite3.Connection:
    """A connection with the ledger's settings, having read the file once (so it opens).

    Raises:
        sqlite3.Error: the file cannot be opened or read.
    """
    conn = sqlite3.connect(
        target,
        isolation_level=None,
        timeout=BUSY_TIMEOUT_MS / 1e3,
        check_same_thread=False,  # safe: every use goes through the ledger's mutex
        uri=uri,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        conn.execute("PRAGMA user_version").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


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
