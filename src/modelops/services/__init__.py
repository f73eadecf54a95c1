"""Where tasks run: backends behind one chunk interface and the ``SimulationService`` port.

- :class:`LocalSimulationService`: a process pool on this machine (the default).
- :class:`InProcessSimulationService`: the calling process itself (tests, debugging).
"""

from __future__ import annotations

from modelops.services._base import ChunkBackend, ChunkEvent
from modelops.services.inprocess import InProcessSimulationService
from modelops.services.local import LocalSimulationService

__all__ = [
    "ChunkBackend",
    "ChunkEvent",
    "InProcessSimulationService",
    "LocalSimulationService",
]
