"""The engine: one orchestrator that runs a job's tasks on a backend and commits them to a store.

- :func:`execute` / :class:`Execution`: lock the store, snapshot and check the bundle, register
  the job, run it, release the lock; what ``modelops.run`` and ``JobSubmissionClient`` call.
- :class:`Session`: many jobs in a row on one backend under one lock (a calibration's rounds).
- :class:`RunOptions`, :class:`Progress`, :class:`RunSummary`: what goes in and comes out.
- :func:`source_key` / :func:`finished_summary`: let a re-run of a finished study skip
  compiling it.

The loop itself (``_driver``) does the I/O; the decisions it takes about lost chunks and chunk
sizes are pure code in :mod:`modelops.services._policy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelops_contracts._lazy import lazy_getattr

if TYPE_CHECKING:
    from modelops.engine._execute import Execution, Session, execute
    from modelops.engine._memo import finished_summary, source_key
    from modelops.engine._types import Progress, RunOptions, RunSummary

_EXPORTS = {
    "Execution": "modelops.engine._execute",
    "Progress": "modelops.engine._types",
    "RunOptions": "modelops.engine._types",
    "RunSummary": "modelops.engine._types",
    "Session": "modelops.engine._execute",
    "execute": "modelops.engine._execute",
    "finished_summary": "modelops.engine._memo",
    "source_key": "modelops.engine._memo",
}

__all__ = [
    "Execution",
    "Progress",
    "RunOptions",
    "RunSummary",
    "Session",
    "execute",
    "finished_summary",
    "source_key",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
