"""Run tasks on a pool of local worker processes: the embedded default, nothing to start."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from modelops.runtime.spec import ChunkSpec
from modelops.services._base import BackendCapabilities, ChunkBackend
from modelops.services._events import ChunkEvent
from modelops.services._pool import WorkerPool
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
            workers in; they are then spawned from it, and keep running chunks as usual.

    Raises:
        ContractViolationError: ``workers`` is below 1.
    """

    capabilities: ClassVar[BackendCapabilities] = BackendCapabilities(
        enforces_timeouts=True,
        isolates_crashes=True,
        needs_shared_filesystem=True,
        chunks_per_worker=1,
    )

    def __init__(
        self,
        workers: int | None = None,
        *,
        store: Path | str | None = None,
        context: str = "forkserver",
        executable: str | Path | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise ContractViolationError(
                f"workers must be at least 1, got {workers}", field="workers", value=workers
            )
        self.workers = workers or os.cpu_count() or 1
        self._store_root = Path(store) if store is not None else None
        self._context = context
        self._executable = str(executable) if executable is not None else None
        self._environment: Environment | None = None
        self._pool: WorkerPool | None = None
        self._starting: threading.Thread | None = None

    def use_environment(self, environment: Environment) -> None:
        """Spawn the workers from the environment's Python (once started, they stay warm)."""
        if self._environment is not None and self._environment.key == environment.key:
            return  # already chosen (the CLI chose it before compiling, run() sees it again)
        if self._pool is not None or self._starting is not None:
            raise RuntimeError("use_environment() after the workers started")
        self._environment = environment
        self._executable = str(environment.python)

    def provenance(self) -> dict[str, Any]:
        """The bundle environment the workers ran in, with every package's version."""
        env = self._environment
        if env is None:
            return {}
        return {
            "environment": {
                "key": env.key,
                "source": env.record.get("source"),
                "requirements": env.record.get("requirements", []),
                "packages": env.packages,
            }
        }

    def warm_up(self) -> None:
        """Start the workers in the background while the driver prepares the job."""
        if self._pool is None and self._starting is None:
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
        pool = WorkerPool(
            self.workers,
            initializer=init_worker,
            context=self._context,
            preload=PRELOAD,
            executable=self._executable,
        )
        self._pool = pool  # read by other threads only after joining this one

    def start(
        self, *, bundle_ref: str, bundle_zip: Path, cache_dir: Path, log_path: Path | None
    ) -> None:
        """Extract the snapshot into ``cache_dir`` (once) and bring the workers up.

        Raises:
            BundleError: the snapshot is missing, unreadable or not ``bundle_ref``.
        """
        self._extract_bundle(bundle_ref, bundle_zip, cache_dir)
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._pool is None:
            self._start_pool()

    def free_slots(self) -> int:
        return self._pool.idle_workers() if self._pool is not None else 0

    def submit_chunk(self, spec: ChunkSpec, *, task_timeout: float | None) -> int:
        if self._pool is None:
            raise RuntimeError("LocalSimulationService.start() was not called")
        return self._pool.submit(run_in_worker, spec, task_timeout=task_timeout)

    def poll(self, timeout: float) -> list[ChunkEvent]:
        """Events of the chunks that ended within ``timeout`` seconds.

        Raises:
            WorkerStartError: the workers cannot start.
        """
        if self._pool is None:
            return []
        return self._pool.poll(timeout)

    def close(self, *, kill: bool = False) -> None:
        self._drop_port()
        if self._starting is not None:
            # Wait for a boot in progress, even when the pool was never used: a driver that
            # exits while the fork server is still handing a new worker its start-up data
            # leaves that worker printing a traceback on the user's terminal.
            self._starting.join()
            self._starting = None
        if self._pool is not None:
            self._pool.shutdown(kill=kill)
            self._pool = None

    @property
    def description(self) -> str:
        return f"local process pool, {self.workers} worker{'s' if self.workers > 1 else ''}"

    def __enter__(self) -> LocalSimulationService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
