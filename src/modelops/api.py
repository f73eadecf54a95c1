"""The Python API: compile a study against model code, run it, read its status and results."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.bundle import BundleStore, compute_digest
from modelops.engine import Progress, RunOptions, RunSummary, run_job
from modelops.runtime.loader import resolve_entrypoint
from modelops.services._base import ChunkBackend
from modelops.store import ResultStore
from modelops_contracts import BundleError, SimJob, SimulationStudy, StoreError

if TYPE_CHECKING:
    import polars as pl

    from modelops.store import FailureRecord

__all__ = ["JobHandle", "compile_study", "default_store", "job_status", "open_store", "run"]

DEFAULT_STORE = ".modelops"


def default_store() -> Path:
    """``$MODELOPS_STORE`` or ``./.modelops``."""
    return Path(os.environ.get("MODELOPS_STORE") or DEFAULT_STORE)


def open_store(store: ResultStore | Path | str | None = None) -> ResultStore:
    """Open (creating if needed) the store at ``store`` or the default location."""
    if isinstance(store, ResultStore):
        return store
    return ResultStore(Path(store) if store is not None else default_store())


def open_existing_store(store: Path | str | None = None) -> ResultStore:
    """Open a store that must already exist (for status and results commands)."""
    root = Path(store) if store is not None else default_store()
    if not (root / "ledger.sqlite").is_file():
        raise StoreError(
            f"no ModelOps store at {root}", hint="run a study first or pass --store DIR"
        )
    return ResultStore(root)


def _load_study(study: SimulationStudy | Path | str) -> SimulationStudy:
    return study if isinstance(study, SimulationStudy) else SimulationStudy.load(study)


def compile_study(
    study: SimulationStudy | Path | str,
    bundle: Path | str = ".",
    *,
    store: Path | str | None = None,
    job_id: str | None = None,
    base: Path | None = None,
) -> SimJob:
    """Bind a study to the model code in ``bundle`` and check it against the model.

    ``base`` is where relative ``targets`` data paths point from (default: the study file's
    directory, or the current directory for a study object).

    Writes nothing. Checks the scenario, every distinct parameter set and the requested outputs
    by importing the model in this process.

    Raises:
        ContractViolationError: the study is invalid.
        BundleError: the bundle directory is missing or unreadable.
        ModelError: the model cannot be imported or does not fit the study.
    """
    if base is None:
        base = Path(study).parent if isinstance(study, Path | str) else Path()
    study = _load_study(study)
    bundle_dir = Path(bundle)
    store_root = Path(store) if store is not None else default_store()
    job = study.to_simjob(compute_digest(bundle_dir, exclude=[store_root]), job_id)
    if job.target_spec is not None:
        # targets' data paths are relative to the study file: remember where that was
        spec = {**job.target_spec, "base": str(base.resolve())}
        job = SimJob._trusted(job.job_id, job.tasks, job.metadata, spec)  # type: ignore[arg-type]
    resolve_entrypoint(
        bundle_dir,
        job.tasks[0].entrypoint,
        params=_distinct_params(job),
        outputs=study.outputs,
        config=study.config,
    )
    return job


def _distinct_params(job: SimJob) -> Iterable[Mapping[str, Any]]:
    groups = getattr(job.tasks, "groups", None)
    if groups is not None:
        return (params.params for params, _ in groups)
    return ({**p} for p in {t.param_id: t.params for t in job.tasks}.values())


def run(
    study: SimulationStudy | SimJob | Path | str,
    *,
    bundle: Path | str = ".",
    store: Path | str | None = None,
    workers: int | None = None,
    retries: int = 2,
    task_timeout: float | None = None,
    fail_fast: bool = False,
    use_cache: bool = True,
    job_id: str | None = None,
    backend: ChunkBackend | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> JobHandle:
    """Run a study on this machine (or ``backend``) and return a handle to its results.

    ``study`` may also be a job from :func:`compile_study` (then ``job_id`` is ignored).
    Same study and same code give the same job id, so running again resumes the job and skips
    every task already done in the store. The local pool's workers never re-run the calling
    script, so no ``if __name__ == "__main__":`` guard is needed (a Dask LocalCluster needs one).

    Raises:
        ContractViolationError, BundleError, ModelError: bad input; nothing is written then.
        StoreError: the store is unusable or another run holds it.
    """
    from modelops.services.local import LocalSimulationService

    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if task_timeout is not None and task_timeout <= 0:
        raise ValueError(f"task_timeout must be positive, got {task_timeout}")
    store_root = Path(store) if store is not None else default_store()
    backend = backend or LocalSimulationService(workers)
    backend.warm_up()
    try:
        if isinstance(study, SimJob):
            job = study
        else:
            job = compile_study(study, bundle, store=store_root, job_id=job_id)
        result_store = open_store(store_root)
    except BaseException:
        backend.close(kill=True)
        raise
    options = RunOptions(
        retries=retries, task_timeout=task_timeout, fail_fast=fail_fast, use_cache=use_cache
    )
    try:
        with result_store.run_lock():
            ref = BundleStore(result_store.root).put(Path(bundle), exclude=[store_root])
            if ref != job.bundle_ref:
                raise BundleError(
                    f"the model code in {bundle} changed after the job was compiled",
                    hint="run the same command again",
                )
            summary = run_job(job, result_store, backend, options, on_progress=on_progress)
    except BaseException:
        result_store.close()  # no handle will own it
        raise
    finally:
        backend.close(kill=True)
    return JobHandle(job.job_id, result_store, summary)


@dataclass
class JobHandle:
    """A job in a store: its status, outputs, failures and results."""

    job_id: str
    store: ResultStore
    summary: RunSummary | None = None

    def status(self) -> dict[str, Any]:
        """State, task counts per status, outputs and provenance."""
        return job_status(self.store, self.job_id)

    def outputs(self) -> dict[str, int]:
        """Output names and their row counts."""
        return self.store.output_counts(self.job_id)

    def results(self, output: str) -> pl.DataFrame:
        """All rows of ``output`` (with task_id, param_id, replicate, seed and parameters)."""
        return self.store.read_results(self.job_id, output)

    def failures(self) -> list[FailureRecord]:
        """Tasks that failed or timed out, with their errors."""
        return self.store.ledger.failures(self.job_id)


def job_status(store: ResultStore, job_id: str) -> dict[str, Any]:
    """Everything ``mops status`` shows about a job, as a JSON-compatible dict.

    Raises:
        StoreError: the job is not in the store.
    """
    record = store.ledger.get_job(job_id)
    if record is None:
        known = [j.job_id for j in store.ledger.list_jobs()]
        raise StoreError(
            f"no job {job_id!r} in store {store.root}",
            hint=f"known jobs: {', '.join(known[-5:])}" if known else "the store has no jobs",
        )
    counts = store.ledger.counts(job_id)
    # tasks are registered block by block as a run reaches them: unregistered ones are pending
    counts["pending"] = record.total - sum(v for k, v in counts.items() if k != "pending")

    def stamp(value: Any) -> str | None:
        return value.isoformat(timespec="seconds") if value is not None else None

    state = record.state
    if state == "running" and not store.run_in_progress():
        state = "interrupted"  # its run was killed before it could say so
    return {
        "job_id": job_id,
        "state": state,
        "total": record.total,
        "counts": counts,
        "created_at": stamp(record.created_at),
        "started_at": stamp(record.started_at),
        "finished_at": stamp(record.finished_at),
        "outputs": store.output_counts(job_id),
        "store": str(store.root),
        "log": str(store.log_path(job_id)),
        **{k: v for k, v in record.spec.items() if k != "metadata"},
        "metadata": record.spec.get("metadata", {}),
    }
