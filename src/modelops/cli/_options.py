"""The options several commands share, declared once so their flags and help never drift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "BundleOption",
    "FixOption",
    "ModelOption",
    "RetriesOption",
    "ScenarioOption",
    "SchedulerOption",
    "StoreOption",
    "TaskTimeoutOption",
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
