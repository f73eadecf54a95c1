"""JobSubmissionClient: submit a SimJob, then wait for it, watch it, cancel it, read it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.api import JobHandle, job_status, open_store
from modelops.engine import Execution, RunOptions, RunSummary
from modelops.services._base import ChunkBackend
from modelops.store import ResultStore
from modelops_contracts import SimJob, StoreError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["JobSubmissionClient"]


class JobSubmissionClient:
    """Submits jobs to a simulation service and tracks them in a result store.

    ``submit_simjob`` returns once the job is registered, with its id; the job runs in a
    background thread that feeds ``sim_job.tasks`` to the service. The job's bundle must already
    be in the store, or be given as ``bundle`` (a directory whose digest is the job's
    ``bundle_ref``; it is snapshotted into the store on every submission).

    Args:
        store: store root (default ``$MODELOPS_STORE`` or ``./.modelops``).
        service: the backend to run on (default: a local process pool).
        bundle: model code directory to snapshot into the store when it is missing there.
        options: retries, timeouts and caching, as for ``mops run``.
    """

    def __init__(
        self,
        store: Path | str | None = None,
        *,
        service: ChunkBackend | None = None,
        bundle: Path | str | None = None,
        options: RunOptions | None = None,
    ) -> None:
        self._store = open_store(store)
        self._service = service
        self._bundle = Path(bundle) if bundle is not None else None
        self._options = options or RunOptions()
        self._active_jobs: dict[str, dict[str, Any]] = {}

    def submit_simjob(self, sim_job: SimJob) -> str:
        """Start running ``sim_job`` (skipping tasks already done in the store); return its id.

        Everything that can fail on bad input happens before this returns: the store's run
        lock is taken, the bundle is stored and checked, and the job is registered as running,
        so :meth:`status` and :meth:`cancel` work at once. The tasks run in the background.

        Raises:
            StoreError: the job is already running in this client, another run holds the
                store, or the job id names a different job in the store.
            BundleError: the job's bundle is neither in the store nor given as ``bundle``, or
                the given code is not the job's.
        """
        if (
            sim_job.job_id in self._active_jobs
            and self._active_jobs[sim_job.job_id]["thread"].is_alive()
        ):
            raise StoreError(f"job {sim_job.job_id} is already running in this client")
        store = ResultStore(self._store.root)  # the run's own connection, closed by the run
        try:
            execution = Execution.begin(
                sim_job,
                store,
                self._service or _default_service(),
                bundle=self._bundle,
                options=self._options,
            )
        except BaseException:
            store.close()
            raise
        entry: dict[str, Any] = {"summary": None, "error": None, "metadata": sim_job.metadata}

        def target() -> None:
            try:
                entry["summary"] = execution.run()
            except BaseException as err:
                entry["error"] = err
            finally:
                store.close()

        thread = threading.Thread(target=target, name=f"modelops-{sim_job.job_id}", daemon=True)
        entry["thread"] = thread
        self._active_jobs[sim_job.job_id] = entry
        thread.start()
        return sim_job.job_id

    def wait(self, job_id: str, timeout: float | None = None) -> RunSummary:
        """Block until the job's run ends; re-raises what stopped it, if anything."""
        entry = self._entry(job_id)
        entry["thread"].join(timeout)
        if entry["thread"].is_alive():
            raise TimeoutError(f"job {job_id} still running after {timeout} s")
        if entry["error"] is not None:
            raise entry["error"]
        summary: RunSummary = entry["summary"]
        return summary

    def status(self, job_id: str) -> dict[str, Any]:
        """State and counts of a job (any job in the store, not only this client's)."""
        with ResultStore(self._store.root) as store:  # closed: polling must not leak handles
            return job_status(store, job_id)

    def cancel(self, job_id: str) -> None:
        """Ask the job's run to stop; tasks already done stay done (re-submit to resume)."""
        with ResultStore(self._store.root) as store:
            store.ledger.request_cancel(job_id)

    def results(self, job_id: str, output: str) -> pl.DataFrame:
        """All rows of one output of a job."""
        with ResultStore(self._store.root) as store:
            return JobHandle(job_id, store).results(output)

    def close(self) -> None:
        """Release the client's store handle (running jobs keep their own)."""
        self._store.close()

    def __enter__(self) -> JobSubmissionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _entry(self, job_id: str) -> dict[str, Any]:
        if job_id not in self._active_jobs:
            raise StoreError(f"job {job_id} was not submitted by this client")
        return self._active_jobs[job_id]


def _default_service() -> ChunkBackend:
    from modelops.services.local import LocalSimulationService

    return LocalSimulationService()
