"""The batch-cluster flags of ``mops run`` and ``mops calibrate``, turned into settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from modelops.cli._app import fail
from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    from modelops.services.batch import BatchSettings

__all__ = ["ClusterFlags", "batch_settings"]


@dataclass(frozen=True)
class ClusterFlags:
    """The flags as given (None: not given)."""

    cluster: str | None = None
    jobs: int | None = None
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    queue: str | None = None
    account: str | None = None
    job_extra: str | None = None
    start_timeout: float | None = None

    def given(self) -> list[str]:
        """The batch flags given besides --cluster, as ``--name``."""
        return [
            "--" + name.replace("_", "-")
            for name, value in asdict(self).items()
            if name != "cluster" and value is not None
        ]


def batch_settings(
    flags: ClusterFlags, study_section: dict[str, Any] | None
) -> BatchSettings | None:
    """The run's batch settings (flags over the study's section over the user's file), checked
    against the batch system; None when the run does not go to a batch cluster.

    Raises:
        typer.Exit: one error line for a bad setting, a batch flag without a cluster, or a
            batch system that is not there.
    """
    from modelops.services.batch import check_batch_settings, load_batch_settings

    values = {k: v for k, v in asdict(flags).items() if k != "cluster"}
    try:
        settings = load_batch_settings(flags.cluster, values, study_section)
        if settings is None:
            if flags.given():
                raise fail(f"{', '.join(flags.given())} need --cluster slurm (or pbs, sge, lsf)")
            return None
        check_batch_settings(settings)
    except ContractViolationError as err:
        raise fail(str(err)) from None
    return settings
