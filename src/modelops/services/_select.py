"""Choosing a backend from the few settings a user gives on the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelops.services._base import ChunkBackend

__all__ = ["backend_for"]


def backend_for(*, scheduler: str | None, workers: int | None) -> ChunkBackend:
    """The backend for a scheduler setting and a worker count (neither started).

    - no scheduler: the local process pool with ``workers`` processes (default: the CPU count);
    - ``"local"``: a Dask cluster started on this machine for the run, ``workers`` single-threaded
      worker processes (default 2);
    - an address (``tcp://HOST:PORT``): the Dask cluster whose scheduler listens there; its size
      is set where its workers are started, so ``workers`` does not apply.

    Raises:
        ContractViolationError: ``workers`` is below 1, or given with a scheduler address.
    """
    from modelops_contracts.errors import ContractViolationError

    if workers is not None and workers < 1:
        raise ContractViolationError(
            f"the number of workers must be at least 1, got {workers}",
            field="workers",
            value=workers,
        )
    if scheduler is None:
        from modelops.services.local import LocalSimulationService

        return LocalSimulationService(workers)
    from modelops.services.dask import DaskSimulationService

    if scheduler == "local":
        return DaskSimulationService(local=True, workers=workers)
    if workers is not None:
        raise ContractViolationError(
            f"the number of workers of the Dask cluster at {scheduler} is set where its workers "
            "are started, not by the driver",
            field="workers",
            value=workers,
        )
    return DaskSimulationService(scheduler)
