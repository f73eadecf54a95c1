"""The one orchestrator: every way of running a job (``modelops.run``, the client, the tests)
goes through :class:`Execution`, so the lock, bundle and registration rules live in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from modelops.bundle import BundleStore
from modelops.engine._driver import Driver
from modelops.engine._types import Progress, RunOptions, RunSummary
from modelops.services._base import ChunkBackend
from modelops.services._policy import ChunkSizer
from modelops.store import ResultStore
from modelops_contracts import BundleError, SimJob

__all__ = ["Execution", "Session", "execute"]


class Execution:
    """One run of a job against a store, from taking the run lock to giving it back.

    :meth:`begin` does everything that can fail on bad input before any task runs: it takes
    the store's run lock, snapshots the bundle directory into the store (the store itself never
    counts) and checks its digest against the job's, cleans up after a crashed run, and
    registers the job as running. :meth:`run` then runs the tasks; :meth:`close` releases the
    lock. Use :func:`execute` to do all three.
    """

    def __init__(self, driver: Driver, stack: ExitStack) -> None:
        self._driver = driver
        self._stack = stack

    @classmethod
    def begin(
        cls,
        job: SimJob,
        store: ResultStore,
        backend: ChunkBackend,
        *,
        bundle: Path | str | None = None,
        options: RunOptions | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> Execution:
        """Lock the store, store and check the bundle, register the job.

        Raises:
            StoreError: another run holds the store, or the job id names other content.
            BundleError: the bundle directory's code is not the job's, or the store lacks the
                job's bundle and no directory was given.
        """
        stack = ExitStack()
        stack.enter_context(store.run_lock())
        try:
            _ensure_bundle(job, store, bundle)
            driver = Driver(job, store, backend, options or RunOptions(), on_progress)
            store.clean_orphans()
            driver.prepare()
        except BaseException:
            stack.close()
            raise
        return cls(driver, stack)

    @property
    def job_id(self) -> str:
        """The job being run."""
        return self._driver.job.job_id

    def run(self) -> RunSummary:
        """Run the job's remaining tasks; the lock is released whatever happens."""
        try:
            return self._driver.run()
        finally:
            self.close()

    def close(self) -> None:
        """Release the run lock (idempotent)."""
        self._stack.close()


def execute(
    job: SimJob,
    store: ResultStore,
    backend: ChunkBackend,
    *,
    bundle: Path | str | None = None,
    options: RunOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunSummary:
    """Run every task of ``job`` not already done in ``store``; return how the run ended.

    ``bundle`` is the model code directory (snapshotted into the store and checked against the
    job's digest); without it the store must already hold the job's bundle. Ctrl-C stops the
    workers, commits what finished, marks the job interrupted and re-raises KeyboardInterrupt.
    ``on_progress`` is called once the job is registered and running (before any task is
    sent), then periodically, and once at the end.

    Raises:
        StoreError, BundleError: as :meth:`Execution.begin`.
    """
    execution = Execution.begin(
        job, store, backend, bundle=bundle, options=options, on_progress=on_progress
    )
    return execution.run()


class Session:
    """Several jobs run one after another on one backend under one hold of the run lock.

    What a search needs: each of its rounds is a job, and paying the lock, the bundle snapshot,
    the orphan sweep and the workers' start-up once per round would cost more than the round's
    simulations. The backend stays up between jobs and is closed when the session ends. Use it
    as a context manager; :meth:`run` is :func:`execute` for one job inside it.

    Raises:
        StoreError: on entry, another run holds the store.
    """

    def __init__(
        self, store: ResultStore, backend: ChunkBackend, *, bundle: Path | str | None = None
    ) -> None:
        self.store = store
        self.backend = backend
        self._bundle = bundle
        self._stack: ExitStack | None = None
        self._bundles: set[str] = set()  # snapshots stored and checked in this session
        self._sizer: ChunkSizer | None = None  # what one job learnt of task times, the next uses

    def __enter__(self) -> Session:
        stack = ExitStack()
        stack.enter_context(self.store.run_lock())
        try:
            self.store.clean_orphans()
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.backend.close(kill=exc[0] is not None)
        finally:
            if self._stack is not None:
                self._stack.close()
                self._stack = None

    def run(
        self,
        job: SimJob,
        *,
        options: RunOptions | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> RunSummary:
        """Run every task of ``job`` not already done in the store, leaving the backend up.

        Raises:
            StoreError, BundleError: as :meth:`Execution.begin`.
            RuntimeError: the session was not entered.
        """
        if self._stack is None:
            raise RuntimeError("Session.run() outside its with-block")
        if job.bundle_ref not in self._bundles:
            _ensure_bundle(job, self.store, self._bundle)
            self._bundles.add(job.bundle_ref)
        options = options or RunOptions()
        if self._sizer is None:
            self._sizer = ChunkSizer(
                options.target_chunk_seconds, options.max_chunk, share_tail=True
            )
        driver = Driver(
            job, self.store, self.backend, options, on_progress, keep_backend=True,
            sizer=self._sizer,
        )  # fmt: skip
        driver.prepare()
        return driver.run()


def _ensure_bundle(job: SimJob, store: ResultStore, bundle: Path | str | None) -> None:
    bundles = BundleStore(store.root)
    if bundle is None:
        if not bundles.has(job.bundle_ref):
            raise BundleError(
                f"bundle {job.bundle_ref} is not in store {store.root}",
                hint="give the model code directory the job was compiled from",
            )
        return
    ref = bundles.put(Path(bundle), exclude=[store.root])
    if ref != job.bundle_ref:
        raise BundleError(
            f"the model code in {bundle} has digest {ref}, not the job's {job.bundle_ref}",
            hint="it changed after the job was compiled: compile the job again",
        )
