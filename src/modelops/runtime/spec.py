"""The data a driver and a worker exchange about a chunk of tasks.

Kept apart from :mod:`modelops.runtime.chunk` so that the driver can build chunks and read
results without importing what runs the model (numpy, pyarrow.compute).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ChunkResult", "ChunkSpec", "ChunkTask", "ChunkTasks", "TaskOutcome", "TaskOutcomes"]

_set_attribute = object.__setattr__


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """One task of a chunk: identity, replicate, seed and the parameter set."""

    index: int
    task_id: str
    param_id: str
    replicate: int
    seed: int
    params: dict[str, Any]

    def __reduce__(self) -> tuple[Any, ...]:
        return _make_task, (
            self.index,
            self.task_id,
            self.param_id,
            self.replicate,
            self.seed,
            self.params,
        )


_new_object = object.__new__
_TASK_SLOTS = tuple(
    getattr(ChunkTask, name).__set__
    for name in ("index", "task_id", "param_id", "replicate", "seed", "params")
)


def _make_task(
    index: int, task_id: str, param_id: str, replicate: int, seed: int, params: dict[str, Any]
) -> ChunkTask:
    """Build a ChunkTask through its slots: unpickling thousands of them must stay cheap."""
    task: ChunkTask = _new_object(ChunkTask)
    set_index, set_task_id, set_param_id, set_replicate, set_seed, set_params = _TASK_SLOTS
    set_index(task, index)
    set_task_id(task, task_id)
    set_param_id(task, param_id)
    set_replicate(task, replicate)
    set_seed(task, seed)
    set_params(task, params)
    return task


class ChunkTasks(Sequence[ChunkTask]):
    """A chunk's tasks as parallel columns; :class:`ChunkTask` objects are built on access.

    The driver builds these from its task columns (a few list copies, no object per task), and
    a :class:`ChunkSpec` holding them pickles the columns as they are.
    """

    __slots__ = ("param_ids", "params", "replicates", "seeds", "task_ids")

    def __init__(
        self,
        task_ids: list[str],
        param_ids: list[str],
        replicates: list[int],
        seeds: list[int],
        params: list[dict[str, Any]],
    ) -> None:
        self.task_ids = task_ids
        self.param_ids = param_ids
        self.replicates = replicates
        self.seeds = seeds
        self.params = params

    def __len__(self) -> int:
        return len(self.task_ids)

    @overload
    def __getitem__(self, index: int) -> ChunkTask: ...
    @overload
    def __getitem__(self, index: slice) -> list[ChunkTask]: ...
    def __getitem__(self, index: int | slice) -> ChunkTask | list[ChunkTask]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = range(len(self))[index]  # IndexError and negative indices as for a list
        return _make_task(
            i, self.task_ids[i], self.param_ids[i], self.replicates[i], self.seeds[i],
            self.params[i],
        )  # fmt: skip

    def __iter__(self) -> Iterator[ChunkTask]:
        return map(_make_task, *self._columns())

    def _columns(self) -> tuple[list[Any] | range, ...]:
        return (
            range(len(self.task_ids)), self.task_ids, self.param_ids, self.replicates,
            self.seeds, self.params,
        )  # fmt: skip


@dataclass(frozen=True)
class ChunkSpec:
    """A chunk of tasks that share bundle, entrypoint, requested outputs and config.

    Pickles its tasks column-wise (a few bytes and about a microsecond per task each way).
    """

    bundle_dir: str
    entrypoint: str
    outputs: tuple[str, ...] | None
    config: dict[str, Any] | None
    tasks: Sequence[ChunkTask]
    log_path: str | None = None
    max_output_bytes: int | None = None  # a task whose rows exceed it fails; None: no cap

    def __reduce__(self) -> tuple[Any, ...]:
        tasks = self.tasks
        columns: tuple[Any, ...]
        if isinstance(tasks, ChunkTasks):
            columns = tasks._columns()
        else:
            columns = (
                [t.index for t in tasks],
                [t.task_id for t in tasks],
                [t.param_id for t in tasks],
                [t.replicate for t in tasks],
                [t.seed for t in tasks],
                [t.params for t in tasks],
            )
        head = (
            self.bundle_dir,
            self.entrypoint,
            self.outputs,
            self.config,
            self.log_path,
            self.max_output_bytes,
        )
        return _make_spec, (head, columns, isinstance(tasks, tuple))


def _make_spec(
    head: tuple[str, str, tuple[str, ...] | None, dict[str, Any] | None, str | None, int | None],
    columns: tuple[list[Any], ...],
    as_tuple: bool,
) -> ChunkSpec:
    bundle_dir, entrypoint, outputs, config, log_path, max_output_bytes = head
    tasks = list(map(_make_task, *columns))
    return ChunkSpec(
        bundle_dir,
        entrypoint,
        outputs,
        config,
        tuple(tasks) if as_tuple else tasks,
        log_path,
        max_output_bytes,
    )


@dataclass(frozen=True, init=False)
class TaskOutcome:
    """How one task ended; the error fields are set only when ``ok`` is false.

    ``duration`` is seconds spent in the task (model and output conversion).
    """

    task_id: str
    ok: bool
    duration: float
    error_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    stderr_tail: str | None = None

    def __init__(
        self,
        task_id: str,
        ok: bool,
        duration: float,
        error_type: str | None = None,
        message: str | None = None,
        traceback: str | None = None,
        stderr_tail: str | None = None,
    ) -> None:
        # One per task on the hot path: one __dict__ store instead of seven frozen setattrs.
        _set_attribute(
            self,
            "__dict__",
            {
                "task_id": task_id,
                "ok": ok,
                "duration": duration,
                "error_type": error_type,
                "message": message,
                "traceback": traceback,
                "stderr_tail": stderr_tail,
            },
        )


_Error = tuple[str | None, str | None, str | None, str | None]
"""(error_type, message, traceback, stderr_tail) of a failed task."""


class TaskOutcomes(Sequence[TaskOutcome]):
    """A chunk's outcomes as columns: every task's id and duration, the errors of the failed.

    What a worker sends back: most tasks succeed, so a task costs an id and a float on the
    wire, and the driver reads ``durations`` and ``errors`` without a :class:`TaskOutcome` per
    task (those are built on access, for other readers).
    """

    __slots__ = ("durations", "errors", "task_ids")

    def __init__(
        self, task_ids: list[str], durations: list[float], errors: dict[int, _Error]
    ) -> None:
        self.task_ids = task_ids
        self.durations = durations
        self.errors = errors

    @classmethod
    def of(cls, outcomes: Sequence[TaskOutcome]) -> TaskOutcomes:
        """``outcomes`` as columns (returned as they are if they already are)."""
        if isinstance(outcomes, TaskOutcomes):
            return outcomes
        errors = {
            i: (o.error_type, o.message, o.traceback, o.stderr_tail)
            for i, o in enumerate(outcomes)
            if not o.ok
        }
        return cls([o.task_id for o in outcomes], [o.duration for o in outcomes], errors)

    def __len__(self) -> int:
        return len(self.task_ids)

    @overload
    def __getitem__(self, index: int) -> TaskOutcome: ...
    @overload
    def __getitem__(self, index: slice) -> list[TaskOutcome]: ...
    def __getitem__(self, index: int | slice) -> TaskOutcome | list[TaskOutcome]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = range(len(self))[index]
        error = self.errors.get(i)
        if error is None:
            return TaskOutcome(self.task_ids[i], True, self.durations[i])
        return TaskOutcome(self.task_ids[i], False, self.durations[i], *error)

    def __reduce__(self) -> tuple[Any, ...]:
        return TaskOutcomes, (self.task_ids, self.durations, self.errors)


@dataclass
class ChunkResult:
    """Outcomes in task order, one table per output, the worker and the model's packages.

    Pickles its outcomes as :class:`TaskOutcomes` columns.
    """

    outcomes: Sequence[TaskOutcome]
    tables: dict[str, pa.Table] = field(default_factory=dict)
    worker: str = ""
    packages: dict[str, str] = field(default_factory=dict)

    def __reduce__(self) -> tuple[Any, ...]:
        outcomes = TaskOutcomes.of(self.outcomes)
        return ChunkResult, (outcomes, self.tables, self.worker, self.packages)
