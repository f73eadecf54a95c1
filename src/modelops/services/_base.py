"""The execution boundary: a backend runs chunks of tasks and reports how each chunk ended."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modelops.runtime.spec import ChunkSpec

__all__ = ["ChunkBackend", "ChunkEvent"]


@dataclass(frozen=True, slots=True)
class ChunkEvent:
    """How one submitted chunk ended.

    ``done``: ``value`` is the :class:`~modelops.runtime.ChunkResult`. ``error``: the chunk
    runner itself raised; ``value`` is ``(type name, message, traceback)``. ``died``: the worker
    process vanished; ``position`` is the task it was running, if known. ``timeout``: the task at
    ``position`` ran past its limit and its worker was killed.
    """

    ticket: int
    kind: Literal["done", "error", "died", "timeout"]
    value: Any = None
    position: int | None = None
    worker: str = ""
    exitcode: int | None = None


class ChunkBackend(ABC):
    """Runs chunks of tasks on workers; what the engine drives.

    Contract:
      * At most :meth:`free_slots` chunks may be submitted before the next :meth:`poll`. A
        backend allows a small fixed number of chunks per worker in flight (one for the local
        pool; two on Dask, where a queued chunk hides the scheduler round trip), which bounds
        the engine's memory by the window, never by the job.
      * Every submitted chunk produces exactly one :class:`ChunkEvent`, in completion order.
      * A worker that dies or times out is replaced; the backend never retries by itself (the
        engine decides, per task, from the event's ``position``).
      * Workers import the model from :meth:`bundle_dir`, an immutable snapshot of the bundle.
    """

    workers: int

    @abstractmethod
    def start(self, *, bundle_ref: str, bundle_zip: Path, log_path: Path | None) -> None:
        """Bring workers up and make the bundle snapshot available to them."""

    def warm_up(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Begin starting workers early (optional); :meth:`start` must still be called."""

    @abstractmethod
    def bundle_dir(self) -> str:
        """Directory the workers import the model from (valid on the workers)."""

    @abstractmethod
    def free_slots(self) -> int:
        """How many chunks can be submitted right now."""

    @abstractmethod
    def submit_chunk(self, spec: ChunkSpec, *, task_timeout: float | None) -> int:
        """Start a chunk; returns its ticket."""

    @abstractmethod
    def poll(self, timeout: float) -> list[ChunkEvent]:
        """Events that arrived within ``timeout`` seconds (possibly none)."""

    @abstractmethod
    def close(self, *, kill: bool = False) -> None:
        """Stop the workers; ``kill`` stops them at once without waiting for running tasks."""

    @property
    def dashboard_link(self) -> str | None:
        """A URL to watch the workers, when the backend has one."""
        return None

    @property
    def description(self) -> str:
        """One line saying where tasks run (shown by ``mops run``)."""
        return f"{type(self).__name__} with {self.workers} workers"
