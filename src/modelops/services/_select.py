"""Choosing a backend from the few settings a user gives on the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelops.services._base import ChunkBackend
    from modelops.services.batch import BatchSettings

__all__ = ["backend_for"]


def backend_for(
    *, scheduler: str | None, workers: int | None, batch: BatchSettings | None = None
) -> ChunkBackend:
    """The backend for a scheduler setting, a worker count or batch settings (not started).

    - no scheduler: the local process pool with ``workers`` processes (default: the CPU count);
    - ``"local"``: a Dask cluster started on this machine for the run, ``workers`` single-threaded
      worker processes (default 2);
    - an address (``tcp://HOST:PORT``): the Dask cluster whose scheduler listens there; its size
      is set where its workers are started, so ``workers`` does not apply;
    - ``batch``: a Dask cluster of batch jobs (Slurm, PBS, SGE, LSF) started for the run.

    Raises:
        ContractViolationError: ``workers`` is below 1, or given with a scheduler address or
            batch settings; both a scheduler and batch settings.
    """
    from modelops_contracts.errors import ContractViolationError

    if batch is not None:
        if scheduler is not None:
            raise ContractViolationError(
                "a batch cluster starts its own scheduler: give a scheduler address or batch "
                "settings, not both",
                field="scheduler",
            )
        if workers is not None:
            raise ContractViolationError(
                "a batch cluster's size is its jobs and cores, not a number of workers",
                field="workers",
            )
        from modelops.services.dask import DaskSimulationService

        return DaskSimulationService(batch=batch)

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
