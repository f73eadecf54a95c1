"""The old SimBatch / ParameterSet layout, kept loadable while users migrate.

Nothing in ModelOps builds these; they exist so that old code and old files keep working, each
use emitting one DeprecationWarning that says how to convert. Old job files
(``{"job_id", "batches": [{"batch_id", "tasks": [...]}, ...]}``) and old study files
(``parameter_sets: [{"params": {...}}]``) load through ``SimJob.from_json`` and
``SimulationStudy.from_json``; ``mops migrate OLD.json -o NEW.json`` rewrites them (see
:func:`modelops_contracts.migration.migrate_document`).

This module is a leaf: it turns old documents into plain data (tasks and the job's other fields)
and never imports the job or study modules, which wrap that data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelops_contracts._deprecation import warn_deprecated
from modelops_contracts.errors import ContractViolationError
from modelops_contracts.params import UniqueParameterSet
from modelops_contracts.task import SimTask

__all__ = [
    "LegacyJob",
    "ParameterSet",
    "SimBatch",
    "flatten_batches",
    "read_legacy_job",
    "warn_legacy",
]

MIGRATE_HINT = "convert the file with `mops migrate OLD.json -o NEW.json`"
_DROPPED_JOB_KEYS = {"job_type"}
_KEPT_AS_METADATA = {"priority", "resource_requirements"}


def warn_legacy(what: str, *, stacklevel: int = 2) -> None:
    """Warn that ``what`` uses the pre-2 layout and say how to convert it."""
    warn_deprecated(what, replacement=MIGRATE_HINT, stacklevel=stacklevel + 1)


@dataclass(frozen=True)
class ParameterSet:
    """Deprecated wrapper around a parameter dict; use the dict itself."""

    params: dict[str, Any]

    def __post_init__(self) -> None:
        warn_deprecated(
            "ParameterSet",
            replacement="pass the parameter dict itself (SimulationStudy.parameter_sets)",
            stacklevel=3,
        )


@dataclass(frozen=True)
class SimBatch:
    """Deprecated batch of tasks; a SimJob holds its tasks directly."""

    batch_id: str
    tasks: list[SimTask] = field(default_factory=list)

    def __post_init__(self) -> None:
        warn_deprecated("SimBatch", replacement="use SimJob(job_id, tasks)", stacklevel=3)


def flatten_batches(batches: Iterable[Any], *, stacklevel: int = 2) -> list[SimTask]:
    """Tasks of ``batches`` (SimBatch objects or dicts) in order, with one DeprecationWarning."""
    warn_deprecated(
        "SimJob(batches=...)", replacement="use SimJob(job_id, tasks)", stacklevel=stacklevel + 1
    )
    tasks: list[SimTask] = []
    for i, batch in enumerate(batches):
        items = batch.tasks if isinstance(batch, SimBatch) else _batch_tasks(i, batch)
        tasks.extend(t if isinstance(t, SimTask) else _legacy_task(t) for t in items)
    return tasks


def _batch_tasks(index: int, batch: Any) -> list[Any]:
    if not isinstance(batch, Mapping) or not isinstance(batch.get("tasks"), list):
        raise ContractViolationError(
            f"batches[{index}] must be an object with a 'tasks' list",
            field=f"batches[{index}]",
            value=batch,
        )
    return list(batch["tasks"])


def _legacy_task(data: Any) -> SimTask:
    """Convert an old task dict (params as {param_id, values} or {params}) to a SimTask."""
    if not isinstance(data, Mapping):
        raise ContractViolationError(
            f"a task must be an object, got {type(data).__name__}", field="tasks", value=data
        )
    task = dict(data)
    params = task.get("params")
    if isinstance(params, Mapping) and "values" in params:
        values = params["values"]
        if not isinstance(values, Mapping):
            raise ContractViolationError(
                "params.values must be a mapping", field="params.values", value=values
            )
        task["params"] = UniqueParameterSet(values, params.get("param_id"))
    return SimTask.from_dict(task)


@dataclass(frozen=True, slots=True)
class LegacyJob:
    """What an old ``batches`` job document holds, flattened; ``SimJob`` is built from it.

    Nothing here is validated beyond the tasks themselves: the job checks its own fields.
    """

    job_id: Any
    tasks: list[SimTask]
    metadata: dict[str, Any]
    bundle_ref: Any
    target_spec: Any


def read_legacy_job(data: Mapping[str, Any], *, stacklevel: int = 2) -> LegacyJob:
    """Read an old ``batches`` job document, with one DeprecationWarning.

    Old ``priority`` and ``resource_requirements`` fields are kept under ``metadata["legacy"]``;
    ``job_type`` is dropped.

    Raises:
        ContractViolationError: ``batches`` is not a list of batches, a task is invalid, or
            the document has fields the old layout did not have.
    """
    warn_legacy("the old SimBatch job layout ('batches')", stacklevel=stacklevel + 1)
    batches = data.get("batches")
    if not isinstance(batches, list):
        raise ContractViolationError(
            "'batches' must be a list of batches", field="batches", value=batches
        )
    unknown = set(data) - {"job_id", "batches", "metadata", "bundle_ref", "target_spec"}
    unknown -= _DROPPED_JOB_KEYS | _KEPT_AS_METADATA
    if unknown:
        raise ContractViolationError(
            f"unknown field(s) in old job file: {sorted(unknown)}",
            field=sorted(unknown)[0],
            value=None,
        )
    tasks = [_legacy_task(t) for i, b in enumerate(batches) for t in _batch_tasks(i, b)]
    metadata = dict(data.get("metadata") or {})
    kept = {k: data[k] for k in _KEPT_AS_METADATA if data.get(k) is not None}
    if kept:
        metadata.setdefault("legacy", kept)
    return LegacyJob(
        data.get("job_id"), tasks, metadata, data.get("bundle_ref"), data.get("target_spec")
    )
