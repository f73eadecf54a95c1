"""The data a driver and a worker exchange about a chunk of tasks.

Kept apart from :mod:`modelops.runtime.chunk` so that the driver can build chunks and read
results without importing what runs the model (numpy, pyarrow.compute).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ChunkResult", "ChunkSpec", "ChunkTask", "TaskOutcome"]

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


@dataclass
class ChunkResult:
    """Outcomes in task order, one table per output, the worker and the model's packages."""

    outcomes: list[TaskOutcome]
    tables: dict[str, pa.Table] = field(default_factory=dict)
    worker: str = ""
    packages: dict[str, str] = field(default_factory=dict)
