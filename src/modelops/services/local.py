"""Run tasks on a pool of local worker processes: the embedded default, nothing to start."""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from modelops.runtime.spec import ChunkSpec
from modelops.services._base import BackendCapabilities, ChunkBackend
from modelops.services._events import ChunkEvent
from modelops.services._pool import WorkerPool, poll_pools
from modelops.services._worker import PRELOAD, init_worker, run_in_worker
from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    from modelops.envs import Environment

__all__ = ["LocalSimulationService"]


class LocalSimulationService(ChunkBackend):
    """A process pool on this machine: the engine's default backend and a ``SimulationService``.

    Workers fork from a server that has already imported the runtime, so they start in
    milliseconds; each imports the model once from the bundle snapshot and keeps it. A worker
    that dies or runs past the task timeout is killed and replaced; one chunk runs per worker at
    a time, so memory is bounded by ``workers`` chunks.

    Args:
        workers: number of worker processes (default: the CPU count).
        store: store root where :meth:`submit_batch` finds bundle snapshots (the engine passes
            the snapshot itself through :meth:`start`).
        context: multiprocessing start method for the workers.
        executable: the Python of a bundle environment (:mod:`modelops.envs`) to run the
            workers in; they then fork from a server running it, and run chunks as usual.
        environments: how many pools of warm workers to keep, one per Python environment
            (:meth:`use_environment`): switching back to an environment whose pool is kept
            imports nothing again. Beyond it, the least recently used idle pool is stopped.

    Raises:
        ContractViolationError: ``workers`` or ``environments`` is below 1.
    """

    capabilities: ClassVar[BackendCapabilities] = BackendCapabilities(
        enforces_timeouts=True,
        isolates_crashes=True,
        needs_shared_filesystem=True,
        chunks_per_worker=1,
        runs_environments=True,
    )

    def __init__(
        self,
        workers: int | None = None,
        *,
        store: Path | str | None = None,
        context: str = "forkserver",
        executable: str | Path | None = None,
        environments: int = 2,
    ) -> None:
        for field, value in (("workers", workers), ("environments", environments)):
            if value is not None and value < 1:
                raise ContractViolationError(
                    f"{field} must be at least 1, got {value}", field=field, value=value
                )
        self.workers = workers or os.cpu_count() or 1
        self._store_root = Path(store) if store is not None else None
        self._context = context
        self._executable = str(executable) if executable is not None else None
        self._environment: Environment | None = None
        self._limit = environments
        self._pools: OrderedDict[str | None, WorkerPool] = OrderedDict()  # least recent first
        self._tickets = itertools.count(1)  # shared: a ticket names its chunk in every pool
        self._started = False
        self._starting: threading.Thread | None = None

    def use_environment(self, environment: Environment | None) -> None:
        """Run the chunks submitted from now on in ``environment`` (None: this Python).

        Its workers fork from a server running the environment's Python and stay warm while
        other environments run, up to ``environments`` pools.
        """
        self._join_start()
        self._environment = environment
        self._executable = str(environment.python) if environment is not None else None
        if self._executable in self._pools:
            self._pools.move_to_end(self._executable)

    def provenance(self) -> dict[str, Any]:
        """The bundle environment the last chunks ran in, with every package's version."""
        env = self._environment
        return {} if env is None else {"environment": env.provenance()}

    def warm_up(self) -> None:
        """Start the workers in the background while the driver prepares the job."""
        if self._executable not in self._pools and self._starting is None:
            thread = threading.Thread(target=self._start_pool, daemon=True)
            # A Ctrl-C inside start() would leave a thread that close() can neither join nor
            # forget: it is held back until the thread runs and is recorded.
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                thread.start()
                self._starting = thread
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _start_pool(self) -> None:
        key = self._executable
        if key in self._pools:
            return
        pool = WorkerPool(
            self.workers,
            initializer=init_worker,
            context=self._context,
            preload=PRELOAD,
            executable=key,
            tickets=self._tickets,
        )
        self._pools[key] = pool  # read by other threads only after joining this one
        idle = [k for k, p in self._pools.items() if k != key and not p.in_flight()]
        for old in idle[: max(0, len(self._pools) - self._limit)]:
            self._pools.pop(old).shutdown()

    def _join_start(self) -> None:
        if self._starting is not None:
            self._starting.join()
            self._starting = None

    def _pool(self) -> WorkerPool:
        """The pool of the chosen environment, started now if it is not running."""
        pool = self._pools.get(self._executable)
        if pool is None:
            self._start_pool()
            pool = self._pools[self._executable]
        return pool

    def start(
        self, *, bundle_ref: str, bundle_zip: Path, cache_dir: Path, log_path: Path | None
    ) -> None:
        """Extract the snapshot into ``cache_dir`` (once) and bring the workers up.

        Raises:
            BundleError: the snapshot is missing, unreadable or not ``bundle_ref``.
        """
        self._extract_bundle(bundle_ref, bundle_zip, cache_dir)
        self._join_start()
        self._pool()
        self._started = True

    def free_slots(self) -> int:
        """Idle workers, counted over every environment: ``workers`` chunks run at once."""
        self._join_start()
        if not self._started:
            return 0
        return max(0, self.workers - sum(p.in_flight() for p in self._pools.values()))

    def submit_chunk(self, spec: ChunkSpec, *, task_timeout: float | None) -> int:
        if not self._started:
            raise RuntimeError("LocalSimulationService.start() was not called")
        return self._pool().submit(run_in_worker, spec, task_timeout=task_timeout)

    def poll(self, timeout: float) -> list[ChunkEvent]:
        """Events of the chunks that ended within ``timeout`` seconds.

        Raises:
            WorkerStartError: the workers cannot start.
        """
        self._join_start()
        return poll_pools(list(self._pools.values()), timeout)

    def close(self, *, kill: bool = False) -> None:
        self._drop_port()
        # Wait for a boot in progress, even when the pool was never used: a driver that exits
        # while the fork server is still handing a new worker its start-up data leaves that
        # worker printing a traceback on the user's terminal.
        self._join_start()
        self._started = False
        while self._pools:
            self._pools.popitem(last=False)[1].shutdown(kill=kill)

    @property
    def description(self) -> str:
        return f"local process pool, {self.workers} worker{'s' if self.workers > 1 else ''}"

    def __enter__(self) -> LocalSimulationService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
