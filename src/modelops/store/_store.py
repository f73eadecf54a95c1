"""ResultStore: one directory holding the ledger, the model bundles and every job's shards.

Durability and exactly-once contract:

- :meth:`ResultStore.commit` first makes the shard files durable (temp file, fsync, rename,
  fsync of the directory), then records them and the tasks' new status in one ledger
  transaction. When it returns, the batch is durable.
- A crash between the two steps leaves shard files that the ledger does not know. Readers
  only open recorded shards, so such files are invisible; :meth:`ResultStore.clean_orphans`
  deletes them. The tasks are still pending and simply run again.
- The ledger keeps one outcome per task of a job, naming the commit whose shards hold the
  task's rows. Readers keep, for each task, only rows tagged with that commit, so a task whose
  rows exist in several shards (re-run after a crash, ``--no-cache``) appears once.
- Recorded shards are never modified, so a reader in another process can scan them while a
  run commits.

Only one process writes shards: :meth:`commit` and :meth:`clean_orphans` run under the run
lock (taken for the call when the caller does not already hold it via :meth:`run_lock`).
Ledger-only writes (``mops cancel``) need no run lock. :meth:`run_in_progress` only queries the
lock, so readers never disturb a run.

Read-only stores: ``ResultStore(root, readonly=True)`` creates and writes nothing (no
directory, no lock file, no ledger upgrade; SQLite is opened read-only), so status, results
and analysis work on a read-only mount. Every writing method of a read-only store raises
``StoreError``.

pyarrow and polars are imported on first use, so commands that only look at the ledger
(``mops status``, ``mops jobs``) start fast.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from modelops._fs import fsync_dir, make_dirs
from modelops.store._fs import TEMP_PREFIX, atomic_write_bytes, check_name
from modelops.store._lock import RunLock, run_lock_held
from modelops.store._records import ShardRecord
from modelops.store.ledger import Ledger
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from contextlib import AbstractContextManager

    import polars as pl
    import pyarrow as pa

    from modelops.store._records import CachedTask, DoneTask, FailedTask

__all__ = ["LEDGER_FILE", "LOCK_FILE", "ResultStore"]

LEDGER_FILE = "ledger.sqlite"
"""The ledger's file name in the store directory; its presence marks a store."""
LOCK_FILE = "run.lock"
"""The run lock's file name in the store directory."""

_FAILED_STATUSES = frozenset({"failed", "timeout"})


class ResultStore:
    """The embedded result store rooted at one directory.

    Opening is cheap (a few directory checks and one SQLite connection) so read-only commands
    can open it freely. Use as a context manager or call :meth:`close`.

    With ``readonly=True`` the store must already exist and nothing is created or written:
    reading methods work (also on a read-only mount), writing methods raise ``StoreError``.

    Raises:
        StoreError: ``root`` is not a directory, cannot be created, or is not writable, or
            the ledger cannot be opened; read-only: ``root`` holds no ledger.
    """

    def __init__(self, root: Path | str, *, readonly: bool = False) -> None:
        self._root = Path(root).expanduser()
        self._readonly = readonly
        if readonly:
            if not (self._root / LEDGER_FILE).is_file():
                raise StoreError(f"no ModelOps store at {self._root}")
        else:
            _prepare_root(self._root)
        self._ledger = Ledger(self._root / LEDGER_FILE, readonly=readonly)
        self._lock = RunLock(self._root / LOCK_FILE)

    # -- layout -------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The store directory."""
        return self._root

    @property
    def readonly(self) -> bool:
        """True if the store was opened read-only."""
        return self._readonly

    @property
    def ledger(self) -> Ledger:
        """The store's ledger (jobs, tasks, commits)."""
        return self._ledger

    @property
    def bundles_dir(self) -> Path:
        """Directory of content-addressed model bundles."""
        return self._root / "bundles"

    def job_dir(self, job_id: str) -> Path:
        """Directory of one job's files (not created here)."""
        return self._root / "jobs" / check_name("job id", job_id)

    def log_path(self, job_id: str) -> Path:
        """The job's log file (nothing is created; a writer calls :meth:`ensure_job_dir`)."""
        return self.job_dir(job_id) / "job.log"

    def ensure_job_dir(self, job_id: str) -> Path:
        """Create the job's directory if needed (durably) and return it.

        A writer calls it before opening files there itself, e.g. :meth:`log_path` for append.

        Raises:
            StoreError: the store is read-only or the directory cannot be created.
        """
        self._check_writable("create a job directory")
        directory = self.job_dir(job_id)
        _create(directory)
        return directory

    def close(self) -> None:
        """Close the ledger connection; a held run lock is released."""
        self._lock.release()
        self._ledger.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the store's exclusive run lock for the block.

        Raises:
            StoreError: another process (its pid is named) or this store object holds it, or
                the store is read-only.
        """
        self._check_writable("take the run lock")
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def run_in_progress(self) -> bool:
        """True while some process (or this store object) holds the run lock.

        A job the ledger says is ``running`` while nobody holds the lock was killed; readers use
        this to report it as interrupted instead. The lock is only queried, never taken, so a
        run starting meanwhile is not disturbed; it works on a read-only store.

        Raises:
            StoreError: the lock file exists but cannot be read.
        """
        return self._lock.held or run_lock_held(self._lock.path)

    def _check_writable(self, action: str) -> None:
        if self._readonly:
            raise StoreError(
                f"cannot {action}: store {self._root} is open read-only",
                hint="open it for writing to change it",
            )

    def _writer(self) -> AbstractContextManager[None]:
        return nullcontext() if self._lock.held else self.run_lock()

    def write_job_file(self, job_id: str, text: str) -> Path:
        """Atomically replace ``jobs/<job_id>/job.json`` with ``text``; returns its path.

        Raises:
            StoreError: the store is read-only or the file cannot be written.
        """
        self._check_writable("write a job file")
        path = self.job_dir(job_id) / "job.json"
        atomic_write_bytes(path, text.encode())
        return path

    def read_job_file(self, job_id: str) -> str:
        """The text of ``jobs/<job_id>/job.json``.

        Raises:
            StoreError: the file does not exist or cannot be read.
        """
        path = self.job_dir(job_id) / "job.json"
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StoreError(f"cannot read job file {path}: {exc.strerror or exc}") from exc

    def commit(
        self,
        job_id: str,
        tables: Mapping[str, pa.Table],
        done: Sequence[DoneTask],
        failed: Sequence[FailedTask],
        cached: Sequence[CachedTask] = (),
    ) -> int | None:
        """Durably store one batch: one shard per output, then the tasks' status.

        ``tables`` hold the rows of the ``done`` tasks only; ``cached`` are ``(position,
        task_id)`` of tasks whose rows another job holds. Returns the commit id, or None when
        the batch is empty.

        Raises:
            StoreError: a table or task list is inconsistent, a task's position is outside the
                job or holds another task, a cached task has no results, the run lock is held
                elsewhere, the store is read-only, or a write fails. Nothing becomes visible.
        """
        self._check_writable("commit results")
        if not (tables or done or failed or cached):
            return None
        check_name("job id", job_id)
        for output in tables:
            check_name("output name", output)
        _check_disjoint(done, failed, cached)
        from modelops.store.shards import task_row_counts

        row_counts = task_row_counts(tables, [d.task_id for d in done])
        with self._writer():
            commit_id = self._ledger.next_commit_id()
            written: list[Path] = []
            try:
                shards = self._write_shards(job_id, tables, commit_id, written)
                self._ledger.record_commit(
                    job_id,
                    commit_id,
                    shards=shards,
                    done=done,
                    row_counts=row_counts,
                    failed=failed,
                    cached=cached,
                )
            except Exception:
                # Not recorded: remove at once (clean_orphans would also do it later).
                for path in written:
                    path.unlink(missing_ok=True)
                raise
        return commit_id

    def _write_shards(
        self, job_id: str, tables: Mapping[str, pa.Table], commit_id: int, written: list[Path]
    ) -> list[ShardRecord]:
        from modelops.store.shards import write_shard

        outputs_dir = self.job_dir(job_id) / "outputs"
        shards = []
        for output in sorted(tables):
            directory = outputs_dir / output
            _create(directory)
            path, size = write_shard(directory, tables[output], commit_id)
            written.append(path)
            relative = path.relative_to(self._root).as_posix()
            shards.append(ShardRecord(output, relative, tables[output].num_rows, size))
        try:
            for path in written:
                fsync_dir(path.parent)
        except OSError as exc:
            raise StoreError(f"cannot sync {outputs_dir}: {exc.strerror or exc}") from exc
        return shards

    def clean_orphans(self) -> list[Path]:
        """Delete unrecorded shards and leftover temporary files; returns what was deleted.

        Also forgets recorded shards whose file was deleted (see :meth:`Ledger.forget_shards`):
        their tasks are pending again, so the next run recomputes them instead of reporting
        them cached. That costs one existence check per recorded shard, once per run.

        Takes the run lock for the call unless this store already holds it.

        Raises:
            StoreError: the run lock is held elsewhere or the store is read-only.
        """
        self._check_writable("clean orphans")
        removed: list[Path] = []
        jobs = self._root / "jobs"
        with self._writer():
            recorded = self._ledger.shard_paths()
            lost = {path for path in recorded if not (self._root / path).is_file()}
            self._ledger.forget_shards(lost)
            recorded -= lost
            for path in _candidates(jobs):
                name = path.name
                orphan = name.startswith("part-") and name.endswith(".parquet")
                if name.startswith(TEMP_PREFIX) or (
                    orphan and path.relative_to(self._root).as_posix() not in recorded
                ):
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    # -- reading ------------------------------------------------------------------------------

    def outputs(self, job_id: str) -> list[str]:
        """Names of the outputs the job has results for, sorted."""
        return list(self._ledger.output_counts(job_id))

    def output_counts(self, job_id: str) -> dict[str, int]:
        """Rows per output over the job's done and cached tasks (from the ledger, no I/O)."""
        return self._ledger.output_counts(job_id)

    def scan_results(self, job_id: str, output: str) -> pl.LazyFrame:
        """Lazy frame of one output's rows for every done or cached task of the job.

        Rows come from the recorded shards the ledger points at, including other jobs' shards
        for tasks this job took from the cache; each task's rows appear once.

        Raises:
            StoreError: unknown job, or the job has no results for ``output`` (the message
                lists the outputs it has).
        """
        from modelops.store.shards import scan_shards

        keys, shards = self._ledger.result_index(job_id)
        paths = [self._root / path for name, path in shards if name == output]
        if not paths:
            available = sorted({name for name, _ in shards})
            listed = ", ".join(available) if available else "none yet"
            raise StoreError(f"job {job_id} has no output {output!r} (available: {listed})")
        return scan_shards(paths, keys)

    def output_schema(self, job_id: str, output: str) -> pa.Schema | None:
        """Arrow schema of the job's newest recorded, readable shard of ``output``, if any.

        A writer keeps one schema per output for the whole job (each commit's shard has the
        schema so far, only ever widened), so the newest shard tells a resumed run the types
        the earlier commits fixed. Only the Parquet footer is read; schema metadata is dropped.
        """
        import pyarrow.parquet as pq

        from modelops.store.shards import shard_commit

        prefix = f"jobs/{check_name('job id', job_id)}/outputs/{output}/"
        paths = [self._root / p for p in self._ledger.shard_paths() if p.startswith(prefix)]
        for path in sorted(paths, key=shard_commit, reverse=True):
            try:
                return pq.read_schema(path).remove_metadata()
            except (OSError, ValueError):  # deleted or damaged: an older shard still tells
                continue
        return None

    def read_results(self, job_id: str, output: str) -> pl.DataFrame:
        """Eager version of :meth:`scan_results`."""
        import polars as pl

        try:
            return self.scan_results(job_id, output).collect()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise StoreError(f"cannot read results of job {job_id}, {output!r}: {exc}") from exc

    def export_results(
        self,
        job_id: str,
        output: str,
        dest: Path | str,
        *,
        fmt: Literal["parquet", "csv"] | None = None,
    ) -> int:
        """Write one output's results to ``dest`` (format from ``fmt`` or the suffix).

        Returns the number of rows written.

        Raises:
            StoreError: as :meth:`scan_results`, an unknown format, or the file cannot be written.
        """
        import polars as pl

        dest = Path(dest)
        kind = fmt or dest.suffix.lstrip(".").lower()
        if kind not in ("parquet", "csv"):
            raise StoreError(f"cannot export to {dest}", hint="use a .parquet or .csv file")
        frame = self.read_results(job_id, output)
        try:
            if kind == "parquet":
                frame.write_parquet(dest, compression="zstd")
            else:
                frame.write_csv(dest)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise StoreError(f"cannot write {dest}: {exc}") from exc
        return frame.height


def _prepare_root(root: Path) -> None:
    """Make sure ``root`` and its fixed sub-directories exist and ``root`` is writable."""
    if root.exists() and not root.is_dir():
        raise StoreError(f"store path {root} exists and is not a directory")
    _create(root)
    _create(root / "bundles")
    _create(root / "jobs")
    if not os.access(root, os.W_OK | os.X_OK):
        raise StoreError(f"store directory {root} is not writable")


def _create(directory: Path) -> None:
    try:
        make_dirs(directory)
    except OSError as exc:
        raise StoreError(
            f"cannot create store directory {directory}: {exc.strerror or exc}"
        ) from exc


def _candidates(jobs: Path) -> Iterator[Path]:
    """Files the store may have left behind: in job directories and output directories."""
    for job in _subdirs(jobs):
        yield from (p for p in _files(job) if p.name.startswith(TEMP_PREFIX))
        for output in _subdirs(job / "outputs"):
            yield from _files(output)


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def _files(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_file()]
    except FileNotFoundError:
        return []


def _check_disjoint(
    done: Sequence[DoneTask], failed: Sequence[FailedTask], cached: Sequence[CachedTask]
) -> None:
    for f in failed:
        if f.status not in _FAILED_STATUSES:
            raise StoreError(f"failed task {f.task_id} has status {f.status!r}, not failed/timeout")
    seqs = [d.seq for d in done] + [f.seq for f in failed] + [seq for seq, _ in cached]
    if len(set(seqs)) != len(seqs):
        raise StoreError("a task is listed more than once among done, failed and cached")
