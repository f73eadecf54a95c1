"""Store-reading helpers shared by the API, the analysis layer and the CLI.

They sit below both ``modelops.api`` and ``modelops.analysis`` so that the rules for finding a
store, resolving a job and telling its state live in one place: in particular, a job the ledger
says is ``running`` while no run holds the store's run lock was killed, and reads as
``interrupted``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelops.store._store import LEDGER_FILE, ResultStore
from modelops.store.ledger import SCHEMA_VERSION, ledger_schema
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    from modelops.store._records import JobRecord
    from modelops_contracts import SimJob

__all__ = [
    "DEFAULT_STORE",
    "JobLike",
    "default_store",
    "existing_store_root",
    "job_state",
    "job_status",
    "open_existing_store",
    "open_store",
    "read_job",
    "resolve_job",
]

DEFAULT_STORE = ".modelops"
"""The store directory used when neither an argument nor ``$MODELOPS_STORE`` names one."""


class JobLike(Protocol):
    """Anything that names a job in a store, such as the API's job handle."""

    @property
    def store(self) -> ResultStore:
        """The store holding the job."""

    @property
    def job_id(self) -> str:
        """The job's id."""


def default_store() -> Path:
    """``$MODELOPS_STORE`` or ``./.modelops``."""
    return Path(os.environ.get("MODELOPS_STORE") or DEFAULT_STORE)


def open_store(store: ResultStore | Path | str | None = None) -> ResultStore:
    """Open for writing (creating if needed) the store at ``store`` or the default location.

    A :class:`ResultStore` is returned as it is.

    Raises:
        StoreError: the directory cannot be created or is not writable, or the ledger cannot
            be opened.
    """
    if isinstance(store, ResultStore):
        return store
    return ResultStore(Path(store) if store is not None else default_store())


def existing_store_root(store: Path | str | None = None) -> Path:
    """The directory of a store that must already exist (default: the default store).

    Raises:
        StoreError: there is no ledger at the location.
    """
    root = Path(store).expanduser() if store is not None else default_store()
    if not (root / LEDGER_FILE).is_file():
        raise StoreError(
            f"no ModelOps store at {root}",
            hint="run a study first or point at the directory that holds ledger.sqlite",
        )
    return root


def open_existing_store(
    store: ResultStore | Path | str | None = None, *, readonly: bool = True
) -> ResultStore:
    """Open a store that must already exist, read-only by default (status, results, analysis).

    A :class:`ResultStore` is returned as it is. A read-only store creates and writes nothing,
    so it also works on a read-only mount; only a ledger of an older schema in a writable
    directory is first upgraded in place (on a read-only mount it is refused, never misread).

    Raises:
        StoreError: there is no ledger at the location, or it cannot be opened.
    """
    if isinstance(store, ResultStore):
        return store
    root = existing_store_root(store)
    if readonly and os.access(root, os.W_OK) and ledger_schema(root / LEDGER_FILE) < SCHEMA_VERSION:
        ResultStore(root).close()  # an old store is upgraded in place on its first open
    return ResultStore(root, readonly=readonly)


def job_state(store: ResultStore, record: JobRecord) -> str:
    """The job's state as a reader should report it.

    The ledger's state, except that ``running`` while no run holds the store's run lock means
    the run was killed before it could record its end: ``interrupted``. Probing the lock never
    disturbs a run that is starting.
    """
    if record.state == "running" and not store.run_in_progress():
        return "interrupted"
    return record.state


def job_status(store: ResultStore, job_id: str) -> dict[str, Any]:
    """Everything ``mops status`` shows about a job, as a JSON-compatible dict.

    Raises:
        StoreError: the job is not in the store.
    """
    record = store.ledger.get_job(job_id)
    if record is None:
        raise _unknown_job(store, job_id)
    counts = store.ledger.counts(job_id)

    def stamp(value: Any) -> str | None:
        return value.isoformat(timespec="seconds") if value is not None else None

    return {
        "job_id": job_id,
        "state": job_state(store, record),
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


def read_job(store: ResultStore, job_id: str) -> SimJob:
    """The job as the store's job file describes it (any encoding the contracts read).

    Raises:
        StoreError: the job file is missing or unreadable.
        ContractViolationError: the job file is not a valid job.
    """
    from modelops_contracts import SimJob  # on use: status and listing need no job model

    return SimJob.from_json(store.read_job_file(job_id))


def resolve_job(
    job: JobLike | str, store: ResultStore | Path | str | None = None
) -> tuple[ResultStore, str]:
    """The store and job id for a job handle, or for a job id plus a store (or its path).

    A job id with no store opens the default store read-only.

    Raises:
        StoreError: there is no store at the location, or the job is not in it.
    """
    if not isinstance(job, str):
        return job.store, job.job_id
    result_store = open_existing_store(store)
    if result_store.ledger.get_job(job) is None:
        error = _unknown_job(result_store, job)
        if result_store is not store:
            result_store.close()
        raise error
    return result_store, job


def _unknown_job(store: ResultStore, job_id: str) -> StoreError:
    known = [j.job_id for j in store.ledger.list_jobs()]
    return StoreError(
        f"no job {job_id!r} in store {store.root}",
        hint=f"known jobs: {', '.join(known[-5:])}" if known else "the store has no jobs",
    )
