"""Run chunks in the calling process: no workers, no isolation. For tests and debugging."""

from __future__ import annotations

import socket
from collections import deque
from pathlib import Path
from typing import ClassVar

from modelops.runtime.chunk import ChunkSpec, run_chunk
from modelops.services._base import BackendCapabilities, ChunkBackend
from modelops.services._events import ChunkDone, ChunkEvent

__all__ = ["InProcessSimulationService"]


class InProcessSimulationService(ChunkBackend):
    """Runs each chunk synchronously inside :meth:`poll`, in this process.

    Same contract as the pool backends except what :attr:`capabilities` leaves out: a task that
    crashes the process crashes the caller, and task timeouts are not enforced. A model
    exception is still a per-task failure.

    Args:
        store: store root where :meth:`submit_batch` finds bundle snapshots.
    """

    capabilities: ClassVar[BackendCapabilities] = BackendCapabilities(
        enforces_timeouts=False,
        isolates_crashes=False,
        needs_shared_filesystem=True,
        chunks_per_worker=1,
    )

    def __init__(self, *, store: Path | str | None = None) -> None:
        self.workers = 1
        self._store_root = Path(store) if store is not None else None
        self._queue: deque[tuple[int, ChunkSpec]] = deque()
        self._next_ticket = 0
        self._worker = socket.gethostname()

    def start(
        self, *, bundle_ref: str, bundle_zip: Path, cache_dir: Path, log_path: Path | None
    ) -> None:
        """Extract the snapshot into ``cache_dir`` (once).

        Raises:
            BundleError: the snapshot is missing, unreadable or not ``bundle_ref``.
        """
        self._extract_bundle(bundle_ref, bundle_zip, cache_dir)

    def free_slots(self) -> int:
        return 0 if self._queue else 1

    def submit_chunk(self, spec: ChunkSpec, *, task_timeout: float | None) -> int:
        self._next_ticket += 1
        self._queue.append((self._next_ticket, spec))
        return self._next_ticket

    def poll(self, timeout: float) -> list[ChunkEvent]:
        events: list[ChunkEvent] = []
        while self._queue:
            ticket, spec = self._queue.popleft()
            events.append(ChunkDone(ticket, run_chunk(spec), self._worker))
        return events

    def close(self, *, kill: bool = False) -> None:
        self._drop_port()
        self._queue.clear()

    @property
    def description(self) -> str:
        return "in-process (no workers)"
