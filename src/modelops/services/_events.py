"""What a worker can report about a chunk: one small type per outcome, no ``kind`` strings.

Every submitted chunk ends in exactly one of these. The process pool emits them, the Dask
worker returns them, and the engine and the task-level port dispatch on their type. ``ticket``
names the chunk; ``position`` is the index, within the chunk, of the task that was running
(``None`` when the worker could not say).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

__all__ = ["ChunkDone", "ChunkEvent", "ChunkRaised", "RemoteError", "TaskTimedOut", "WorkerDied"]


class RemoteError(NamedTuple):
    """An exception raised in a worker, as text: the type name, ``str(exc)`` and the traceback."""

    type_name: str
    message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class ChunkDone:
    """The chunk function returned; ``value`` is its result (a ``ChunkResult`` for backends)."""

    ticket: int
    value: Any
    worker: str = ""


@dataclass(frozen=True, slots=True)
class ChunkRaised:
    """The chunk function itself raised (not a model: those are per-task outcomes)."""

    ticket: int
    error: RemoteError
    worker: str = ""


@dataclass(frozen=True, slots=True)
class _ChunkLost:
    """A chunk that ended with its process: which task was running, where, and how it ended."""

    ticket: int
    position: int | None = None
    worker: str = ""
    exitcode: int | None = None


@dataclass(frozen=True, slots=True)
class WorkerDied(_ChunkLost):
    """The process running the chunk ended (a segfault, ``os._exit``, a lost Dask worker)."""


@dataclass(frozen=True, slots=True)
class TaskTimedOut(_ChunkLost):
    """The task at ``position`` ran past its time limit; its process was killed."""


ChunkEvent: TypeAlias = ChunkDone | ChunkRaised | WorkerDied | TaskTimedOut
