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
  no pragma that writes, no upgrade: a file of an older schema is refused with a message
  saying to open it for writing once, never misread. Every writing method raises ``StoreError``.

Schema v3 (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    jobs      job_key INTEGER PK, job_id UNIQUE, state, total, spec (JSON), created_at,
              started_at, finished_at (unix seconds), cancel_requested, content_key
    outcomes  okey INTEGER PK (job_key << 32 | position of the task in the job), task_id
              (32-byte BLOB), status (1 done, 2 cached, 3 failed, 4 timeout), attempts,
              duration, worker, commit_id (whose shards hold the rows), rows (JSON
              {output: rows}, NULL when the commit's usual counts apply), rkey (the task's
              cache index key)
    failures  okey PK, param_id, replicate, seed, error_type, message, traceback,
              stderr_tail: the last failure of a failed or timed-out task
    commits   commit_id PK, job_key, committed_at, n_done, n_failed, n_cached, rows (the
              usual {output: rows} of its done tasks), indexed (in the cache index yet)
    shards    (commit_id, output) PK, path UNIQUE (relative to the store root), rows, bytes
    results   rkey INTEGER PK (first 8 bytes of a task id, signed), okey: the cache index,
              pointing at the newest done outcome of the task; a key collision is a miss.
              Filled by :meth:`Ledger.index_commits` once per run (``commits.indexed``)
    compiled  source_key PK (digest of a study source as compiled), job_key: lets a re-run
              of a finished study skip compiling it

Layout choices, for throughput at 10^5-10^6 tasks per job: a task has no row until it has an
outcome ("pending" is the absence of one, so nothing is registered up front), and a commit
inserts its outcomes instead of updating rows; outcome keys are integers that grow with the
task's position, so a commit's inserts are sorted appends to one region of the B-tree; the
cache index holds 8-byte integer keys only (the full id is checked against the outcome);
per-task row counts are stored only where they differ from the commit's usual ones.
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
from typing import TYPE_CHECKING, Any

from modelops.store._fs import check_name
from modelops.store._migrations import SCHEMA_VERSION, apply_migrations
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
    seed_from_sql,
    seed_to_sql,
)
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["BUSY_TIMEOUT_MS", "SCHEMA_VERSION", "Ledger", "ledger_schema"]

BUSY_TIMEOUT_MS = 30_000

_SEQ_MASK = (1 << 32) - 1
_CACHE_KIB = 8 * 1024  # page cache; the OS caches the rest, and driver memory stays flat
_TERMINAL = frozenset({"completed", "failed", "cancelled", "interrupted"})

_JOB_COLUMNS = "job_id, state, total, created_at, started_at, finished_at, cancel_requested, spec"
_STATUS_CODES = {"done": 1, "cached": 2, "failed": 3, "timeout": 4}
_STATUS_NAMES = {code: name for name, code in _STATUS_CODES.items()}


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
            if version == 0:
                raise StoreError(f"{self.path} is not a ModelOps ledger (it has no schema)")
            if version < SCHEMA_VERSION:
                raise StoreError(
                    f"ledger {self.path} has schema v{version}, older than v{SCHEMA_VERSION}",
                    hint="open the store once for writing to upgrade it in place",
                )
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

    def finished_positions(self, job_id: str, start: int, stop: int) -> set[int]:
        """Positions in ``start .. stop - 1`` of the job's tasks that are done or cached.

        One range scan of the job's outcomes, so the engine checks a block of a huge job
        without holding the job's whole done-set in memory.
        """
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            rows = conn.execute(
                "SELECT okey FROM outcomes WHERE okey >= ? AND okey < ? AND status <= 2",
                (_okey(key, start), _okey(key, stop)),
            ).fetchall()
        return {okey & _SEQ_MASK for (okey,) in rows}

    def index_commits(self) -> int:
        """Add the done tasks of every commit not yet in the cache index; returns how many.

        Commits do not touch the index (its keys are random, so inserting them commit by commit
        rewrites pages all over it); a run indexes its commits once, sorted, when it ends, and
        also at its start, for the commits of a run that was killed. Until then those tasks are
        only cache misses for other jobs, never wrong hits. Newer commits win.
        """
        with self._write() as conn:
            jobs = conn.execute("SELECT DISTINCT job_key FROM commits WHERE indexed = 0").fetchall()
            added = 0
            for (key,) in jobs:
                cur = conn.execute(
                    "INSERT OR REPLACE INTO results (rkey, okey) SELECT rkey, okey FROM outcomes "
                    "WHERE okey >= ? AND okey < ? AND status = 1 AND commit_id IN "
                    "(SELECT commit_id FROM commits WHERE indexed = 0 AND job_key = ?) "
                    "ORDER BY rkey, commit_id",
                    (*_span(key), key),
                )
                added += max(cur.rowcount, 0)
            conn.execute("UPDATE commits SET indexed = 1 WHERE indexed = 0")
        return added

    def has_other_results(self, job_id: str) -> bool:
        """True if tasks of other jobs have outcomes: only then can a cache lookup hit."""
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM outcomes WHERE okey < ?) "
                "OR EXISTS (SELECT 1 FROM outcomes WHERE okey >= ?)",
                _span(key),
            ).fetchone()
        return bool(row[0])

    def cached_elsewhere(self, job_id: str, task_ids: Sequence[str]) -> set[str]:
        """Those of ``task_ids`` whose rows another job of the store already holds."""
        wanted = {_result_key(task_id): task_id for task_id in task_ids}
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            rows = conn.execute(
                "SELECT r.rkey, o.task_id FROM results AS r JOIN outcomes AS o "
                "ON o.okey = r.okey WHERE r.rkey IN (SELECT value FROM json_each(?)) "
                "AND (r.okey < ? OR r.okey >= ?)",
                (json.dumps(list(wanted)), *_span(key)),
            ).fetchall()
        found = set()
        for rkey, blob in rows:
            task_id = wanted[rkey]
            if blob == _blob(task_id):  # an 8-byte key collision is a miss, never a wrong hit
                found.add(task_id)
        return found

    def counts(self, job_id: str) -> dict[str, int]:
        """Number of the job's tasks per status; every status is present, zeros included.

        Tasks with no outcome yet are ``pending``.
        """
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            (total,) = conn.execute("SELECT total FROM jobs WHERE job_key = ?", (key,)).fetchone()
            rows = conn.execute(
                "SELECT status, COUNT(*) FROM outcomes WHERE okey >= ? AND okey < ? "
                "GROUP BY status",
                _span(key),
            ).fetchall()
        counts: dict[str, int] = dict.fromkeys(TASK_STATUSES, 0)
        for code, n in rows:
            counts[_STATUS_NAMES[code]] = n
        counts["pending"] = max(total - sum(counts.values()), 0)
        return counts

    def failures(self, job_id: str, *, limit: int | None = None) -> list[FailureRecord]:
        """Tasks whose status is ``failed`` or ``timeout``, in job order."""
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            rows = conn.execute(
                "SELECT o.task_id, f.param_id, f.replicate, f.seed, o.status, f.error_type, "
                "f.message, f.traceback, f.stderr_tail, o.attempts, o.duration, o.worker "
                "FROM outcomes AS o JOIN failures AS f ON f.okey = o.okey "
                "WHERE o.okey >= ? AND o.okey < ? AND o.status >= 3 ORDER BY o.okey LIMIT ?",
                (*_span(key), -1 if limit is None else limit),
            ).fetchall()
        return [
            FailureRecord(r[0].hex(), r[1], r[2], seed_from_sql(r[3]), _STATUS_NAMES[r[4]], *r[5:])
            for r in rows
        ]

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
        row_counts: RowCounts,
        failed: Sequence[FailedTask],
        cached: Sequence[CachedTask],
    ) -> None:
        """Record one commit atomically: its shards and the outcome of each of its tasks.

        Done tasks become ``done`` (attempts added to earlier runs' ones) with their rows in
        this commit, and the cache index points at them; ``row_counts`` gives each done task's
        ``{output: rows}`` JSON, the ones missing from it having the commit's usual counts.
        Failed tasks take their status and error; cached tasks become ``cached``, sharing the
        commit (and counts) of the job that holds their rows.

        Raises:
            StoreError: unknown job, a position outside the job, a position that holds
                another task, a cached task without results, or a SQLite error; nothing is
                recorded then.
        """
        with self._write() as conn:
            key = self._job_key(conn, job_id)
            (total,) = conn.execute("SELECT total FROM jobs WHERE job_key = ?", (key,)).fetchone()
            for seq in _positions(done, failed, cached):
                if not 0 <= seq < total:
                    raise StoreError(f"commit names task position {seq}, outside job {job_id}")
            conn.execute(
                "INSERT INTO commits (commit_id, job_key, committed_at, n_done, n_failed, "
                "n_cached, rows) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (commit_id, key, time.time(), len(done), len(failed), len(cached),
                 row_counts.usual),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO shards (commit_id, output, path, rows, bytes) VALUES (?, ?, ?, ?, ?)",
                [(commit_id, s.output, s.path, s.rows, s.bytes) for s in shards],
            )
            base, special, fromhex = key << 32, row_counts.special, bytes.fromhex
            try:  # a non-hex id fails here; the table checks each id's length
                # a generator: rows stream into SQLite, no second copy of the commit in memory
                cur = conn.executemany(
                    _UPSERT_DONE,
                    (
                        (base | d.seq, fromhex(d.task_id), d.attempts, d.duration, d.worker,
                         commit_id, special.get(d.task_id), _signed(int(d.task_id[:16], 16)))
                        for d in done
                    ),
                )  # fmt: skip
            except ValueError as exc:
                raise StoreError(f"job {job_id}: a done task's id is not hexadecimal") from exc
            _expect(cur.rowcount if done else 0, len(done), "done", job_id)
            cur = conn.executemany(
                _UPSERT_FAILED,
                [(base | f.seq, _blob(f.task_id), _STATUS_CODES[f.status], f.attempts,
                  f.duration, f.worker) for f in failed],
            )  # fmt: skip
            _expect(cur.rowcount if failed else 0, len(failed), "failed", job_id)
            conn.executemany(
                "INSERT OR REPLACE INTO failures (okey, param_id, replicate, seed, error_type, "
                "message, traceback, stderr_tail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(base | f.seq, f.param_id, f.replicate, seed_to_sql(f.seed), f.error_type,
                  f.message, f.traceback, f.stderr_tail) for f in failed],
            )  # fmt: skip
            cur = conn.executemany(
                _UPSERT_CACHED,
                [(base | seq, _result_key(task_id), _blob(task_id)) for seq, task_id in cached],
            )
            _expect(cur.rowcount if cached else 0, len(cached), "cached", job_id)

    def result_index(self, job_id: str) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
        """What a reader of the job's results needs, from one snapshot.

        Returns ``(keys, shards)``: ``keys`` are the ``(task_id, commit_id)`` of the job's
        done and cached tasks (the commit whose shards hold the rows); ``shards`` are
        ``(output, path)`` of every recorded shard of those commits.
        """
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            rows = conn.execute(
                "SELECT task_id, commit_id FROM outcomes WHERE okey >= ? AND okey < ? "
                "AND status <= 2",
                _span(key),
            ).fetchall()
            commits = json.dumps(sorted({commit for _, commit in rows}))
            shards = conn.execute(
                "SELECT output, path FROM shards "
                "WHERE commit_id IN (SELECT value FROM json_each(?)) ORDER BY commit_id, output",
                (commits,),
            ).fetchall()
        return [(blob.hex(), commit) for blob, commit in rows], shards

    def output_counts(self, job_id: str) -> dict[str, int]:
        """Rows per output over the job's done and cached tasks, from the ledger alone."""
        totals: dict[str, int] = {}
        with self._read() as conn:
            key = self._job_key(conn, job_id)
            span = _span(key)
            usual = conn.execute(
                "SELECT c.rows, n FROM (SELECT commit_id, COUNT(*) AS n FROM outcomes "
                "WHERE okey >= ? AND okey < ? AND status <= 2 AND rows IS NULL "
                "GROUP BY commit_id) AS x JOIN commits AS c ON c.commit_id = x.commit_id",
                span,
            ).fetchall()
            special = conn.execute(
                "SELECT j.key, SUM(j.value) FROM outcomes AS o, json_each(o.rows) AS j "
                "WHERE o.okey >= ? AND o.okey < ? AND o.status <= 2 AND o.rows IS NOT NULL "
                "GROUP BY j.key",
                span,
            ).fetchall()
        for text, n in usual:
            for output, rows in json.loads(text or "{}").items():
                totals[output] = totals.get(output, 0) + rows * n
        for output, rows in special:
            totals[output] = totals.get(output, 0) + int(rows)
        return dict(sorted(totals.items()))

    def forget_shards(self, paths: Iterable[str]) -> int:
        """Forget recorded shards whose file is gone, and the outcomes whose rows they held.

        In one transaction: every done or cached outcome (in any job) of a commit that had
        one of ``paths`` is dropped, so its task is ``pending`` again, with its cache index
        entry; then the shard records of ``paths`` are deleted. The rows still in the commit's
        other shards become invisible (readers keep rows of recorded outcomes only), so every
        such task runs again and appears once. Returns the number of outcomes dropped.

        Raises:
            StoreError: a SQLite error; nothing is changed then.
        """
        wanted = json.dumps(sorted(set(paths)))
        if wanted == "[]":
            return 0
        with self._write() as conn:
            lost = "SELECT commit_id FROM shards WHERE path IN (SELECT value FROM json_each(?))"
            gone = f"SELECT okey FROM outcomes WHERE status <= 2 AND commit_id IN ({lost})"
            conn.execute(f"DELETE FROM results WHERE okey IN ({gone})", (wanted,))
            cur = conn.execute(
                f"DELETE FROM outcomes WHERE status <= 2 AND commit_id IN ({lost})", (wanted,)
            )
            dropped = max(cur.rowcount, 0)
            conn.execute(
                "DELETE FROM shards WHERE path IN (SELECT value FROM json_each(?))", (wanted,)
            )
        return dropped

    def remember_compiled(self, source_key: str, job_id: str) -> None:
        """Record that the study source ``source_key`` compiles to the job ``job_id``.

        ``source_key`` is a digest of everything the compile read (see
        :func:`modelops.engine.source_key`), so a later run of the same source can find its
        job without compiling it again.
        """
        with self._write() as conn:
            key = self._job_key(conn, job_id)
            conn.execute(
                "INSERT OR REPLACE INTO compiled (source_key, job_key) VALUES (?, ?)",
                (source_key, key),
            )

    def compiled_job(self, source_key: str) -> JobRecord | None:
        """The job a study source was compiled to, if this store ran it before."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_key = "
                "(SELECT job_key FROM compiled WHERE source_key = ?)",
                (source_key,),
            ).fetchone()
        return None if row is None else _job_record(row)

    def shard_paths(self) -> set[str]:
        """Relative paths of every recorded shard in the store."""
        with self._read() as conn:
            rows = conn.execute("SELECT path FROM shards").fetchall()
        return {row[0] for row in rows}


_UPSERT_DONE = (
    "INSERT INTO outcomes (okey, task_id, status, attempts, duration, worker, commit_id, rows, "
    "rkey) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?) ON CONFLICT (okey) DO UPDATE SET status = 1, "
    "attempts = attempts + excluded.attempts, duration = excluded.duration, "
    "worker = excluded.worker, commit_id = excluded.commit_id, rows = excluded.rows, "
    "rkey = excluded.rkey WHERE task_id = excluded.task_id"
)
_UPSERT_FAILED = (
    "INSERT INTO outcomes (okey, task_id, status, attempts, duration, worker) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (okey) DO UPDATE SET status = excluded.status, "
    "attempts = attempts + excluded.attempts, duration = excluded.duration, "
    "worker = excluded.worker, commit_id = NULL, rows = NULL WHERE task_id = excluded.task_id"
)
_UPSERT_CACHED = (
    "INSERT INTO outcomes (okey, task_id, status, commit_id, rows) "
    "SELECT ?1, o.task_id, 2, o.commit_id, o.rows FROM results AS r "
    "JOIN outcomes AS o ON o.okey = r.okey WHERE r.rkey = ?2 AND o.task_id = ?3 "
    "ON CONFLICT (okey) DO UPDATE SET status = 2, commit_id = excluded.commit_id, "
    "rows = excluded.rows WHERE task_id = excluded.task_id"
)


def ledger_schema(path: Path) -> int:
    """The ``PRAGMA user_version`` of the ledger file at ``path``, read without writing.

    Raises:
        StoreError: the file cannot be opened or read.
    """
    uri = "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open ledger {path} read-only: {exc}") from exc


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


def _okey(job_key: int, seq: int) -> int:
    """Outcome key: the job in the high 32 bits, the task's position in the low 32."""
    return (job_key << 32) | seq


def _span(job_key: int) -> tuple[int, int]:
    """The outcome keys of one job: ``lo <= okey < hi``."""
    return _okey(job_key, 0), _okey(job_key + 1, 0)


def _blob(task_id: str) -> bytes:
    """A task id as its 32 bytes (half the size of its hex text in rows and indexes)."""
    try:
        blob = bytes.fromhex(task_id)
    except ValueError:
        blob = b""
    if len(blob) != 32:
        raise StoreError(f"task id {task_id[:80]!r} is not 64 hexadecimal digits")
    return blob


def _signed(value: int) -> int:
    """An unsigned 64-bit integer as the signed one with the same 8 bytes."""
    return value - (1 << 64) if value >> 63 else value


def _result_key(task_id: str) -> int:
    """Cache index key: the task id's first 8 bytes as a signed 64-bit integer."""
    return int.from_bytes(_blob(task_id)[:8], "big", signed=True)


def _positions(
    done: Sequence[DoneTask], failed: Sequence[FailedTask], cached: Sequence[CachedTask]
) -> Iterator[int]:
    """Every position a commit names, for the bounds check (cheap: the ends suffice)."""
    for seqs in ([d.seq for d in done], [f.seq for f in failed], [c[0] for c in cached]):
        if seqs:
            yield min(seqs)
            yield max(seqs)


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
            f"commit names {wanted - changed} {kind} task(s) whose position in job {job_id} "
            f"holds another task{extra}"
        )
