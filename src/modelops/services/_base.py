"""The execution boundary: a backend runs chunks of tasks and reports how each chunk ended."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from modelops.runtime.spec import ChunkSpec
from modelops.services._events import ChunkEvent
from modelops_contracts.errors import BundleError

if TYPE_CHECKING:
    from modelops.envs import Environment
    from modelops.services._port import TaskPort
    from modelops_contracts import SimReturn, SimTask

__all__ = ["BackendCapabilities", "ChunkBackend"]


@dataclass(frozen=True, slots=True)
class BackendCapabilities:
    """What a backend can do, declared once so that callers never guess from its type.

    Attributes:
        enforces_timeouts: a task running past ``task_timeout`` is killed and reported as
            :class:`TaskTimedOut`; when false the limit is ignored and the task runs to its end.
        isolates_crashes: a task that kills its process (``os._exit``, a segfault, the OOM
            killer) ends its chunk with :class:`WorkerDied`; when false it kills the caller.
        needs_shared_filesystem: workers read the chunk's ``bundle_dir`` and ``log_path`` from
            the driver's filesystem; when false the backend ships the bundle and carries the
            log back itself.
        chunks_per_worker: how many chunks :meth:`ChunkBackend.free_slots` lets each worker
            hold at once (one running, the rest queued behind it).
        runs_environments: chunks can run in a bundle's own environment
            (:meth:`ChunkBackend.use_environment`); when false they run in the workers' Python.
    """

    enforces_timeouts: bool
    isolates_crashes: bool
    needs_shared_filesystem: bool
    chunks_per_worker: int = 1
    runs_environments: bool = False


class ChunkBackend(ABC):
    """Runs chunks of tasks on workers; what the engine and the task-level port drive.

    Contract:
      * :attr:`capabilities` says what the backend enforces (timeouts, crash isolation) and
        needs (a shared filesystem); behaviour outside it is undefined, never silently emulated.
      * At most :meth:`free_slots` chunks may be submitted before the next :meth:`poll`;
        ``free_slots`` never exceeds ``capabilities.chunks_per_worker * workers``, which bounds
        the caller's memory by the window, never by the job.
      * Every submitted chunk produces exactly one :data:`ChunkEvent`, in completion order:
        :class:`ChunkDone` (its ``value`` a :class:`~modelops.runtime.ChunkResult`, outcomes in
        task order), :class:`ChunkRaised`, :class:`WorkerDied` or :class:`TaskTimedOut`, the
        last two with the ``position`` of the running task when the worker could tell.
      * A worker that dies or times out is replaced; the backend never retries by itself (the
        caller decides, per task, from the event's ``position``).
      * Workers import the model from :meth:`bundle_dir`, an immutable snapshot of the bundle;
        :meth:`start` may be called again for another bundle, and chunks already submitted keep
        the snapshot they were built with.
      * After :meth:`close`, :meth:`start` brings the backend up again.

    :meth:`submit`, :meth:`submit_batch` and :meth:`gather` make every backend a
    ``SimulationService``; they delegate to a :class:`~modelops.services.TaskPort` created on
    first use, which finds bundle snapshots in the store the backend was given.
    """

    capabilities: ClassVar[BackendCapabilities]
    workers: int
    _store_root: Path | None = None
    _port: TaskPort | None = None
    _bundle_dir: str | None = None

    @abstractmethod
    def start(
        self, *, bundle_ref: str, bundle_zip: Path, cache_dir: Path, log_path: Path | None
    ) -> None:
        """Bring workers up and make the bundle snapshot available to them.

        ``bundle_zip`` is the stored snapshot; ``cache_dir`` is where snapshots are extracted
        for workers that share the driver's filesystem; ``log_path`` is the job log, if any.
        """

    def warm_up(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Begin starting workers early (optional); :meth:`start` must still be called."""

    def bundle_dir(self) -> str:
        """Directory the workers import the last started bundle from (valid on the workers).

        The default is the snapshot :meth:`_extract_bundle` made, for backends whose workers
        share this machine's filesystem.

        Raises:
            RuntimeError: :meth:`start` was not called.
        """
        if self._bundle_dir is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        return self._bundle_dir

    def _extract_bundle(self, bundle_ref: str, bundle_zip: Path, cache_dir: Path) -> None:
        """Extract the snapshot into ``cache_dir`` (once per digest) for :meth:`bundle_dir`."""
        from modelops.bundle import materialize

        self._bundle_dir = str(materialize(bundle_ref, bundle_zip, cache_dir))

    @abstractmethod
    def free_slots(self) -> int:
        """How many chunks can be submitted right now."""

    @abstractmethod
    def submit_chunk(self, spec: ChunkSpec, *, task_timeout: float | None) -> int:
        """Start a chunk; returns its ticket."""

    @abstractmethod
    def poll(self, timeout: float) -> list[ChunkEvent]:
        """Events that arrived within ``timeout`` seconds (possibly none)."""

    @abstractmethod
    def close(self, *, kill: bool = False) -> None:
        """Stop the workers; ``kill`` stops them at once without waiting for running tasks."""

    @property
    def dashboard_link(self) -> str | None:
        """A URL to watch the workers, when the backend has one."""
        return None

    @property
    def description(self) -> str:
        """One line saying where tasks run (shown by ``mops run``)."""
        return f"{type(self).__name__} with {self.workers} workers"

    def use_environment(self, environment: Environment | None) -> None:
        """Run the chunks submitted from now on in a bundle environment (:mod:`modelops.envs`);
        None is this Python, where every backend runs.

        Raises:
            ContractViolationError: this backend cannot run tasks in a bundle environment.
        """
        from modelops_contracts.errors import ContractViolationError

        if environment is None:
            return
        raise ContractViolationError(
            f"{type(self).__name__} cannot run a bundle's own environment; run it in the "
            "current environment (env current)",
            field="env",
        )

    def status_line(self) -> str | None:
        """A short line on the workers' state worth showing beside the progress (a batch
        cluster's pending and running jobs), or None."""
        return None

    def provenance(self) -> dict[str, Any]:
        """What the job's provenance should keep of where its tasks ran, beyond
        :attr:`description` (a batch cluster's job ids, say); asked when the run ends."""
        return {}

    # -- SimulationService, through a task-level port ----------------------------------------

    def submit(self, task: SimTask) -> Future[SimReturn]:
        """Schedule one task (see :meth:`TaskPort.submit`).

        Raises:
            BundleError: the backend was created without a store, or the store lacks the
                task's bundle snapshot.
        """
        return self._task_port().submit(task)

    def submit_batch(self, tasks: Sequence[SimTask]) -> list[Future[SimReturn]]:
        """Schedule tasks (see :meth:`TaskPort.submit_batch`).

        Raises:
            BundleError: as :meth:`submit`.
        """
        if not tasks:
            return []
        return self._task_port().submit_batch(tasks)

    def gather(self, futures: Sequence[Future[SimReturn]]) -> list[SimReturn]:
        """Wait for ``futures`` from :meth:`submit_batch`; results in the same order."""
        if not futures:
            return []
        return self._task_port().gather(futures)

    def _drop_port(self) -> None:
        """For :meth:`close`: the port's unfinished tasks get an error result, not a hang."""
        port, self._port = self._port, None
        if port is not None:
            port.cancel(f"{type(self).__name__} was closed before the task finished")

    def _task_port(self) -> TaskPort:
        if self._port is None:
            if self._store_root is None:
                raise BundleError(
                    f"{type(self).__name__} needs a store to find bundle snapshots",
                    hint="create it with store=..., or run the job with modelops.run()",
                )
            from modelops.services._port import TaskPort

            self._port = TaskPort(self, store=self._store_root)
        return self._port
