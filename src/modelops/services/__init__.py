"""Where tasks run: backends behind one chunk interface and the ``SimulationService`` port.

- :class:`LocalSimulationService`: a process pool on this machine (the default).
- :class:`DaskSimulationService`: a Dask cluster (``mops run --scheduler``).
- :class:`InProcessSimulationService`: the calling process itself (tests, debugging).

Names load lazily so that importing the process pool in a worker stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelops_contracts._lazy import lazy_getattr

if TYPE_CHECKING:
    from modelops.services._base import ChunkBackend, ChunkEvent
    from modelops.services.dask import ClusterError, DaskSimulationService
    from modelops.services.inprocess import InProcessSimulationService
    from modelops.services.local import LocalSimulationService

_EXPORTS = {
    "ChunkBackend": "modelops.services._base",
    "ChunkEvent": "modelops.services._base",
    "ClusterError": "modelops.services.dask",
    "DaskSimulationService": "modelops.services.dask",
    "InProcessSimulationService": "modelops.services.inprocess",
    "LocalSimulationService": "modelops.services.local",
}

__all__ = [
    "ChunkBackend",
    "ChunkEvent",
    "ClusterError",
    "DaskSimulationService",
    "InProcessSimulationService",
    "LocalSimulationService",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
