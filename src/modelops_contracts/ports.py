"""Ports: the small interfaces the engine is built against (``typing.Protocol``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar, runtime_checkable

from modelops_contracts.results import SimReturn
from modelops_contracts.task import SimTask

__all__ = ["Future", "SimulationService"]

T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class Future(Protocol[T_co]):
    """A result that will be available later."""

    def result(self, timeout: float | None = None) -> T_co:
        """Block until done (or ``timeout`` seconds) and return the value or raise its error."""
        ...

    def done(self) -> bool:
        """True once the result is available."""
        ...


@runtime_checkable
class SimulationService(Protocol):
    """Runs tasks somewhere (a local process pool, a Dask cluster).

    Promises:
      * Every submitted task yields exactly one :class:`SimReturn`; a task failure is reported
        in ``SimReturn.error``, never raised, so one bad task cannot stop the others.
      * Results may complete in any order; :meth:`gather` returns them in submission order.
      * A task whose worker died is retried on another worker a bounded number of times.
      * Memory is bounded by the tasks in flight, not by the number submitted.
    """

    def submit(self, task: SimTask) -> Future[SimReturn]:
        """Schedule one task."""
        ...

    def submit_batch(self, tasks: Sequence[SimTask]) -> list[Future[SimReturn]]:
        """Schedule many tasks at once (the service may chunk them for efficiency)."""
        ...

    def gather(self, futures: Sequence[Future[SimReturn]]) -> list[SimReturn]:
        """Wait for ``futures`` and return their results in the same order."""
        ...
