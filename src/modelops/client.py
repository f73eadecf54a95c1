"""JobSubmissionClient: submit a SimJob, then wait for it, watch it, cancel it, read it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.api import JobHandle, job_status, open_store
from modelops.bundle import BundleStore
from modelops.engine import RunOptions, RunSummary, run_job
from modelops.services._base import ChunkBackend
from modelops.store import ResultStore
from modelops_contracts import BundleError, SimJob, StoreError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["JobSubmissionClient"]


class JobSubmissionClient:
    """Submits jobs to a simulation service and tracks them in a result store.

    ``submit_simjob`` returns at once with the job id; the job runs in a background thread that
    feeds ``sim_job.tasks`` to the service. The job's bundle must already be in the store, or be
    given as ``bundle`` (a directory whose digest is the job's ``bundle_ref``).

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

        Returns once the job is registered in the store, so :meth:`status` and :meth:`cancel`
        work at once; the tasks run in the background.
        """
        if (
            sim_job.job_id in self._active_jobs
            and self._active_jobs[sim_job.job_id]["thread"].is_alive()
        ):
            raise StoreError(f"job {sim_job.job_id} is already running in this client")
        self._ensure_bundle(sim_job.bundle_ref)
        entry: dict[str, Any] = {"summary": None, "error": None, "metadata": sim_job.metadata}
        started = threading.Event()

        def target() -> None:
            store = ResultStore(self._store.root)  # sqlite connections stay in their thread
            try:
                with store.run_lock():
                    backend = self._service or _default_service()
                    # return from submit once the job is registered and running, so that
                    # status() finds it and a cancel() is not cleared by the run starting
                    entry["summary"] = run_job(
                        sim_job, store, backend, self._options, on_progress=lambda _: started.set()
                    )
            except BaseException as err:
                entry["error"] = err
            finally:
                started.set()
                store.close()

        thread = threading.Thread(target=target, name=f"modelops-{sim_job.job_id}", daemon=True)
        entry["thread"] = thread
        self._active_jobs[sim_job.job_id] = entry
        thread.start()
        started.wait()
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

    def _ensure_bundle(self, bundle_ref: str) -> None:
        bundles = BundleStore(self._store.root)
        if bundles.has(bundle_ref):
            return
        if self._bundle is None:
            raise BundleError(
                f"bundle {bundle_ref} is not in store {self._store.root}",
                hint="pass bundle=DIR to JobSubmissionClient",
            )
        ref = bundles.put(self._bundle)
        if ref != bundle_ref:
            raise BundleError(
                f"the code in {self._bundle} has digest {ref}, not the job's {bundle_ref}"
            )


def _default_service() -> ChunkBackend:
    from modelops.services.local import LocalSimulationService

    return LocalSimulationService()
