"""SimJob: a flat list of tasks bound to one code bundle. No batch layer.

Replicates are the tasks that share a ``param_id``; a task's *replicate index* is its position
among them, in job order. Jobs compiled from a study keep their tasks in a compact grouped form
(:class:`GroupedTasks`: one parameter set, many seeds) so a million-task job costs little memory;
``job.tasks`` still reads as a sequence of :class:`SimTask`.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired, overload

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from modelops_contracts._base import translate_validation_error
from modelops_contracts.errors import ContractViolationError
from modelops_contracts.params import Scalar, UniqueParameterSet
from modelops_contracts.task import SimTask, TaskIdFactory, validate_bundle_ref

__all__ = [
    "FORMAT_VERSION",
    "GroupedTasks",
    "SimJob",
    "TaskRow",
    "validate_job_id",
]

FORMAT_VERSION = 2
GROUPED_THRESHOLD = 10_000
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is a safe name: ``[A-Za-z0-9._-]{1,128}``, not starting with '.'."""
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
        raise ContractViolationError(
            "job_id must be 1-128 chars of letters, digits, '.', '_', '-' and not start with "
            f"'.', got {job_id!r}",
            field="job_id",
            value=job_id,
        )
    return job_id


@dataclass(frozen=True, slots=True)
class TaskRow:
    """What the engine needs of one task, without building a :class:`SimTask`."""

    task_id: str
    param_id: str
    replicate: int
    seed: int
    params: Mapping[str, Scalar]
    entrypoint: str
    outputs: tuple[str, ...] | None
    config: dict[str, Any] | None


class GroupedTasks(Sequence[SimTask]):
    """Tasks sharing bundle, entrypoint, outputs and config, stored as (parameter set, seeds).

    Iteration and indexing build :class:`SimTask` objects on demand; the seeds of one group must
    be distinct and the groups' param_ids unique, which makes every task_id unique.
    """

    __slots__ = ("_offsets", "bundle_ref", "config", "entrypoint", "groups", "outputs")

    def __init__(
        self,
        bundle_ref: str,
        entrypoint: str,
        outputs: tuple[str, ...] | None,
        config: dict[str, Any] | None,
        groups: Sequence[tuple[UniqueParameterSet, Sequence[int]]],
    ) -> None:
        self.bundle_ref = bundle_ref
        self.entrypoint = entrypoint
        self.outputs = outputs
        self.config = config
        self.groups = groups
        offsets = [0]
        total = 0
        for _, seeds in groups:
            total += len(seeds)
            offsets.append(total)
        self._offsets = offsets

    def __len__(self) -> int:
        return self._offsets[-1]

    def _task(self, params: UniqueParameterSet, seed: int) -> SimTask:
        return SimTask._trusted(
            self.bundle_ref, self.entrypoint, params, seed, self.outputs, self.config
        )

    @overload
    def __getitem__(self, index: int) -> SimTask: ...
    @overload
    def __getitem__(self, index: slice) -> list[SimTask]: ...
    def __getitem__(self, index: int | slice) -> SimTask | list[SimTask]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("task index out of range")
        g = bisect_right(self._offsets, index) - 1
        params, seeds = self.groups[g]
        return self._task(params, seeds[index - self._offsets[g]])

    def __iter__(self) -> Iterator[SimTask]:
        for params, seeds in self.groups:
            for seed in seeds:
                yield self._task(params, seed)

    def rows(self) -> Iterator[TaskRow]:
        """Engine view: one :class:`TaskRow` per task, task ids hashed from a shared prefix."""
        make_id = TaskIdFactory(self.bundle_ref, self.entrypoint, self.outputs, self.config)
        for params, seeds in self.groups:
            pid = params.param_id
            for rep, seed in enumerate(seeds):
                yield TaskRow(
                    make_id(pid, seed),
                    pid,
                    rep,
                    seed,
                    params.params,
                    self.entrypoint,
                    self.outputs,
                    self.config,
                )


class SimJob:
    """A job: ``job_id``, a flat sequence of tasks, and metadata.

    ``SimJob(job_id, tasks, metadata)`` validates what it is given (see :meth:`validate`).
    ``batches=[...]`` (the old SimBatch layout) is still accepted, with a DeprecationWarning.

    Raises:
        ContractViolationError: bad job_id, no tasks, several bundles, or duplicate task ids.
    """

    __slots__ = ("bundle_ref", "job_id", "metadata", "target_spec", "tasks")

    job_id: str
    tasks: Sequence[SimTask]
    metadata: dict[str, Any]
    bundle_ref: str
    target_spec: dict[str, Any] | None

    def __init__(
        self,
        job_id: str,
        tasks: Iterable[SimTask] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        bundle_ref: str | None = None,
        target_spec: Mapping[str, Any] | None = None,
        batches: Iterable[Any] | None = None,
    ) -> None:
        if batches is not None:
            from modelops_contracts.legacy import flatten_batches

            if tasks is not None:
                raise ContractViolationError(
                    "give either tasks or batches, not both", field="batches", value=None
                )
            tasks = flatten_batches(batches, stacklevel=3)
        if tasks is None:
            raise ContractViolationError("a SimJob needs tasks", field="tasks", value=None)
        seq: Sequence[SimTask] = tasks if isinstance(tasks, GroupedTasks) else tuple(tasks)
        for task in seq if not isinstance(seq, GroupedTasks) else ():
            if not isinstance(task, SimTask):
                raise ContractViolationError(
                    f"tasks must be SimTask objects, got {type(task).__name__}",
                    field="tasks",
                    value=task,
                )
        if bundle_ref is None and len(seq):
            bundle_ref = seq[0].bundle_ref
        self._set(job_id, seq, metadata, bundle_ref or "", target_spec)
        self.validate()

    def _set(
        self,
        job_id: str,
        tasks: Sequence[SimTask],
        metadata: Mapping[str, Any] | None,
        bundle_ref: str,
        target_spec: Mapping[str, Any] | None,
    ) -> None:
        object.__setattr__(self, "job_id", job_id)
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "metadata", dict(metadata or {}))
        object.__setattr__(self, "bundle_ref", bundle_ref)
        object.__setattr__(self, "target_spec", dict(target_spec) if target_spec else None)

    @classmethod
    def _trusted(
        cls,
        job_id: str,
        tasks: GroupedTasks,
        metadata: Mapping[str, Any] | None,
        target_spec: Mapping[str, Any] | None = None,
    ) -> SimJob:
        """Wrap tasks that were built correct by construction (internal fast path)."""
        job = object.__new__(cls)
        job._set(job_id, tasks, metadata, tasks.bundle_ref, target_spec)
        return job

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SimJob is immutable")

    # -- queries -------------------------------------------------------------------------------

    def task_count(self) -> int:
        """Number of tasks."""
        return len(self.tasks)

    def get_task_groups(self) -> dict[str, list[SimTask]]:
        """Tasks by param_id, replicate order kept: the replicates of each parameter set."""
        groups: dict[str, list[SimTask]] = {}
        if isinstance(self.tasks, GroupedTasks):
            for params, seeds in self.tasks.groups:
                groups.setdefault(params.param_id, []).extend(
                    self.tasks._task(params, seed) for seed in seeds
                )
            return groups
        for task in self.tasks:
            groups.setdefault(task.params.param_id, []).append(task)
        return groups

    def parameter_count(self) -> int:
        """Number of distinct parameter sets."""
        if isinstance(self.tasks, GroupedTasks):
            return len({params.param_id for params, _ in self.tasks.groups})
        return len({task.params.param_id for task in self.tasks})

    def task_rows(self) -> Iterator[TaskRow]:
        """One :class:`TaskRow` per task in job order (the engine's cheap view)."""
        if isinstance(self.tasks, GroupedTasks):
            yield from self.tasks.rows()
            return
        counters: dict[str, int] = {}
        for task in self.tasks:
            pid = task.params.param_id
            rep = counters.get(pid, 0)
            counters[pid] = rep + 1
            yield TaskRow(
                task.task_id,
                pid,
                rep,
                task.seed,
                task.params.params,
                task.entrypoint,
                task.outputs,
                task.config,
            )

    def validate(self) -> None:
        """Check the job: safe job_id, at least one task, one bundle, unique task ids.

        Raises:
            ContractViolationError: naming the first problem found.
        """
        validate_job_id(self.job_id)
        if not len(self.tasks):
            raise ContractViolationError(
                f"job {self.job_id!r} has no tasks", field="tasks", value=[]
            )
        validate_bundle_ref(self.bundle_ref)
        if isinstance(self.tasks, GroupedTasks):
            self._validate_grouped(self.tasks)
            return
        seen: set[str] = set()
        for task in self.tasks:
            if task.bundle_ref != self.bundle_ref:
                raise ContractViolationError(
                    f"all tasks of job {self.job_id!r} must use bundle {self.bundle_ref}, "
                    f"found {task.bundle_ref}",
                    field="bundle_ref",
                    value=task.bundle_ref,
                )
            if task.task_id in seen:
                raise ContractViolationError(
                    f"job {self.job_id!r} holds task {task.task_id} twice",
                    field="tasks",
                    value=task.task_id,
                )
            seen.add(task.task_id)

    def _validate_grouped(self, tasks: GroupedTasks) -> None:
        if tasks.bundle_ref != self.bundle_ref:
            raise ContractViolationError(
                f"job bundle {self.bundle_ref} differs from its tasks' {tasks.bundle_ref}",
                field="bundle_ref",
                value=tasks.bundle_ref,
            )
        pids: set[str] = set()
        for params, seeds in tasks.groups:
            if params.param_id in pids:
                raise ContractViolationError(
                    f"parameter set {params.param_id} appears twice in job {self.job_id!r}",
                    field="tasks",
                    value=params.param_id,
                )
            pids.add(params.param_id)
            if len(set(seeds)) != len(seeds):
                raise ContractViolationError(
                    f"parameter set {params.param_id} repeats a seed in job {self.job_id!r}",
                    field="seeds",
                    value=list(seeds),
                )

    # -- serialization -------------------------------------------------------------------------

    def to_dict(self, *, encoding: Literal["auto", "tasks", "grouped"] = "auto") -> dict[str, Any]:
        """The current file format as a JSON-compatible dict.

        ``encoding="grouped"`` writes one record per parameter set with its seeds (compact, for
        big jobs; only for jobs whose tasks share entrypoint, outputs and config); ``"tasks"``
        writes every task; ``"auto"`` picks grouped above 10,000 tasks when it can.
        """
        doc: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "job_id": self.job_id,
            "bundle_ref": self.bundle_ref,
            "metadata": self.metadata,
            "target_spec": self.target_spec,
        }
        grouped = _as_grouped(self.tasks)
        use_grouped = encoding == "grouped" or (
            encoding == "auto" and grouped is not None and len(self.tasks) > GROUPED_THRESHOLD
        )
        if use_grouped:
            if grouped is None:
                raise ContractViolationError(
                    "grouped encoding needs tasks that share entrypoint, outputs and config",
                    field="encoding",
                    value=encoding,
                )
            doc["template"] = {
                "entrypoint": grouped.entrypoint,
                "outputs": list(grouped.outputs) if grouped.outputs is not None else None,
                "config": grouped.config,
            }
            doc["groups"] = [
                {"param_id": p.param_id, "params": dict(p.params), "seeds": list(s)}
                for p, s in grouped.groups
            ]
        else:
            doc["tasks"] = [task.to_dict() for task in self.tasks]
        return doc

    def to_json(
        self, *, encoding: Literal["auto", "tasks", "grouped"] = "auto", indent: int | None = None
    ) -> str:
        """JSON text of :meth:`to_dict`; ``SimJob.from_json(job.to_json()) == job``."""
        return _DOC_ADAPTER.dump_json(self.to_dict(encoding=encoding), indent=indent).decode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimJob:
        """Load the current format, or the old ``batches`` format (DeprecationWarning)."""
        if not isinstance(data, Mapping):
            raise ContractViolationError(
                f"a job document must be an object, got {type(data).__name__}",
                field="job",
                value=data,
            )
        if "batches" in data:
            from modelops_contracts.legacy import job_from_legacy_dict

            return job_from_legacy_dict(data, stacklevel=3)
        try:
            doc = _JobDocument.model_validate(data)
        except ValidationError as err:
            raise translate_validation_error(err, "SimJob") from None
        return doc.to_job()

    @classmethod
    def from_json(cls, text: str | bytes) -> SimJob:
        """Parse JSON text written by :meth:`to_json` (or an old ``batches`` file)."""
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ContractViolationError(
                f"job file is not valid JSON: {err}", field="job", value=None
            ) from None
        return cls.from_dict(data)

    # -- dunder --------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SimJob):
            return NotImplemented
        return (
            self.job_id == other.job_id
            and self.bundle_ref == other.bundle_ref
            and self.metadata == other.metadata
            and self.target_spec == other.target_spec
            and len(self.tasks) == len(other.tasks)
            and all(a.task_id == b.task_id for a, b in zip(self.tasks, other.tasks, strict=True))
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"SimJob(job_id={self.job_id!r}, tasks=<{len(self.tasks)} tasks>, "
            f"bundle_ref={self.bundle_ref!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_job_from_state, (self.to_dict(encoding="auto"),))


def _job_from_state(data: dict[str, Any]) -> SimJob:
    return SimJob.from_dict(data)


def _as_grouped(tasks: Sequence[SimTask]) -> GroupedTasks | None:
    """The grouped view of ``tasks`` if they share entrypoint, outputs and config, in order."""
    if isinstance(tasks, GroupedTasks):
        return tasks
    if not tasks:
        return None
    first = tasks[0]
    spec = (first.entrypoint, first.outputs, first.config)
    groups: dict[str, tuple[UniqueParameterSet, list[int]]] = {}
    last_pid: str | None = None
    for task in tasks:
        if (task.entrypoint, task.outputs, task.config) != spec:
            return None
        pid = task.params.param_id
        if pid != last_pid and pid in groups:
            return None  # parameter sets interleave: grouping would reorder the tasks
        groups.setdefault(pid, (task.params, []))[1].append(task.seed)
        last_pid = pid
    return GroupedTasks(
        first.bundle_ref, first.entrypoint, first.outputs, first.config, list(groups.values())
    )


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

    def to_job(self) -> SimJob:
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
            return SimJob(
                self.job_id,
                self.tasks,
                self.metadata,
                bundle_ref=self.bundle_ref,
                target_spec=self.target_spec,
            )
        if self.template is None or self.groups is None or self.bundle_ref is None:
            raise ContractViolationError(
                "a job file needs 'tasks', or 'bundle_ref', 'template' and 'groups'",
                field="tasks",
                value=None,
            )
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
        tasks = GroupedTasks(
            probe.bundle_ref, probe.entrypoint, probe.outputs, probe.config, groups
        )
        job = SimJob._trusted(validate_job_id(self.job_id), tasks, self.metadata, self.target_spec)
        job.validate()
        return job


_DOC_ADAPTER: TypeAdapter[Any] = TypeAdapter(Any)


def job_json_schema() -> dict[str, Any]:
    """JSON Schema of the job file format."""
    return _JobDocument.model_json_schema()
