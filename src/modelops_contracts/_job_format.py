"""The job file format, apart from the object model that :mod:`modelops_contracts.job` holds.

A job document has one of two encodings: ``"tasks"`` (every task written out) or
``"template"`` + ``"groups"`` (what the tasks share, then one record per parameter set with its
seeds; compact for big jobs). This module turns a document into validated plain parts
(:class:`JobParts`) and parts back into a document; :class:`~modelops_contracts.job.SimJob` wraps
the parts. It never imports :mod:`modelops_contracts.job`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from modelops_contracts._base import translate_validation_error
from modelops_contracts.errors import ContractViolationError
from modelops_contracts.params import Scalar, UniqueParameterSet
from modelops_contracts.task import SimTask

__all__ = [
    "FORMAT_VERSION",
    "GROUPED_THRESHOLD",
    "Encoding",
    "JobParts",
    "TaskColumns",
    "TaskGroups",
    "decode_job",
    "dump_job",
    "dump_job_json",
    "encode_job",
    "job_json_schema",
    "wants_grouped",
]

FORMAT_VERSION = 2
GROUPED_THRESHOLD = 10_000

Encoding = Literal["auto", "tasks", "grouped"]


@dataclass(frozen=True, slots=True)
class TaskGroups:
    """The tasks of the grouped encoding: what they share, then (parameter set, seeds) groups."""

    bundle_ref: str
    entrypoint: str
    outputs: tuple[str, ...] | None
    config: dict[str, Any] | None
    groups: Sequence[tuple[UniqueParameterSet, Sequence[int]]]


@dataclass(frozen=True, slots=True)
class TaskColumns:
    """The tasks of the grouped encoding as parallel columns, the way a compiled job holds them.

    Group ``g`` is ``param_ids[g]`` with parameters ``params[g]`` and the seeds
    ``seeds[offsets[g]:offsets[g + 1]]``; ``offsets`` has one entry more than there are groups.
    """

    bundle_ref: str
    entrypoint: str
    outputs: tuple[str, ...] | None
    config: dict[str, Any] | None
    param_ids: Sequence[str]
    params: Sequence[Mapping[str, Scalar]]
    seeds: Sequence[int]
    offsets: Sequence[int]


@dataclass(frozen=True, slots=True)
class JobParts:
    """A job document as plain parts; ``tasks`` is every task, or :class:`TaskGroups`.

    Decoded parts are validated field by field (tasks, template, parameter sets, seeds); the
    job-level checks (job_id, one bundle, unique task ids, distinct seeds) are the job's own.
    Decoding gives :class:`TaskGroups`; encoding also takes :class:`TaskColumns`.
    """

    job_id: str
    bundle_ref: str | None
    metadata: dict[str, Any]
    target_spec: dict[str, Any] | None
    tasks: Sequence[SimTask] | TaskGroups | TaskColumns


def wants_grouped(encoding: Encoding, task_count: int) -> bool:
    """Whether ``encoding`` asks for the grouped form for a job of ``task_count`` tasks."""
    return encoding == "grouped" or (encoding == "auto" and task_count > GROUPED_THRESHOLD)


def encode_job(parts: JobParts) -> dict[str, Any]:
    """The JSON-compatible document of ``parts``: grouped unless they hold every task."""
    doc = _header(parts)
    tasks = parts.tasks
    if isinstance(tasks, TaskColumns):
        doc["groups"] = _group_records(tasks, 0, len(tasks.param_ids))
    elif isinstance(tasks, TaskGroups):
        doc["groups"] = [
            {"param_id": p.param_id, "params": dict(p.params), "seeds": list(s)}
            for p, s in tasks.groups
        ]
    else:
        doc["tasks"] = [task.to_dict() for task in tasks]
    return doc


def _header(parts: JobParts) -> dict[str, Any]:
    """Every field of the document but ``tasks`` / ``groups`` (which come last)."""
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "job_id": parts.job_id,
        "bundle_ref": parts.bundle_ref,
        "metadata": parts.metadata,
        "target_spec": parts.target_spec,
    }
    tasks = parts.tasks
    if isinstance(tasks, TaskColumns | TaskGroups):
        doc["template"] = {
            "entrypoint": tasks.entrypoint,
            "outputs": list(tasks.outputs) if tasks.outputs is not None else None,
            "config": tasks.config,
        }
    return doc


def _group_records(columns: TaskColumns, lo: int, hi: int) -> list[dict[str, Any]]:
    """The ``groups`` records of groups ``lo .. hi - 1``."""
    pids, params, seeds, offsets = columns.param_ids, columns.params, columns.seeds, columns.offsets
    if isinstance(offsets, range) and offsets.step == 1:  # one seed per group
        return [
            {"param_id": pid, "params": p if type(p) is dict else dict(p), "seeds": [seed]}
            for pid, p, seed in zip(pids[lo:hi], params[lo:hi], seeds[lo:hi], strict=True)
        ]
    return [
        {
            "param_id": pids[g],
            "params": p if type(p) is dict else dict(p),
            "seeds": list(seeds[offsets[g] : offsets[g + 1]]),
        }
        for g, p in enumerate(params[lo:hi], lo)
    ]


# records built at a time: fewer live container objects than the cyclic GC's first threshold
# (700), so writing a job of any size never starts a collection that would walk them
_CHUNK_GROUPS = 256


def dump_job(parts: JobParts, *, indent: int | None = None) -> str:
    """JSON text of ``encode_job(parts)``, byte for byte, without building the whole document.

    Compact grouped documents are written a chunk of groups at a time: the document with no
    groups gives everything up to the ``groups`` list, which is its last field.
    """
    tasks = parts.tasks
    if indent is None and isinstance(tasks, TaskColumns):
        dump = _DOC_ADAPTER.dump_json
        head = dump(_header(parts) | {"groups": []})
        if head.endswith(b'"groups":[]}') and tasks.param_ids:
            # each chunk is a JSON list: its items without the brackets, then a comma
            pieces: list[bytes | memoryview] = [memoryview(head)[:-2]]
            for lo in range(0, len(tasks.param_ids), _CHUNK_GROUPS):
                pieces.append(memoryview(dump(_group_records(tasks, lo, lo + _CHUNK_GROUPS)))[1:-1])
                pieces.append(b",")
            pieces[-1] = b"]}"
            return b"".join(pieces).decode()
    return dump_job_json(encode_job(parts), indent=indent)


def dump_job_json(doc: Mapping[str, Any], *, indent: int | None = None) -> str:
    """JSON text of a job document (compact unless ``indent`` is given)."""
    return _DOC_ADAPTER.dump_json(doc, indent=indent).decode()


def decode_job(data: Mapping[str, Any]) -> JobParts:
    """Validate a current-format job document and return its parts.

    Raises:
        ContractViolationError: a field is invalid, the document mixes or lacks the two
            encodings, or its ``format_version`` is newer than this code understands.
    """
    try:
        doc = _JobDocument.model_validate(data)
    except ValidationError as err:
        raise translate_validation_error(err, "SimJob") from None
    return doc.to_parts()


def job_json_schema() -> dict[str, Any]:
    """JSON Schema of the job file format."""
    return _JobDocument.model_json_schema()


class _Template(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entrypoint: str
    outputs: list[str] | None = None
    config: dict[str, Any] | None = None


class _Group(TypedDict):
    param_id: NotRequired[str]
    params: dict[str, bool | int | float | str]
    seeds: Annotated[list[Annotated[int, Field(ge=0, lt=2**64)]], Field(min_length=1)]


class _JobDocument(BaseModel):
    """The job file: either every task, or a task template and parameter groups."""

    model_config = ConfigDict(extra="forbid", title="SimJob")

    format_version: int = FORMAT_VERSION
    job_id: str
    bundle_ref: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    target_spec: dict[str, Any] | None = None
    tasks: list[SimTask] | None = None
    template: _Template | None = None
    groups: list[_Group] | None = None

    def to_parts(self) -> JobParts:
        if self.format_version > FORMAT_VERSION:
            raise ContractViolationError(
                f"job file format_version {self.format_version} is newer than this ModelOps "
                f"understands ({FORMAT_VERSION}); upgrade modelops",
                field="format_version",
                value=self.format_version,
            )
        if self.tasks is not None:
            if self.template is not None or self.groups is not None:
                raise ContractViolationError(
                    "a job file has either 'tasks' or 'template'+'groups', not both",
                    field="tasks",
                    value=None,
                )
            return JobParts(
                self.job_id, self.bundle_ref, self.metadata, self.target_spec, self.tasks
            )
        if self.template is None or self.groups is None or self.bundle_ref is None:
            raise ContractViolationError(
                "a job file needs 'tasks', or 'bundle_ref', 'template' and 'groups'",
                field="tasks",
                value=None,
            )
        # one task of the template validates bundle, entrypoint, outputs and config once
        probe = SimTask(
            bundle_ref=self.bundle_ref,
            entrypoint=self.template.entrypoint,
            params={},
            seed=0,
            outputs=self.template.outputs,
            config=self.template.config,
        )
        groups = [
            (UniqueParameterSet(g["params"], g.get("param_id")), g["seeds"]) for g in self.groups
        ]
        tasks = TaskGroups(probe.bundle_ref, probe.entrypoint, probe.outputs, probe.config, groups)
        return JobParts(self.job_id, probe.bundle_ref, self.metadata, self.target_spec, tasks)


_DOC_ADAPTER: TypeAdapter[Any] = TypeAdapter(Any)
