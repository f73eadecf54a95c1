"""Where tasks run: backends behind one chunk interface, typed worker events, the task-level port.

- :class:`LocalSimulationService`: a process pool on this machine (the default).
- :class:`DaskSimulationService`: a Dask cluster, remote or started on this machine.
- :class:`InProcessSimulationService`: the calling process itself (tests, debugging).
- :func:`backend_for`: the backend for a scheduler setting and a worker count.

Every backend is a :class:`ChunkBackend` that declares its :class:`BackendCapabilities` and
reports each chunk's end as one :data:`ChunkEvent` (:class:`ChunkDone`, :class:`ChunkRaised`,
:class:`WorkerDied`, :class:`TaskTimedOut`). :class:`TaskPort` makes a backend a
``SimulationService`` (one ``SimReturn`` per task); ``modelops.testing`` holds the contract
tests every backend passes.

Names load lazily so that importing the process pool in a worker stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelops_contracts._lazy import lazy_getattr

if TYPE_CHECKING:
    from modelops.services._base import BackendCapabilities, ChunkBackend
    from modelops.services._check import parameters_in
    from modelops.services._events import (
        ChunkDone,
        ChunkEvent,
        ChunkRaised,
        RemoteError,
        TaskTimedOut,
        WorkerDied,
    )
    from modelops.services._port import TaskPort
    from modelops.services._select import backend_for
    from modelops.services.dask import DaskSimulationService
    from modelops.services.inprocess import InProcessSimulationService
    from modelops.services.local import LocalSimulationService
    from modelops_contracts.errors import ClusterError

_EXPORTS = {
    "BackendCapabilities": "modelops.services._base",
    "ChunkBackend": "modelops.services._base",
    "ChunkDone": "modelops.services._events",
    "ChunkEvent": "modelops.services._events",
    "ChunkRaised": "modelops.services._events",
    "ClusterError": "modelops_contracts.errors",
    "DaskSimulationService": "modelops.services.dask",
    "InProcessSimulationService": "modelops.services.inprocess",
    "LocalSimulationService": "modelops.services.local",
    "RemoteError": "modelops.services._events",
    "TaskPort": "modelops.services._port",
    "TaskTimedOut": "modelops.services._events",
    "WorkerDied": "modelops.services._events",
    "backend_for": "modelops.services._select",
    "parameters_in": "modelops.services._check",
}

__all__ = [
    "BackendCapabilities",
    "ChunkBackend",
    "ChunkDone",
    "ChunkEvent",
    "ChunkRaised",
    "ClusterError",
    "DaskSimulationService",
    "InProcessSimulationService",
    "LocalSimulationService",
    "RemoteError",
    "TaskPort",
    "TaskTimedOut",
    "WorkerDied",
    "backend_for",
    "parameters_in",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
