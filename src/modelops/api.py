"""The Python API: compile a study against model code, run it, read its status and results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.bundle import compute_digest, linked_bundle
from modelops.runtime.loader import EntrypointCheck
from modelops.store import (
    ResultStore,
    default_store,
    job_status,
    open_existing_store,
    open_store,
)
from modelops_contracts import SimJob, SimulationStudy

if TYPE_CHECKING:
    import polars as pl

    from modelops.engine import Progress, RunOptions, RunSummary
    from modelops.envs import Environment
    from modelops.services._base import ChunkBackend
    from modelops.store import FailureRecord

__all__ = [
    "JobHandle",
    "compile_key",
    "compile_study",
    "default_store",
    "finished_run",
    "job_status",
    "open_existing_store",
    "open_store",
    "remember_compiled",
    "run",
]


def _load_study(study: SimulationStudy | Path | str) -> SimulationStudy:
    return study if isinstance(study, SimulationStudy) else SimulationStudy.load(study)


_IMPORT_TIMEOUT = 60.0  # seconds compile_study gives a model's import and checks by default


def compile_study(
    study: SimulationStudy | Path | str,
    bundle: Path | str = ".",
    *,
    store: Path | str | None = None,
    job_id: str | None = None,
    base: Path | None = None,
    import_timeout: float | None = _IMPORT_TIMEOUT,
    python: Path | str | None = None,
) -> SimJob:
    """Bind a study to the model code in ``bundle`` and check it against the model.

    ``base`` is where relative ``targets`` data paths point from (default: the study file's
    directory, or the current directory for a study object). ``python`` is the interpreter
    of the bundle environment the tasks will run in (the model is checked there).

    Writes nothing. Checks the scenario, every distinct parameter set and the requested outputs
    by importing the model in a child process that sees only the bundle's files, as a worker
    does; a model that exits, hangs past ``import_timeout`` seconds (``None``: no limit) or
    signals while imported fails the check instead of taking this process along.

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
    with linked_bundle(bundle_dir, exclude=[store_root]) as (ref, linked):
        job = study.to_simjob(ref, job_id)
        if job.target_spec is not None:
            # targets' data paths are relative to the study file: remember where that was
            spec = {**job.target_spec, "base": str(base.resolve())}
            job = SimJob._trusted(job.job_id, job.tasks, job.metadata, spec)  # type: ignore[arg-type]
        check = EntrypointCheck(
            str(linked),
            job.tasks[0].entrypoint,
            params=_distinct_params(job),
            outputs=None if study.outputs is None else tuple(study.outputs),
            config=study.config,
        )
        from modelops.services._check import inspect_entrypoint

        inspect_entrypoint(check, import_timeout, python)
    return job


def _distinct_params(job: SimJob) -> tuple[dict[str, Any], ...]:
    """Every distinct parameter set as a plain dict, from the job's columns when it has them."""
    from modelops_contracts.job import GroupedTasks

    if isinstance(job.tasks, GroupedTasks):  # groups are the distinct sets, as plain dicts
        return tuple(p if type(p) is dict else dict(p) for p in job.tasks.columns().params)
    return tuple(dict(p.params) for p in job.parameter_sets().values())


def compile_key(
    study: Path | str,
    bundle: Path | str = ".",
    *,
    store: Path | str | None = None,
    job_id: str | None = None,
    base: Path | None = None,
) -> str | None:
    """The key under which the store remembers what this study file compiled to.

    A digest of the file's bytes, the bundle's digest, ``job_id``, ``base`` (default: the
    file's directory) and the ModelOps version: everything compiling depends on. None when the
    file or the bundle cannot be read (a run then reports why).
    """
    from modelops_contracts.errors import BundleError

    store_root = Path(store) if store is not None else default_store()
    try:
        ref = compute_digest(Path(bundle), exclude=[store_root])
    except BundleError:
        return None
    return _key_of(Path(study), ref, job_id, base)


def _key_of(study: Path, bundle_ref: str, job_id: str | None, base: Path | None) -> str | None:
    """:func:`compile_key` for a bundle whose digest is known; None if the file is unreadable."""
    from modelops.engine import source_key

    try:
        data = study.read_bytes()
        where = (base if base is not None else study.parent).resolve()
    except OSError:
        return None
    return source_key(data, bundle_ref, job_id, str(where))


def finished_run(key: str | None, *, store: Path | str | None = None) -> JobHandle | None:
    """A handle to the complete job that the study file of ``key`` compiled to, if any.

    When that job is complete in the store a re-run has nothing to do: this answers without
    compiling the study, checking the model or starting a worker. None means: run it.
    """
    from modelops.engine import finished_summary
    from modelops.store._store import LEDGER_FILE

    store_root = Path(store) if store is not None else default_store()
    if key is None or not (store_root / LEDGER_FILE).is_file():
        return None
    result_store = open_existing_store(store_root)
    summary = finished_summary(result_store, key)
    if summary is None:
        result_store.close()
        return None
    return JobHandle(summary.job_id, result_store, summary)


def remember_compiled(
    key: str | None,
    job: SimJob,
    study: Path | str,
    *,
    store: Path | str | None = None,
    job_id: str | None = None,
    base: Path | None = None,
) -> None:
    """Record that ``study``, whose :func:`compile_key` was ``key``, compiled to ``job``.

    The key is taken again from the file as it is now and the bundle the job was compiled
    against: if either changed since ``key`` was taken the two differ and nothing is recorded,
    so a key never names a job compiled from other bytes.
    """
    if key is None or _key_of(Path(study), job.bundle_ref, job_id, base) != key:
        return
    with open_store(Path(store) if store is not None else default_store()) as result_store:
        result_store.ledger.remember_compiled(key, job.job_id)


def run(
    study: SimulationStudy | SimJob | Path | str,
    *,
    bundle: Path | str = ".",
    store: Path | str | None = None,
    workers: int | None = None,
    options: RunOptions | None = None,
    job_id: str | None = None,
    backend: ChunkBackend | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    env: str | Environment | None = "auto",
) -> JobHandle:
    """Run a study on this machine (or ``backend``) and return a handle to its results.

    A bundle that declares requirements (see :mod:`modelops.envs`) runs in its own environment,
    built once and cached in the store (``env="auto"``); ``env="current"`` runs it in this
    Python, with a warning if it does not meet them. An :class:`~modelops.envs.Environment`
    (or None, for this Python) is taken as already chosen.

    ``study`` may also be a job from :func:`compile_study` (then ``job_id`` is ignored).
    ``options`` sets retries, the task timeout, fail-fast and caching (:class:`RunOptions`).
    Same study and same code give the same job id, so running again resumes the job and skips
    every task already done in the store. The local pool's workers never re-run the calling
    script, so no ``if __name__ == "__main__":`` guard is needed (a Dask LocalCluster needs one).

    Raises:
        ContractViolationError, BundleError, ModelError: bad input; nothing is written then.
        StoreError: the store is unusable, another run holds it, or ``job_id`` already names
            a different job in it.
    """
    from modelops.engine import execute  # pyarrow: loaded by the first run, not by compiling
    from modelops.services.local import LocalSimulationService

    store_root = Path(store) if store is not None else default_store()
    source = study if isinstance(study, Path | str) else None
    key = None
    if source is not None and (options is None or options.use_cache):
        key = compile_key(source, bundle, store=store_root, job_id=job_id)
        handle = finished_run(key, store=store_root)
        if handle is not None:
            return handle
    from modelops.envs import environment_for

    environment = environment_for(bundle, store_root / "envs", env) if isinstance(env, str) else env
    backend = backend or LocalSimulationService(workers)
    if environment is not None:
        backend.use_environment(environment)
    backend.warm_up()
    python = environment.python if environment is not None else None
    try:
        if isinstance(study, SimJob):
            job = study
        else:
            job = compile_study(study, bundle, store=store_root, job_id=job_id, python=python)
        result_store = open_store(store_root)
    except BaseException:
        backend.close(kill=True)
        raise
    try:
        summary = execute(
            job, result_store, backend, bundle=bundle, options=options, on_progress=on_progress
        )
    except BaseException:
        result_store.close()  # no handle will own it
        raise
    finally:
        backend.close(kill=True)
    if key is not None and source is not None:
        remember_compiled(key, job, source, store=store_root, job_id=job_id)
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
