"""The driver loop: feed a job's tasks to a backend, commit results, resume after crashes.

The driver owns the ledger while it runs. It skips task_ids already done anywhere in the store,
sends the rest in chunks sized from measured task durations (a fixed number of chunks in flight
per worker, so memory is bounded by the window, never by the job), and commits finished tasks in
batches: one Parquet shard per output, then their status, in one ledger transaction. What to do
when a chunk is lost and how big chunks are is decided by :mod:`modelops.services._policy`.

Each output keeps one schema for the whole job, fixed by its first commit (on resume, read from
the newest shard of the job) and only widened by the rule of :mod:`modelops.runtime.tables`. A
chunk's table that fits is cast to it; the tasks whose rows do not fit fail with
``OutputTypeError`` and the rest of the commit goes ahead, whichever commit a task lands in.
"""

from __future__ import annotations

import platform
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal

import pyarrow as pa

from modelops.bundle import BundleStore
from modelops.engine._types import Progress, RunOptions, RunSummary
from modelops.runtime.spec import ChunkResult, ChunkSpec, ChunkTasks, TaskOutcomes
from modelops.runtime.tables import OutputTypeError, conform, merge_schemas, type_conflict
from modelops.services._base import ChunkBackend
from modelops.services._events import ChunkDone, ChunkEvent, ChunkRaised, TaskTimedOut, WorkerDied
from modelops.services._policy import AttemptTracker, ChunkSizer
from modelops.store import CachedTask, DoneTask, FailedTask, ResultStore
from modelops_contracts import SimJob
from modelops_contracts.job import Spec, TaskBlock
from modelops_contracts.task import bundle_digest

__all__ = ["Driver"]

_BLOCK = 5000  # tasks cache-checked per ledger round trip


class _Tasks:
    """Tasks sharing (entrypoint, outputs, config) as parallel columns, from ``start`` on.

    ``seqs`` are the tasks' positions in the job's task order (their keys in the ledger). The
    driver moves tasks from the job to the workers and back in these, never one object per task.
    """

    __slots__ = ("param_ids", "params", "replicates", "seeds", "seqs", "spec", "start", "task_ids")

    def __init__(
        self,
        spec: Spec,
        seqs: Sequence[int],
        task_ids: list[str],
        param_ids: list[str],
        replicates: list[int],
        seeds: list[int],
        params: list[Any],
    ) -> None:
        self.spec = spec
        self.seqs = seqs
        self.task_ids = task_ids
        self.param_ids = param_ids
        self.replicates = replicates
        self.seeds = seeds
        self.params = params
        self.start = 0

    def __len__(self) -> int:
        return len(self.task_ids) - self.start

    def _columns(self) -> tuple[Sequence[Any], ...]:
        return (self.seqs, self.task_ids, self.param_ids, self.replicates, self.seeds, self.params)

    def take(self, n: int) -> _Tasks:
        """The next ``n`` tasks (this object keeps the rest)."""
        a, b = self.start, self.start + n
        self.start = b
        seqs, *rest = self._columns()
        return _Tasks(self.spec, list(seqs[a:b]), *(column[a:b] for column in rest))  # type: ignore[arg-type]

    def pick(self, positions: Sequence[int]) -> _Tasks:
        """The tasks at ``positions`` (relative to ``start``)."""
        a = self.start
        return _Tasks(
            self.spec, *([column[a + i] for i in positions] for column in self._columns())
        )

    def extend(self, other: _Tasks) -> None:
        """Append ``other``'s tasks (same spec) to these (both taken, so ``start`` is 0)."""
        for mine, theirs in zip(self._columns(), other._columns(), strict=True):
            mine.extend(theirs[other.start :])  # type: ignore[attr-defined]

    @classmethod
    def of_block(cls, block: TaskBlock, start: int, keep: Sequence[int] | None) -> list[_Tasks]:
        """The block's tasks (or those at ``keep``, sorted), one object per run of a spec."""
        runs = [*block.spec_breaks, len(block)]
        out = []
        for k, spec in enumerate(block.specs):
            a, b = runs[k], runs[k + 1]
            whole = cls(
                spec, range(start, start + len(block)), block.task_ids, block.param_ids,
                block.replicates, block.seeds, block.params,
            )  # fmt: skip
            if keep is None and a == 0 and b == len(block):
                out.append(whole)  # the common case: the block's own lists, no copy
                continue
            picked = range(a, b) if keep is None else [i for i in keep if a <= i < b]
            if picked:
                out.append(whole.pick(picked))
        return out


@dataclass
class _Buffer:
    """Finished tasks waiting for the next commit."""

    tables: dict[str, list[pa.Table]] = field(default_factory=dict)
    done: list[DoneTask] = field(default_factory=list)
    failed: list[FailedTask] = field(default_factory=list)
    cached: list[CachedTask] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0  # Arrow size of ``tables``: a commit is due well before memory runs out
    since: float = field(default_factory=time.monotonic)

    def empty(self) -> bool:
        return not (self.done or self.failed or self.cached)


class Driver:
    """State of one run of a job: the window of chunks in flight and the pending commit.

    Built and driven by :class:`~modelops.engine.Execution`, which holds the store's run lock.
    """

    def __init__(
        self,
        job: SimJob,
        store: ResultStore,
        backend: ChunkBackend,
        options: RunOptions,
        on_progress: Callable[[Progress], None] | None,
        *,
        keep_backend: bool = False,
        sizer: ChunkSizer | None = None,
    ) -> None:
        self.job = job
        self.keep_backend = keep_backend  # a session runs more jobs on it: leave it up
        self.store = store
        self.ledger = store.ledger
        self.backend = backend
        self.options = options
        self.on_progress = on_progress
        self.sizer = sizer or ChunkSizer(options.target_chunk_seconds, options.max_chunk)
        self.tracker = AttemptTracker(options.retries, options.task_timeout)
        self.progress = Progress(total=job.task_count())
        self.buffer = _Buffer()
        self.retry: deque[_Tasks] = deque()
        self.in_flight: dict[int, tuple[_Tasks, float]] = {}
        self.packages: dict[str, str] = {}
        self.schemas: dict[str, pa.Schema | None] = {}  # per output, as committed so far
        self.started = time.monotonic()
        self.stop_reason: str | None = None
        self.remaining = 0
        self.started_backend = False
        self.log_path = store.log_path(job.job_id)
        self._ready: deque[_Tasks] = deque()
        self._queued = 0  # tasks in ``_ready``
        self._pulled = 0
        self._resumed = False  # the job was in the ledger before: some tasks may be done
        self._other_results = False  # other jobs have results: cache lookups can hit
        self._last_progress = 0.0
        self._last_cancel_check = 0.0

    # -- setup -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Register the job (refusing a job id that names other content) and mark it running."""
        job, ledger = self.job, self.ledger
        self._resumed = ledger.create_job(
            job.job_id,
            total=job.task_count(),
            spec=self._spec(),
            content_key=job.content_digest(),
        )
        job_file = self.store.ensure_job_dir(job.job_id) / "job.json"
        if not job_file.exists():
            self.store.write_job_file(job.job_id, job.to_json())
        ledger.set_job_state(job.job_id, "running")
        ledger.index_commits()  # those of a run that was killed before it could
        if self.options.use_cache:
            self._other_results = ledger.has_other_results(job.job_id)
        self.remaining = self.progress.total

    def _refill(self) -> bool:
        """Queue the next block of tasks that are not done yet; False at the end.

        Blocks are checked against the ledger one at a time (a range scan of this job's
        outcomes, and a cache lookup only when other jobs have results), so a resumed
        million-task job never holds its done-set in memory.
        """
        start = self._pulled
        block = self.job.task_block(start, start + _BLOCK)
        if not len(block):
            return False
        self._pulled += len(block)
        keep: list[int] | None = None
        if self.options.use_cache:
            job_id = self.job.job_id
            if self._resumed:
                here = self.ledger.finished_positions(job_id, start, self._pulled)
                if here:
                    self.progress.cached += len(here)
                    keep = [i for i in range(len(block)) if start + i not in here]
            if self._other_results:
                ids = block.task_ids
                candidates = range(len(block)) if keep is None else keep
                found = self.ledger.cached_elsewhere(job_id, [ids[i] for i in candidates])
                if found:  # done in another job: recorded as cached in this one
                    hits = [i for i in candidates if ids[i] in found]
                    self.buffer.cached.extend((start + i, ids[i]) for i in hits)
                    self.progress.cached += len(hits)
                    keep = [i for i in candidates if ids[i] not in found]
        for tasks in _Tasks.of_block(block, start, keep):
            self._ready.append(tasks)
            self._queued += len(tasks)
        self.remaining = self.progress.total - self._pulled + self._queued
        return True

    def _spec(self) -> dict[str, Any]:
        from modelops import __version__

        first = self.job.tasks[0]
        return {
            "bundle_ref": self.job.bundle_ref,
            "bundle_digest": bundle_digest(self.job.bundle_ref),
            "entrypoint": first.entrypoint,
            "metadata": self.job.metadata,
            "provenance": {
                "python": platform.python_version(),
                "implementation": sys.implementation.name,
                "platform": platform.platform(),
                "modelops": __version__,
                "host": socket.gethostname(),
                "backend": self.backend.description,
            },
        }

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Run every task not done yet; Ctrl-C or any error keeps what finished, resumable."""
        try:
            self._report(time.monotonic(), force=True)
            self.loop()
        except BaseException:
            self.backend.close(kill=True)
            self.commit()
            self.finish("interrupted")
            raise
        if not self.keep_backend:
            self.backend.close()
        return self.finish()

    def loop(self) -> None:
        while True:
            self._fill()
            if not self.in_flight:
                break
            events = self.backend.poll(0.1)
            for event in events:
                self._handle(event)
                if self.buffer.nbytes >= self.options.commit_bytes:
                    self.commit()  # several large chunks in one poll: never hold them all
            if events:
                self._fill()  # workers get new chunks before the slow work below
            now = time.monotonic()
            if self._should_commit(now):
                self.commit()
            if now - self._last_cancel_check > 1.0:
                self._last_cancel_check = now
                if self.ledger.cancel_requested(self.job.job_id):
                    self.stop("cancelled")
            self._report(now)
        self.commit()
        self._report(time.monotonic(), force=True)

    def _fill(self) -> None:
        """Give every free worker a chunk (one chunk in flight per worker)."""
        while self.stop_reason is None and (
            not self.started_backend or self.backend.free_slots() > 0
        ):
            tasks = self._next_chunk()
            if tasks is None:
                return
            self._submit(tasks)

    def _next_chunk(self) -> _Tasks | None:
        """Up to the sizer's number of queued tasks that share a spec (retries first)."""
        if self.retry:
            return self.retry.popleft()
        size = self.sizer.next_size(self.remaining, self.backend.workers, self.backend.free_slots())
        while self._queued < size and self._refill():
            pass
        ready = self._ready
        if not ready:
            return None
        chunk = ready[0].take(min(size, len(ready[0])))
        while len(ready[0]) == 0:
            ready.popleft()
            if not ready or len(chunk) >= size or ready[0].spec != chunk.spec:
                break
            chunk.extend(ready[0].take(min(size - len(chunk), len(ready[0]))))
        self._queued -= len(chunk)
        self.remaining -= len(chunk)
        return chunk

    def _submit(self, tasks: _Tasks) -> None:
        if not self.started_backend:
            self._start_backend()
        entrypoint, outputs, config = tasks.spec
        spec = ChunkSpec(
            bundle_dir=self.backend.bundle_dir(),
            entrypoint=entrypoint,
            outputs=outputs,
            config=config,
            tasks=ChunkTasks(
                tasks.task_ids,
                tasks.param_ids,
                tasks.replicates,
                tasks.seeds,
                [p if type(p) is dict else dict(p) for p in tasks.params],
            ),
            log_path=str(self.log_path),
            max_output_bytes=self.options.max_task_output_bytes,
        )
        ticket = self.backend.submit_chunk(spec, task_timeout=self.options.task_timeout)
        self.in_flight[ticket] = (tasks, time.monotonic())

    def _start_backend(self) -> None:
        bundles = BundleStore(self.store.root)
        self.backend.start(
            bundle_ref=self.job.bundle_ref,
            bundle_zip=bundles.path(self.job.bundle_ref),
            cache_dir=bundles.cache_dir,
            log_path=self.log_path,
        )
        self.started_backend = True

    # -- events ----------------------------------------------------------------------------

    def _handle(self, event: ChunkEvent) -> None:
        entry = self.in_flight.pop(event.ticket, None)
        if entry is None:  # its chunk was dropped by stop() while handling this poll's events
            return
        tasks, sent = entry
        match event:
            case ChunkDone(value=result):
                self._done(tasks, result, time.monotonic() - sent)
            case ChunkRaised(error=error, worker=worker):
                for i, task_id in enumerate(tasks.task_ids):
                    attempts = self.tracker.finish(task_id)
                    self._fail(
                        tasks,
                        i,
                        "failed",
                        error.type_name,
                        error.message,
                        error.traceback,
                        attempts=attempts,
                        worker=worker,
                    )
            case WorkerDied() | TaskTimedOut():
                self._lost(tasks, event)

    def _done(self, tasks: _Tasks, result: ChunkResult, wall: float) -> None:
        self.packages.update(result.packages)
        outcomes = TaskOutcomes.of(result.outcomes)
        durations, errors, worker = outcomes.durations, outcomes.errors, result.worker
        if len(durations) != len(tasks):
            raise RuntimeError(f"a chunk of {len(tasks)} tasks came back with {len(durations)}")
        done, seqs, ids = self.buffer.done, tasks.seqs, tasks.task_ids
        before = len(done)
        if not errors and not self.tracker.pending():
            # the common case, without a Python-level step per task: all ran once, all ok
            done.extend(map(DoneTask, seqs, ids, durations, repeat(worker), repeat(1)))
        else:
            finish = self.tracker.finish
            for i, task_id in enumerate(ids):
                attempts = finish(task_id)
                error = errors.get(i)
                if error is None:
                    done.append(DoneTask(seqs[i], task_id, durations[i], worker, attempts))
                    continue
                error_type, message, traceback, stderr_tail = error
                self._fail(
                    tasks,
                    i,
                    "failed",
                    error_type or "Error",
                    message or "",
                    traceback,
                    stderr_tail,
                    attempts,
                    durations[i],
                    worker,
                )
        self.progress.succeeded += len(done) - before
        for output, table in result.tables.items():
            self.buffer.tables.setdefault(output, []).append(table)
            self.buffer.rows += table.num_rows
            self.buffer.nbytes += table.nbytes
        self.sizer.observe_chunk(worker, durations, wall)

    def _lost(self, tasks: _Tasks, event: WorkerDied | TaskTimedOut) -> None:
        """A worker died or was killed for a timeout: the policy says who runs again."""
        verdict = self.tracker.lost(tasks.task_ids, event)
        self.retry.extend(tasks.pick(group) for group in verdict.rerun)
        for failure in verdict.failures:
            duration = self.options.task_timeout if failure.status == "timeout" else None
            self._fail(
                tasks,
                failure.index,
                failure.status,
                failure.error_type,
                failure.message,
                attempts=failure.attempts,
                duration=duration,
                worker=event.worker,
            )

    def _fail(
        self,
        tasks: _Tasks,
        i: int,
        status: Literal["failed", "timeout"],
        error_type: str,
        message: str,
        traceback: str | None = None,
        stderr_tail: str | None = None,
        attempts: int = 1,
        duration: float | None = None,
        worker: str | None = None,
    ) -> None:
        self.buffer.failed.append(
            FailedTask(
                tasks.seqs[i], tasks.task_ids[i], tasks.param_ids[i], tasks.replicates[i],
                tasks.seeds[i], status, error_type, message, traceback, stderr_tail, attempts,
                duration, worker,
            )
        )  # fmt: skip
        if status == "timeout":
            self.progress.timed_out += 1
        else:
            self.progress.failed += 1
        if self.options.fail_fast:
            self.stop("failed")

    # -- commits, stop, progress -----------------------------------------------------------

    def _should_commit(self, now: float) -> bool:
        if self.buffer.empty():
            return False
        return (
            self.buffer.rows >= self.options.commit_rows
            or self.buffer.nbytes >= self.options.commit_bytes
            or now - self.buffer.since >= self.options.commit_seconds
        )

    def commit(self) -> None:
        buffer, self.buffer = self.buffer, _Buffer()
        if buffer.empty():
            return
        schemas: dict[str, pa.Schema] = {}
        rejected: dict[str, str] = {}  # task id -> why its rows do not fit
        tables: dict[str, pa.Table] = {}
        for name, parts in buffer.tables.items():
            schemas[name], tables[name] = self._conform(name, parts, rejected)
        if rejected:
            self._reject(buffer, tables, rejected)
            for name in [name for name, table in tables.items() if not table.num_rows]:
                del tables[name], schemas[name]  # no shard: its schema is not committed
        self.store.commit(self.job.job_id, tables, buffer.done, buffer.failed, buffer.cached)
        self.schemas.update(schemas)

    def _conform(
        self, output: str, parts: list[pa.Table], rejected: dict[str, str]
    ) -> tuple[pa.Schema, pa.Table]:
        """One table of ``output`` in the job's schema, and that schema (widened if needed).

        Tasks whose rows do not fit go to ``rejected``. Schemas are compared once per chunk
        table, never per row; the common case (every table already in the schema) is a concat.
        """
        if output not in self.schemas:
            self.schemas[output] = self.store.output_schema(self.job.job_id, output)
        fixed = self.schemas[output]
        schema = parts[0].schema if fixed is None else fixed
        if all(part.schema.equals(schema) for part in parts):
            return schema, _concat(parts)
        kept: list[pa.Table] = []
        for part in parts:
            merged, conflicts = merge_schemas(schema, part.schema)
            if conflicts:
                part = _drop_conflicts(output, part, conflicts, rejected)
                merged, _ = merge_schemas(schema, part.schema)
            schema = merged
            kept.append(part)
        out: list[pa.Table] = []
        for part in kept:
            try:
                out.append(conform(part, schema))
            except OutputTypeError as error:  # values that do not fit the widened type
                import pyarrow.compute as pc  # rare paths: not loaded at start-up

                message = f"output {output!r}: {error}"
                for task_id in pc.unique(part.column("task_id")).to_pylist():
                    rejected.setdefault(task_id, message)
        return schema, _concat(out)

    def _reject(
        self, buffer: _Buffer, tables: dict[str, pa.Table], rejected: dict[str, str]
    ) -> None:
        """Fail the ``rejected`` tasks of this commit and drop their rows from every output."""
        import pyarrow.compute as pc

        keys = _task_keys(tables, rejected)  # before their rows go
        ids = pa.array(list(rejected), pa.string())
        for name, table in tables.items():
            tables[name] = table.filter(pc.invert(pc.is_in(table.column("task_id"), ids)))
        done: list[DoneTask] = []
        for task in buffer.done:
            message = rejected.get(task.task_id)
            if message is None:
                done.append(task)
                continue
            param_id, replicate, seed = keys[task.task_id]
            buffer.failed.append(
                FailedTask(
                    task.seq, task.task_id, param_id, replicate, seed, "failed",
                    "OutputTypeError", message, attempts=task.attempts, duration=task.duration,
                    worker=task.worker,
                )
            )  # fmt: skip
            self.progress.succeeded -= 1
            self.progress.failed += 1
        buffer.done = done
        if self.options.fail_fast:
            self.stop("failed")

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.backend.close(kill=True)
            self.in_flight.clear()

    def _report(self, now: float, *, force: bool = False) -> None:
        if self.on_progress is None or (not force and now - self._last_progress < 0.2):
            return
        self._last_progress = now
        self.progress.elapsed = now - self.started
        self.on_progress(self.progress)

    def finish(self, state: str | None = None) -> RunSummary:
        counts = self.ledger.counts(self.job.job_id)
        finished = counts["done"] + counts["cached"] + counts["failed"] + counts["timeout"]
        if state is None:
            if self.stop_reason == "cancelled":
                state = "cancelled"
            elif counts["failed"] or counts["timeout"]:
                state = "failed"
            elif finished < self.progress.total:
                state = "interrupted"
            else:
                state = "completed"
        self.ledger.index_commits()  # this run's done tasks join the cross-job cache
        provenance = {"packages": dict(sorted(self.packages.items())), **self.backend.provenance()}
        self.ledger.update_job_spec(self.job.job_id, {"provenance": provenance})
        self.ledger.set_job_state(self.job.job_id, state)  # type: ignore[arg-type]
        return RunSummary(
            job_id=self.job.job_id,
            state=state,
            total=self.progress.total,
            succeeded=counts["done"] + counts["cached"],
            failed=counts["failed"],
            timed_out=counts["timeout"],
            cached=self.progress.cached,
            wall_seconds=round(time.monotonic() - self.started, 3),
            store=str(self.store.root),
        )


def _concat(parts: list[pa.Table]) -> pa.Table:
    """Concatenate tables of one schema (see :meth:`Driver._conform`)."""
    if len(parts) == 1:
        return parts[0]
    return pa.concat_tables(parts)


def _task_keys(
    tables: dict[str, pa.Table], wanted: dict[str, str]
) -> dict[str, tuple[str, int, int]]:
    """(param_id, replicate, seed) of the ``wanted`` tasks, from their rows in ``tables``.

    A rejected task has rows in at least one output (that is why it was rejected), and every
    row carries the task's key columns, so the commit need not keep each task's row around.
    """
    keys: dict[str, tuple[str, int, int]] = {}
    for table in tables.values():
        ids = table.column("task_id").to_pylist()
        for i, task_id in enumerate(ids):
            if task_id in wanted and task_id not in keys:
                keys[task_id] = (
                    table.column("param_id")[i].as_py(),
                    table.column("replicate")[i].as_py(),
                    table.column("seed")[i].as_py(),
                )
    return keys


def _drop_conflicts(
    output: str, part: pa.Table, conflicts: dict[str, pa.DataType], rejected: dict[str, str]
) -> pa.Table:
    """``part`` without its conflicting columns, its tasks with values there in ``rejected``.

    Rows of a task that has only nulls in such a column fit (they become nulls of the fixed
    type); the rows of the rejected tasks are dropped later from every output.
    """
    import pyarrow.compute as pc

    task_ids = part.column("task_id")
    for column, fixed in conflicts.items():
        values = part.column(column)
        message = type_conflict(output, column, fixed, values.type)
        for task_id in pc.unique(task_ids.filter(pc.is_valid(values))).to_pylist():
            rejected.setdefault(task_id, message)
    return part.drop_columns(list(conflicts))
