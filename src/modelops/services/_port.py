"""The task-level port: ``SimulationService`` (submit, submit_batch, gather) over a chunk backend.

Notebook users and :class:`~modelops.client.JobSubmissionClient`-style code get one
:class:`~modelops_contracts.SimReturn` per task, tables as Arrow IPC bytes; no ledger involved.
The port holds a backend rather than being one, and decides as the engine does: chunks are
sized by :class:`~modelops.services._policy.ChunkSizer` and a lost chunk is blamed by
:class:`~modelops.services._policy.AttemptTracker`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import pyarrow as pa

from modelops.bundle import BundleStore
from modelops.runtime.spec import ChunkResult, ChunkSpec, ChunkTask
from modelops.services._events import ChunkDone, ChunkEvent, ChunkRaised, TaskTimedOut, WorkerDied
from modelops.services._policy import AttemptTracker, ChunkSizer
from modelops_contracts import ContractViolationError, ErrorInfo, SimReturn, SimTask

if TYPE_CHECKING:
    from modelops.envs import Environment
    from modelops.services._base import ChunkBackend

__all__ = ["TaskPort"]

_Item: TypeAlias = "tuple[SimTask, Future[SimReturn]]"
_Key: TypeAlias = "tuple[str, str, tuple[str, ...] | None, str | None]"


@dataclass(frozen=True, slots=True)
class _Head:
    """What every task of a chunk shares: the snapshot it runs from, in which environment, and
    what it runs."""

    bundle_dir: str
    environment: Environment | None
    entrypoint: str
    outputs: tuple[str, ...] | None
    config: dict[str, Any] | None


@dataclass(slots=True)
class _Chunk:
    head: _Head
    items: list[_Item]


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _rows_by_task(table: pa.Table) -> dict[str, pa.Table]:
    """Each task's rows of one output table, found in one pass over the task ids.

    Copied (``take``), not sliced: a slice would serialize differently depending on where the
    task sat in its chunk, and the same task must give the same bytes wherever it ran.
    """
    table = table.combine_chunks()  # one chunk per column: take() then costs only its rows
    positions: dict[str, list[int]] = {}
    for row, task_id in enumerate(table.column("task_id").to_pylist()):
        positions.setdefault(task_id, []).append(row)
    return {task_id: table.take(rows) for task_id, rows in positions.items()}


def _returns(tasks: list[SimTask], result: ChunkResult) -> list[SimReturn]:
    # split each output once: filtering the whole table per task is quadratic in the chunk size
    by_output = {name: _rows_by_task(table) for name, table in result.tables.items()}
    out = []
    for task, outcome in zip(tasks, result.outcomes, strict=True):
        if not outcome.ok:
            error = ErrorInfo(
                error_type=outcome.error_type or "Error",
                message=outcome.message or "",
                traceback=outcome.traceback,
                stderr_tail=outcome.stderr_tail,
            )
            out.append(SimReturn(task_id=task.task_id, error=error))
            continue
        tables = {
            name: _ipc(by_output[name].get(task.task_id, table.slice(0, 0)))
            for name, table in result.tables.items()
        }
        out.append(SimReturn(task_id=task.task_id, outputs=tables))
    return out


def _key(task: SimTask) -> _Key:
    """Tasks with equal keys can share a chunk (config compared by its canonical JSON)."""
    config = None if task.config is None else json.dumps(task.config, sort_keys=True)
    return task.bundle_ref, task.entrypoint, task.outputs, config


class TaskPort:
    """A ``SimulationService`` built on a :class:`~modelops.services.ChunkBackend`.

    A batch is grouped by (bundle, entrypoint, outputs, config) before it is cut into chunks,
    so tasks of several scenarios, configs or bundles each run as themselves; the backend is
    started for each bundle the batch uses, from the snapshots in ``store``; a bundle that
    declares requirements runs in its own environment (built once under ``<store>/envs``) on a
    backend that runs environments, in the workers' Python otherwise. A task whose worker
    died runs again (alone) up to ``retries`` times, then gets a ``WorkerDied`` error result
    (``retryable``); a death the worker cannot place charges every task of its chunk. A task past
    ``task_timeout`` gets a ``TaskTimeout`` error result, where the backend enforces timeouts.
    The other tasks of a lost chunk run again, uncharged.

    Not thread-safe: submit and gather from one thread. Work progresses only inside
    :meth:`submit_batch` and :meth:`gather`.

    Args:
        backend: the chunk backend to run on (the port does not close it).
        store: store root holding the bundle snapshots (``<store>/bundles``); they are extracted
            under ``<store>/cache/bundles`` for backends that share the filesystem.
        retries: how many times a task whose worker died may run again.
        task_timeout: per-task limit in seconds (``None``: no limit).
        target_chunk_seconds: about how long a chunk should run.
        max_chunk: the largest chunk, in tasks.
    """

    def __init__(
        self,
        backend: ChunkBackend,
        *,
        store: Path | str,
        retries: int = 2,
        task_timeout: float | None = None,
        target_chunk_seconds: float = 0.5,
        max_chunk: int = 5000,
    ) -> None:
        root = Path(store)
        self.backend = backend
        self.task_timeout = task_timeout
        self._bundles = BundleStore(root)
        self._tracker = AttemptTracker(retries, task_timeout)
        self._sizer = ChunkSizer(target_chunk_seconds, max_chunk)
        self._groups: deque[tuple[_Head, deque[_Item]]] = deque()
        self._waiting = 0  # tasks in self._groups
        self._retry: deque[_Chunk] = deque()
        self._in_flight: dict[int, tuple[_Chunk, float]] = {}
        self._by_bundle: dict[str, Environment | None] = {}  # bundle ref -> its environment

    def submit(self, task: SimTask) -> Future[SimReturn]:
        """Schedule one task.

        Raises:
            BundleError: the store lacks the task's bundle snapshot.
        """
        return self.submit_batch([task])[0]

    def submit_batch(self, tasks: Sequence[SimTask]) -> list[Future[SimReturn]]:
        """Schedule tasks (any mix of bundles, scenarios, outputs and configs).

        Raises:
            BundleError: the store lacks a bundle snapshot the tasks use, or it cannot be read,
                or its environment cannot be built (uv's message).
        """
        futures: list[Future[SimReturn]] = [Future() for _ in tasks]
        if not tasks:
            return futures
        # every bundle is started before any task is queued: a missing one queues nothing
        dirs = {ref: self._start(ref) for ref in dict.fromkeys(t.bundle_ref for t in tasks)}
        groups: dict[_Key, deque[_Item]] = {}
        for task, future in zip(tasks, futures, strict=True):
            key = _key(task)
            items = groups.get(key)
            if items is None:
                items = groups[key] = deque()
                head = _Head(
                    dirs[task.bundle_ref],
                    self._by_bundle[task.bundle_ref],
                    task.entrypoint,
                    task.outputs,
                    task.config,
                )
                self._groups.append((head, items))
            items.append((task, future))
        self._waiting += len(tasks)
        self._pump(0.0)
        return futures

    def gather(self, futures: Sequence[Future[SimReturn]]) -> list[SimReturn]:
        """Wait for ``futures``; results in the same order.

        Raises:
            ContractViolationError: some of ``futures`` can never finish here (they were not
                submitted through this port).
            ClusterError: a Dask backend lost its scheduler.
        """
        pending = [f for f in futures if not f.done()]
        while pending:
            if not (self._in_flight or self._groups or self._retry):
                raise ContractViolationError(
                    f"{len(pending)} of the futures were not submitted through this port",
                    field="futures",
                )
            self._pump(0.1)
            pending = [f for f in pending if not f.done()]
        return [f.result() for f in futures]

    def cancel(self, reason: str) -> None:
        """Give every unfinished task an error result (``Cancelled``, retryable) and forget it."""
        chunks = [chunk for chunk, _ in self._in_flight.values()]
        chunks += self._retry
        chunks += [_Chunk(head, list(items)) for head, items in self._groups]
        self._in_flight.clear()
        self._retry.clear()
        self._groups.clear()
        self._waiting = 0
        info = ErrorInfo(error_type="Cancelled", message=reason, retryable=True)
        for chunk in chunks:
            for task, future in chunk.items:
                future.set_result(SimReturn(task_id=task.task_id, error=info))

    # -- internals ------------------------------------------------------------------------

    def _start(self, bundle_ref: str) -> str:
        """Make the snapshot importable on the workers; returns the directory chunks name."""
        from modelops.bundle import materialize
        from modelops.envs import environment_for

        backend = self.backend
        zip_path = self._bundles.path(bundle_ref)
        cache = self._bundles.cache_dir
        if bundle_ref not in self._by_bundle:  # resolved once: a new pin is a new bundle
            mode = "auto" if backend.capabilities.runs_environments else "current"
            bundle = materialize(bundle_ref, zip_path, cache)
            envs = self._bundles.directory / "envs"
            self._by_bundle[bundle_ref] = environment_for(bundle, envs, mode)
        environment = self._by_bundle[bundle_ref]
        backend.use_environment(environment)
        backend.start(bundle_ref=bundle_ref, bundle_zip=zip_path, cache_dir=cache, log_path=None)
        return backend.bundle_dir()

    def _pump(self, timeout: float) -> None:
        backend = self.backend
        while backend.free_slots() > 0:
            chunk = self._next_chunk()
            if chunk is None:
                break
            self._send(chunk)
        for event in backend.poll(timeout):
            self._settle(event)

    def _next_chunk(self) -> _Chunk | None:
        if self._retry:
            return self._retry.popleft()
        if not self._groups:
            return None
        head, items = self._groups[0]
        size = min(len(items), self._sizer.next_size(self._waiting, self.backend.workers))
        chunk = _Chunk(head, [items.popleft() for _ in range(size)])
        if not items:
            self._groups.popleft()
        self._waiting -= size
        return chunk

    def _send(self, chunk: _Chunk) -> None:
        head = chunk.head
        spec = ChunkSpec(
            bundle_dir=head.bundle_dir,
            entrypoint=head.entrypoint,
            outputs=head.outputs,
            config=head.config,
            tasks=[
                ChunkTask(i, t.task_id, t.param_id, 0, t.seed, t.params.to_dict())
                for i, (t, _) in enumerate(chunk.items)
            ],
        )
        self.backend.use_environment(head.environment)
        ticket = self.backend.submit_chunk(spec, task_timeout=self.task_timeout)
        self._in_flight[ticket] = (chunk, time.monotonic())

    def _settle(self, event: ChunkEvent) -> None:
        entry = self._in_flight.pop(event.ticket, None)
        if entry is None:  # cancelled meanwhile
            return
        chunk, sent = entry
        match event:
            case ChunkDone(value=result):
                self._done(chunk, result, time.monotonic() - sent)
            case ChunkRaised(error=error):
                info = ErrorInfo(
                    error_type=error.type_name, message=error.message, traceback=error.traceback
                )
                for task, future in chunk.items:
                    self._tracker.finish(task.task_id)
                    future.set_result(SimReturn(task_id=task.task_id, error=info))
            case WorkerDied() | TaskTimedOut():
                self._lost(chunk, event)

    def _done(self, chunk: _Chunk, result: ChunkResult, wall: float) -> None:
        tasks = [task for task, _ in chunk.items]
        for (task, future), ret in zip(chunk.items, _returns(tasks, result), strict=True):
            self._tracker.finish(task.task_id)
            future.set_result(ret)
        self._sizer.observe_chunk(result.worker, [o.duration for o in result.outcomes], wall)

    def _lost(self, chunk: _Chunk, event: WorkerDied | TaskTimedOut) -> None:
        verdict = self._tracker.lost([task.task_id for task, _ in chunk.items], event)
        for positions in verdict.rerun:
            self._retry.append(_Chunk(chunk.head, [chunk.items[i] for i in positions]))
        for failure in verdict.failures:
            task, future = chunk.items[failure.index]
            info = ErrorInfo(
                error_type=failure.error_type,
                message=failure.message,
                retryable=failure.status == "failed",
            )
            future.set_result(SimReturn(task_id=task.task_id, error=info))
