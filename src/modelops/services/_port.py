"""The ``SimulationService`` port (submit, submit_batch, gather) built on chunk backends.

Notebook users and :class:`~modelops.client.JobSubmissionClient`-style code get one
:class:`~modelops_contracts.SimReturn` per task, tables as Arrow IPC bytes; no store involved.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import pyarrow as pa

from modelops.bundle import BundleStore
from modelops.runtime.spec import ChunkResult, ChunkSpec, ChunkTask
from modelops.services._base import ChunkBackend, ChunkEvent
from modelops_contracts import BundleError, ErrorInfo, SimReturn, SimTask

__all__ = ["ServicePort"]

# tasks, their futures, and the bundle snapshot they run from (fixed when submitted)
_Batch = tuple[list[SimTask], list["Future[SimReturn]"], str]


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


class ServicePort(ChunkBackend):
    """Implements the port on top of the abstract chunk methods of a backend.

    A task whose worker dies or times out gets an error ``SimReturn`` (``retryable`` for a death);
    the other tasks of its chunk run again. Tasks are grouped into one chunk per worker.
    """

    _port_queue: deque[_Batch]
    _port_tickets: dict[int, _Batch]
    _store_root: Path | None

    def bundle_ready(self, bundle_ref: str) -> bool:
        """True when the workers already import from the snapshot ``bundle_ref``."""
        return False

    def prepare_bundle(self, bundle_ref: str) -> None:
        """Make ``bundle_ref`` importable on the workers (port use, outside the engine).

        Raises:
            BundleError: the service has no store, or the store lacks the snapshot.
        """
        if self.bundle_ready(bundle_ref):
            return
        if self._store_root is None:
            raise BundleError(
                f"{type(self).__name__} needs a store to find bundle snapshots",
                hint="pass store=... or run the job with modelops.run()",
            )
        zip_path = BundleStore(self._store_root).path(bundle_ref)
        self.start(bundle_ref=bundle_ref, bundle_zip=zip_path, log_path=None)

    def submit(self, task: SimTask) -> Future[SimReturn]:
        """Schedule one task."""
        return self.submit_batch([task])[0]

    def submit_batch(self, tasks: Sequence[SimTask]) -> list[Future[SimReturn]]:
        """Schedule tasks (sharing one bundle); collect them with :meth:`gather`."""
        futures: list[Future[SimReturn]] = [Future() for _ in tasks]
        if not tasks:
            return futures
        self.prepare_bundle(tasks[0].bundle_ref)
        bundle_dir = self.bundle_dir()
        if not hasattr(self, "_port_queue"):
            self._port_queue = deque()
            self._port_tickets = {}
        size = max(1, -(-len(tasks) // self.workers))
        for start in range(0, len(tasks), size):
            self._port_queue.append(
                (list(tasks[start : start + size]), futures[start : start + size], bundle_dir)
            )
        self._pump(0.0)
        return futures

    def gather(self, futures: Sequence[Future[SimReturn]]) -> list[SimReturn]:
        """Wait for ``futures``; results in the same order."""
        while not all(f.done() for f in futures):
            self._pump(0.1)
        return [f.result() for f in futures]

    def _pump(self, timeout: float) -> None:
        while self._port_queue and self.free_slots() > 0:
            batch = self._port_queue.popleft()
            tasks, _, bundle_dir = batch
            spec = ChunkSpec(
                bundle_dir=bundle_dir,
                entrypoint=tasks[0].entrypoint,
                outputs=tasks[0].outputs,
                config=tasks[0].config,
                tasks=[
                    ChunkTask(i, t.task_id, t.param_id, 0, t.seed, t.params.to_dict())
                    for i, t in enumerate(tasks)
                ],
            )
            ticket = self.submit_chunk(spec, task_timeout=None)
            self._port_tickets[ticket] = batch
        for event in self.poll(timeout):
            self._settle(event)

    def _settle(self, event: ChunkEvent) -> None:
        tasks, futures, bundle_dir = self._port_tickets.pop(event.ticket)
        if event.kind == "done":
            for future, ret in zip(futures, _returns(tasks, event.value), strict=True):
                future.set_result(ret)
            return
        if event.kind == "error":
            error_type, message, tb = event.value
            for task, future in zip(tasks, futures, strict=True):
                info = ErrorInfo(error_type=error_type, message=message, traceback=tb)
                future.set_result(SimReturn(task_id=task.task_id, error=info))
            return
        pos = event.position if event.position is not None else 0
        died = event.kind == "died"
        info = ErrorInfo(
            error_type="WorkerDied" if died else "TaskTimeout",
            message=f"worker {event.worker} {'died' if died else 'was killed for a timeout'}",
            retryable=died,
        )
        futures[pos].set_result(SimReturn(task_id=tasks[pos].task_id, error=info))
        rest = [i for i in range(len(tasks)) if i != pos]
        if rest:
            self._port_queue.append(
                ([tasks[i] for i in rest], [futures[i] for i in rest], bundle_dir)
            )
