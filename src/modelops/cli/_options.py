"""The options several commands share, declared once so their flags and help never drift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "AccountOption",
    "BundleOption",
    "ClusterOption",
    "CoresOption",
    "EnvOption",
    "FixOption",
    "JobExtraOption",
    "JobsOption",
    "MemoryOption",
    "ModelOption",
    "QueueOption",
    "RetriesOption",
    "ScenarioOption",
    "SchedulerOption",
    "StartTimeoutOption",
    "StoreOption",
    "TaskTimeoutOption",
    "WalltimeOption",
    "WorkersOption",
]

StoreOption = Annotated[
    Path | None,
    typer.Option("--store", help="Result store directory [env MODELOPS_STORE; default .modelops]"),
]
BundleOption = Annotated[Path, typer.Option("--bundle", help="Model code directory.")]
WorkersOption = Annotated[
    int | None, typer.Option("--workers", min=1, help="Worker processes [default: CPUs].")
]
RetriesOption = Annotated[
    int, typer.Option("--retries", min=0, help="Re-runs of a task whose worker died.")
]
TaskTimeoutOption = Annotated[
    float | None, typer.Option("--task-timeout", min=0.001, help="Seconds per task.")
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        envvar="MODELOPS_SCHEDULER",
        help="Run on a Dask cluster: tcp://HOST:PORT, or 'local' for a LocalCluster.",
    ),
]
ScenarioOption = Annotated[str, typer.Option("--scenario", help="Scenario to run.")]
FixOption = Annotated[
    list[str] | None, typer.Option("--fix", help="Hold a parameter: name=value (repeat).")
]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="The model's import path (space files).")
]

ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="Run on Dask workers started as batch jobs: slurm (or pbs, sge, lsf).",
    ),
]
JobsOption = Annotated[
    int | None, typer.Option("--jobs", min=1, help="Most batch jobs at once [default: 1].")
]
CoresOption = Annotated[
    int | None, typer.Option("--cores", min=1, help="Cores per batch job [default: 1].")
]
MemoryOption = Annotated[
    str | None, typer.Option("--memory", help="Memory per batch job [default: 4GB].")
]
WalltimeOption = Annotated[
    str | None,
    typer.Option("--walltime", help="Time limit per batch job, HH:MM:SS [default: 01:00:00]."),
]
QueueOption = Annotated[
    str | None, typer.Option("--queue", help="Partition (queue) of the batch jobs.")
]
AccountOption = Annotated[
    str | None, typer.Option("--account", help="Account charged for the batch jobs.")
]
JobExtraOption = Annotated[
    str | None,
    typer.Option("--job-extra", help="More job directives, e.g. '--qos=debug --exclusive'."),
]
StartTimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--start-timeout", min=0.001, help="Seconds to wait for the first batch job [default: 600]."
    ),
]
EnvOption = Annotated[
    str,
    typer.Option(
        "--env",
        help="auto: a bundle that declares requirements runs in its own environment, built "
        "once with uv; current: in this Python.",
    ),
]
