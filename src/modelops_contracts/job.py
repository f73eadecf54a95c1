"""SimJob: a flat list of tasks bound to one code bundle. No batch layer.

Replicates are the tasks that share a ``param_id``; a task's *replicate index* is its position
among them, in job order. Jobs compiled from a study keep their tasks in a compact grouped form
(:class:`GroupedTasks`: one parameter set, many seeds) so a million-task job costs little memory;
``job.tasks`` still reads as a sequence of :class:`SimTask`.

This module is the object model; the file format (both encodings, the JSON Schema) lives in
:mod:`modelops_contracts._job_format`, which knows nothing of :class:`SimJob`.
"""

from __future__ import annotations

import json
import operator
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from itertools import accumulate, chain, pairwise
from types import MappingProxyType
from typing import Any, overload

from modelops_contracts._job_format import FORMAT_VERSION as FORMAT_VERSION
from modelops_contracts._job_format import GROUPED_THRESHOLD as GROUPED_THRESHOLD
from modelops_contracts._job_format import (
    Encoding,
    JobParts,
    TaskColumns,
    TaskGroups,
    decode_job,
    dump_job,
    encode_job,
    wants_grouped,
)
from modelops_contracts._job_format import job_json_schema as job_json_schema
from modelops_contracts.errors import ContractViolationError
from modelops_contracts.legacy import LegacyJob, flatten_batches, read_legacy_job
from modelops_contracts.params import Scalar, UniqueParameterSet
from modelops_contracts.task import SimTask, TaskIdFactory, bundle_digest, validate_bundle_ref

__all__ = [
    "FORMAT_VERSION",
    "GroupedTasks",
    "SimJob",
    "TaskBlock",
    "TaskRow",
    "validate_job_id",
]

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


Spec = tuple[str, tuple[str, ...] | None, dict[str, Any] | None]
"""What a run of tasks shares besides the bundle: (entrypoint, outputs, config)."""


@dataclass(frozen=True, slots=True)
class TaskBlock:
    """Consecutive tasks of a job as parallel lists: the engine's bulk view, no object per task.

    Entry ``i`` of each list belongs to the same task, in :meth:`SimJob.task_rows` order, and
    together they give exactly that task's :class:`TaskRow`. ``params[i]`` is the parameter
    set's own mapping in the job, one object for all its replicates (for a grouped job a plain,
    picklable dict): read it, never change it. (entrypoint, outputs, config) are given once per
    run of tasks that share them: run ``k`` starts at position ``spec_breaks[k]`` (the first at
    0) and has ``specs[k]``; a grouped job has one run.
    """

    task_ids: list[str]
    param_ids: list[str]
    replicates: list[int]
    seeds: list[int]
    params: list[Mapping[str, Scalar]]
    spec_breaks: list[int]
    specs: list[Spec]

    def __len__(self) -> int:
        return len(self.task_ids)


class GroupedTasks(Sequence[SimTask]):
    """Tasks sharing bundle, entrypoint, outputs and config, stored as (parameter set, seeds).

    The groups are kept as parallel columns (param_ids, parameters, every seed in one list, and
    the offset of each group's first seed), a few objects for a million tasks. Iteration and
    indexing build :class:`SimTask` objects on demand, :attr:`groups` builds its view on first
    use; the seeds of one group must be distinct and the groups' param_ids unique, which makes
    every task_id unique.
    """

    __slots__ = (
        "_digest",
        "_groups",
        "_ids",
        "_offsets",
        "_param_ids",
        "_params",
        "_seeds",
        "bundle_ref",
        "config",
        "entrypoint",
        "outputs",
    )

    _groups: Sequence[tuple[UniqueParameterSet, Sequence[int]]] | None
    _offsets: Sequence[int]

    def __init__(
        self,
        bundle_ref: str,
        entrypoint: str,
        outputs: tuple[str, ...] | None,
        config: dict[str, Any] | None,
        groups: Sequence[tuple[UniqueParameterSet, Sequence[int]]],
    ) -> None:
        self._set(
            bundle_ref,
            entrypoint,
            outputs,
            config,
            [params.param_id for params, _ in groups],
            [params._dict for params, _ in groups],
            list(chain.from_iterable(seeds for _, seeds in groups)),
            _offsets([len(seeds) for _, seeds in groups]),
        )
        self._groups = groups

    @classmethod
    def _from_columns(
        cls,
        bundle_ref: str,
        entrypoint: str,
        outputs: tuple[str, ...] | None,
        config: dict[str, Any] | None,
        param_ids: list[str],
        params: list[dict[str, Scalar]],
        seeds: list[int],
        offsets: Sequence[int],
    ) -> GroupedTasks:
        """Tasks from columns that are correct by construction (the compile path).

        ``params`` holds canonical dicts, which are never changed. ``offsets`` may be a
        ``range`` when every group has as many seeds.
        """
        tasks = object.__new__(cls)
        tasks._set(bundle_ref, entrypoint, outputs, config, param_ids, params, seeds, offsets)
        tasks._groups = None
        return tasks

    def _set(
        self,
        bundle_ref: str,
        entrypoint: str,
        outputs: tuple[str, ...] | None,
        config: dict[str, Any] | None,
        param_ids: list[str],
        params: list[dict[str, Scalar]],
        seeds: list[int],
        offsets: Sequence[int],
    ) -> None:
        self.bundle_ref = bundle_ref
        self.entrypoint = entrypoint
        self.outputs = outputs
        self.config = config
        self._param_ids = param_ids
        self._params = params
        self._seeds = seeds
        self._offsets = offsets
        self._digest: str | None = None  # content digest, computed once (the tasks never change)
        self._ids: TaskIdFactory | None = None

    @property
    def groups(self) -> Sequence[tuple[UniqueParameterSet, Sequence[int]]]:
        """(parameter set, seeds) per group, in task order (for a compiled job, built once here)."""
        if self._groups is None:
            trusted, seeds, off = UniqueParameterSet._trusted, self._seeds, self._offsets
            self._groups = [
                (trusted(params, pid), seeds[off[g] : off[g + 1]])
                for g, (pid, params) in enumerate(zip(self._param_ids, self._params, strict=True))
            ]
        return self._groups

    def columns(self) -> TaskColumns:
        """The tasks as the grouped encoding's columns (no copy)."""
        return TaskColumns(
            self.bundle_ref,
            self.entrypoint,
            self.outputs,
            self.config,
            self._param_ids,
            self._params,
            self._seeds,
            self._offsets,
        )

    def __len__(self) -> int:
        return self._offsets[-1]

    def _task(self, params: UniqueParameterSet, seed: int) -> SimTask:
        return SimTask._trusted(
            self.bundle_ref, self.entrypoint, params, seed, self.outputs, self.config
        )

    def _group_of(self, index: int) -> int:
        """The group holding task ``index`` (0 <= index < len)."""
        off = self._offsets
        if isinstance(off, range):
            return index // off.step
        return bisect_right(off, index) - 1

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
        g = self._group_of(index)
        if self._groups is not None:
            params = self._groups[g][0]
        else:  # a single task need not build the whole groups view
            params = UniqueParameterSet._trusted(self._params[g], self._param_ids[g])
        return self._task(params, self._seeds[index])

    def __iter__(self) -> Iterator[SimTask]:
        for params, seeds in self.groups:
            for seed in seeds:
                yield self._task(params, seed)

    def _id_factory(self) -> TaskIdFactory:
        if self._ids is None:
            self._ids = TaskIdFactory(self.bundle_ref, self.entrypoint, self.outputs, self.config)
        return self._ids

    def block(self, start: int, stop: int) -> TaskBlock:
        """Tasks ``start .. stop - 1`` (``0 <= start <= stop <= len``) as a :class:`TaskBlock`.

        Costs O(stop - start), plus a binary search over the groups when their sizes differ.
        """
        spec: Spec = (self.entrypoint, self.outputs, self.config)
        if start >= stop:
            return TaskBlock([], [], [], [], [], [], [])
        off, seeds = self._offsets, self._seeds[start:stop]
        params: list[Mapping[str, Scalar]]
        if isinstance(off, range) and off.step == 1:  # one task per parameter set
            param_ids = self._param_ids[start:stop]
            replicates = [0] * (stop - start)
            params = self._params[start:stop]  # type: ignore[assignment]
        else:
            param_ids, replicates, params = [], [], []
            g0, g1 = self._group_of(start), self._group_of(stop - 1) + 1
            shared = self._params[g0:g1]
            for g, pid, mapping in zip(range(g0, g1), self._param_ids[g0:g1], shared, strict=True):
                lo = off[g]
                a, b = max(start, lo), min(stop, off[g + 1])
                param_ids += [pid] * (b - a)
                replicates += range(a - lo, b - lo)
                params += [mapping] * (b - a)
        ids = self._id_factory().many(param_ids, seeds)
        return TaskBlock(ids, param_ids, replicates, seeds, params, [0], [spec])

    def rows(self) -> Iterator[TaskRow]:
        """Engine view: one :class:`TaskRow` per task, built a block of task ids at a time.

        A row's ``params`` is a read-only view of the set's parameters.
        """
        entrypoint, outputs, config = self.entrypoint, self.outputs, self.config
        for start in range(0, len(self), _ROW_BLOCK):
            b = self.block(start, min(start + _ROW_BLOCK, len(self)))
            last: Mapping[str, Scalar] | None = None
            view: Mapping[str, Scalar] = {}
            for task_id, pid, rep, seed, params in zip(
                b.task_ids, b.param_ids, b.replicates, b.seeds, b.params, strict=True
            ):
                if params is not last:  # the replicates of a set are consecutive
                    last, view = params, MappingProxyType(params)
                yield TaskRow(task_id, pid, rep, seed, view, entrypoint, outputs, config)


_ROW_BLOCK = 4_096


def _offsets(lengths: list[int]) -> Sequence[int]:
    """Offsets of groups of these sizes: a ``range`` when they are all equal (and not 0)."""
    if lengths and lengths[0] > 0 and lengths.count(lengths[0]) == len(lengths):
        return range(0, lengths[0] * len(lengths) + 1, lengths[0])
    return list(accumulate(lengths, initial=0))


def _block_bounds(start: int, stop: int, n: int) -> tuple[int, int]:
    start, stop = operator.index(start), operator.index(stop)
    if start < 0 or stop < start:
        raise ValueError(f"a task block needs 0 <= start <= stop, got {start}, {stop}")
    return min(start, n), min(stop, n)


class SimJob:
    """A job: ``job_id``, a flat sequence of tasks, and metadata.

    ``SimJob(job_id, tasks, metadata)`` validates what it is given (see :meth:`validate`).
    ``batches=[...]`` (the old SimBatch layout) is still accepted, with a DeprecationWarning.

    Raises:
        ContractViolationError: bad job_id, no tasks, several bundles, or duplicate task ids.
    """

    __slots__ = ("_replicates", "bundle_ref", "job_id", "metadata", "target_spec", "tasks")

    job_id: str
    tasks: Sequence[SimTask]
    metadata: dict[str, Any]
    bundle_ref: str
    target_spec: dict[str, Any] | None
    _replicates: list[int] | None

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
            if tasks is not None:
                raise ContractViolationError(
                    "give either tasks or batches, not both", field="batches", value=None
                )
            tasks = flatten_batches(batches, stacklevel=2)
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
        object.__setattr__(self, "_replicates", None)  # of a job not grouped, on first need

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
        return len(self.parameter_sets())

    def parameter_sets(self) -> dict[str, UniqueParameterSet]:
        """The job's distinct parameter sets by param_id, in the order they first appear.

        This is the parameter view readers need (analysis, scoring, plots): it does not depend
        on how the job file encodes its tasks.
        """
        if isinstance(self.tasks, GroupedTasks):
            return {params.param_id: params for params, _ in self.tasks.groups}
        sets: dict[str, UniqueParameterSet] = {}
        for task in self.tasks:
            sets.setdefault(task.params.param_id, task.params)
        return sets

    def replicate_counts(self) -> dict[str, int]:
        """How many tasks (replicates) the job holds for each param_id, in job order."""
        counts: dict[str, int] = {}
        if isinstance(self.tasks, GroupedTasks):
            off = self.tasks._offsets
            for g, pid in enumerate(self.tasks._param_ids):
                counts[pid] = counts.get(pid, 0) + off[g + 1] - off[g]
            return counts
        for task in self.tasks:
            pid = task.params.param_id
            counts[pid] = counts.get(pid, 0) + 1
        return counts

    def parameter_names(self) -> list[str]:
        """Every parameter name used by some set, in first-seen order."""
        names: dict[str, None] = {}
        if isinstance(self.tasks, GroupedTasks):
            for mapping in self.tasks._params:
                names.update(dict.fromkeys(mapping))
            return list(names)
        for params in self.parameter_sets().values():
            names.update(dict.fromkeys(params.params))
        return list(names)

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

    def task_block(self, start: int, stop: int) -> TaskBlock:
        """Tasks ``start .. stop - 1`` in :meth:`task_rows` order as one :class:`TaskBlock`.

        ``stop`` past the end is cut to :meth:`task_count` (a block past the end is empty). The
        cost is that of the block's tasks (and a binary search), never of the tasks before it,
        so consecutive blocks walk a job in linear time.

        Raises:
            ValueError: ``start`` is negative or ``stop`` is below ``start``.
        """
        start, stop = _block_bounds(start, stop, len(self.tasks))
        if isinstance(self.tasks, GroupedTasks):
            return self.tasks.block(start, stop)
        tasks = self.tasks[start:stop]
        breaks: list[int] = []
        specs: list[Spec] = []
        for i, task in enumerate(tasks):
            spec = (task.entrypoint, task.outputs, task.config)
            if not specs or spec != specs[-1]:
                breaks.append(i)
                specs.append(spec)
        return TaskBlock(
            [task.task_id for task in tasks],
            [task.params.param_id for task in tasks],
            self._plain_replicates()[start:stop],
            [task.seed for task in tasks],
            [task.params.params for task in tasks],
            breaks,
            specs,
        )

    def _plain_replicates(self) -> list[int]:
        """Replicate index of every task of a job that is not grouped (computed once)."""
        replicates = self._replicates
        if replicates is None:
            counters: dict[str, int] = {}
            replicates = []
            for task in self.tasks:
                pid = task.params.param_id
                rep = counters.get(pid, 0)
                counters[pid] = rep + 1
                replicates.append(rep)
            object.__setattr__(self, "_replicates", replicates)
        return replicates

    def content_digest(self) -> str:
        """16 hex chars (64-bit BLAKE2b) naming the job's content: its bundle and its tasks.

        ``job_id``, ``metadata`` and ``target_spec`` do not count. Tasks that share entrypoint,
        outputs and config, parameter sets kept together (every job compiled from a study), hash
        the bundle digest, entrypoint, outputs and config, then each parameter set's param_id and
        seeds in order: the hash :meth:`SimulationStudy.to_simjob` takes the default job id from
        (``"job-" + content_digest()``), whichever encoding the job was read from. Any other job
        hashes its bundle digest and its ordered task_ids. The store uses it to refuse a job id
        reused for different content.
        """
        return _content_digest(self.tasks)

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
        pids, seeds, off = tasks._param_ids, tasks._seeds, tasks._offsets
        if len(set(pids)) == len(pids) and (
            (isinstance(off, range) and off.step == 1)
            or all(len(set(seeds[a:b])) == b - a for a, b in pairwise(off))
        ):
            return
        self._validate_groups(tasks)

    def _validate_groups(self, tasks: GroupedTasks) -> None:
        """Find the first bad group (the checks of :meth:`_validate_grouped`, one at a time)."""
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

    def to_dict(self, *, encoding: Encoding = "auto") -> dict[str, Any]:
        """The current file format as a JSON-compatible dict.

        ``encoding="grouped"`` writes one record per parameter set with its seeds (compact, for
        big jobs; only for jobs whose tasks share entrypoint, outputs and config); ``"tasks"``
        writes every task; ``"auto"`` picks grouped above 10,000 tasks when it can.

        Raises:
            ContractViolationError: ``"grouped"`` asked for tasks that cannot be grouped.
        """
        return encode_job(self._parts(encoding))

    def _parts(self, encoding: Encoding) -> JobParts:
        header = (self.job_id, self.bundle_ref, self.metadata, self.target_spec)
        if wants_grouped(encoding, len(self.tasks)):
            g = _as_grouped(self.tasks)
            if g is not None:
                return JobParts(*header, g.columns())
            if encoding == "grouped":
                raise ContractViolationError(
                    "grouped encoding needs tasks that share entrypoint, outputs and config",
                    field="encoding",
                    value=encoding,
                )
        return JobParts(*header, self.tasks)

    def to_json(self, *, encoding: Encoding = "auto", indent: int | None = None) -> str:
        """JSON text of :meth:`to_dict`; ``SimJob.from_json(job.to_json()) == job``.

        Raises:
            ContractViolationError: ``"grouped"`` asked for tasks that cannot be grouped.
        """
        return dump_job(self._parts(encoding), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimJob:
        """Load the current format, or the old ``batches`` format (DeprecationWarning).

        Raises:
            ContractViolationError: the document is not a valid job.
        """
        return cls._from_mapping(data, stacklevel=3)

    @classmethod
    def _from_mapping(cls, data: Mapping[str, Any], *, stacklevel: int) -> SimJob:
        """Body of :meth:`from_dict`; ``stacklevel`` counts from here, as in ``warnings.warn``."""
        if not isinstance(data, Mapping):
            raise ContractViolationError(
                f"a job document must be an object, got {type(data).__name__}",
                field="job",
                value=data,
            )
        parts: LegacyJob | JobParts
        parts = (
            read_legacy_job(data, stacklevel=stacklevel) if "batches" in data else decode_job(data)
        )
        assert not isinstance(parts.tasks, TaskColumns)  # decoding gives every task, or groups
        if not isinstance(parts.tasks, TaskGroups):
            return cls(
                parts.job_id,
                parts.tasks,
                parts.metadata,
                bundle_ref=parts.bundle_ref,
                target_spec=parts.target_spec,
            )
        g = parts.tasks
        tasks = GroupedTasks(g.bundle_ref, g.entrypoint, g.outputs, g.config, g.groups)
        job = cls._trusted(validate_job_id(parts.job_id), tasks, parts.metadata, parts.target_spec)
        job.validate()
        return job

    @classmethod
    def from_json(cls, text: str | bytes) -> SimJob:
        """Parse JSON text written by :meth:`to_json` (or an old ``batches`` file).

        Raises:
            ContractViolationError: the text is not JSON or not a valid job.
        """
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ContractViolationError(
                f"job file is not valid JSON: {err}", field="job", value=None
            ) from None
        return cls._from_mapping(data, stacklevel=3)

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


def _content_digest(tasks: Sequence[SimTask]) -> str:
    """See :meth:`SimJob.content_digest` (one copy of the job content hash)."""
    if isinstance(tasks, GroupedTasks):
        if tasks._digest is None:
            tasks._digest = _hash_content(tasks)
        return tasks._digest
    return _hash_content(tasks)


def _hash_content(tasks: Sequence[SimTask]) -> str:
    grouped = _as_grouped(tasks)
    h = blake2b(digest_size=8)
    if grouped is None:
        h.update(f"modelops:job-tasks:v1|{bundle_digest(tasks[0].bundle_ref)}".encode())
        for task in tasks:
            h.update(f"|{task.task_id}".encode())
        return h.hexdigest()
    outputs = json.dumps(list(grouped.outputs) if grouped.outputs is not None else None)
    config = json.dumps(grouped.config, sort_keys=True, separators=(",", ":"))
    header = f"modelops:job:v1|{bundle_digest(grouped.bundle_ref)}|{grouped.entrypoint}|{outputs}|"
    h.update((header + config).encode())
    # "|{param_id}:{seed,seed,...}" per group, fed a chunk of groups at a time
    pids, seeds, off = grouped._param_ids, grouped._seeds, grouped._offsets
    step = off.step if isinstance(off, range) else 0  # seeds per group, when all have as many
    join = ",".join
    for lo in range(0, len(pids), _DIGEST_CHUNK):
        hi = min(lo + _DIGEST_CHUNK, len(pids))
        if step == 1:
            parts = [f"|{pid}:{seed}" for pid, seed in zip(pids[lo:hi], seeds[lo:hi], strict=True)]
        elif step:
            texts = list(map(str, seeds[lo * step : hi * step]))
            parts = [
                f"|{pid}:{join(texts[at : at + step])}"
                for pid, at in zip(pids[lo:hi], range(0, len(texts), step), strict=True)
            ]
        else:
            parts = [
                f"|{pids[g]}:{join(map(str, seeds[off[g] : off[g + 1]]))}" for g in range(lo, hi)
            ]
        h.update("".join(parts).encode())
    return h.hexdigest()


_DIGEST_CHUNK = 4_096
