"""``mops calibrate``, ``mops calibrations``, ``mops calibration``: fit a model to data."""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelops.cli._app import command, fail
from modelops.cli._cluster import ClusterFlags, batch_settings
from modelops.cli._env import chosen_environment
from modelops.cli._jobs import _stdout_for_json
from modelops.cli._options import (
    AccountOption,
    BundleOption,
    ClusterOption,
    CoresOption,
    EnvOption,
    FixOption,
    JobExtraOption,
    JobsOption,
    MemoryOption,
    ModelOption,
    QueueOption,
    RetriesOption,
    ScenarioOption,
    SchedulerOption,
    StartTimeoutOption,
    StoreOption,
    TaskTimeoutOption,
    WalltimeOption,
    WorkersOption,
)
from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    from modelops.calibration import Calibration, CalibrationProgress


@command("calibrate")
def calibrate_command(
    source: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_OR_SPACE",
            help="A Model's import path inside --bundle (sir_model.SIR), or a space file.",
        ),
    ],
    targets: Annotated[
        Path | None,
        typer.Option("--targets", help="Targets file [default: the space file's targets]."),
    ] = None,
    algorithm: Annotated[
        str, typer.Option("--algorithm", help="tpe, cmaes, random, sobol or abc-smc.")
    ] = "tpe",
    budget: Annotated[
        int, typer.Option("--budget", min=1, help="Points evaluated (the final re-run aside).")
    ] = 100,
    replicates: Annotated[int, typer.Option("--replicates", min=1, help="Seeds per point.")] = 4,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Points per round.")] = 8,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Algorithm seed.")] = 0,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, help="Best points re-run at the end.")
    ] = 5,
    reeval: Annotated[
        int | None,
        typer.Option(
            "--reeval-replicates", min=1, help="New seeds per re-run point [default: 4 x R]."
        ),
    ] = None,
    population: Annotated[
        int | None,
        typer.Option("--population", min=2, help="abc-smc: particles per population."),
    ] = None,
    scenario: ScenarioOption = "baseline",
    fix: FixOption = None,
    model: ModelOption = None,
    bundle: BundleOption = Path(),
    store: StoreOption = None,
    workers: WorkersOption = None,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = None,
    jobs: JobsOption = None,
    cores: CoresOption = None,
    memory: MemoryOption = None,
    walltime: WalltimeOption = None,
    queue: QueueOption = None,
    account: AccountOption = None,
    job_extra: JobExtraOption = None,
    start_timeout: StartTimeoutOption = None,
    retries: RetriesOption = 2,
    task_timeout: TaskTimeoutOption = None,
    env: EnvOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fit a model's free parameters to observed data; resumable, every run cached.

    The same command again resumes a killed calibration, or prints a finished one at once.
    """
    from modelops.calibration import calibrate
    from modelops.engine import RunOptions
    from modelops.sampling import parse_fixes
    from modelops.store import default_store

    try:
        fixed = parse_fixes(fix or [])
    except ContractViolationError as err:
        raise fail(f"--fix: {err}") from None
    flags = ClusterFlags(
        cluster, jobs, cores, memory, walltime, queue, account, job_extra, start_timeout
    )
    batch_cluster = batch_settings(flags, None)
    settings = {"population": population} if population is not None else {}
    options = RunOptions(retries=retries, task_timeout=task_timeout)
    json_stdout = _stdout_for_json() if as_json else nullcontext(None)
    try:  # built (with its own progress) before the calibration's display starts
        environment = chosen_environment(bundle, Path(store or default_store()), env, quiet=as_json)
    except ContractViolationError as err:
        raise fail(f"--{err.field}: {err}") from None
    with json_stdout as out, _Display(quiet=as_json) as display:
        try:
            handle = calibrate(
                source, targets, algorithm=algorithm, budget=budget, replicates=replicates,
                batch=batch, seed=seed, bundle=bundle, store=store, model=model,
                scenario=scenario, fix=fixed, settings=settings, top_k=top_k,
                reeval_replicates=reeval, workers=workers, scheduler=scheduler,
                cluster=batch_cluster, options=options, on_progress=display, env=environment,
            )  # fmt: skip
        except ContractViolationError as err:
            if err.field in ("model", "workers", "scheduler", "env"):
                raise fail(f"--{err.field}: {err}") from None
            raise
        if out is not None:
            out.write(json.dumps(handle.result()) + "\n")
            out.flush()
        else:
            _print(handle)
        failed = handle.journal.record().get("result", {}).get("failed_points", 0)
        if failed:
            typer.echo(
                f"warning: {failed} of the points evaluated have no loss (failed tasks or "
                "missing points); `mops failures JOB` for the jobs in evaluations.parquet",
                err=True,
            )


@command("calibrations")
def calibrations_command(
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the calibrations in the store."""
    from modelops.calibration import list_calibrations

    rows = [_row(c) for c in list_calibrations(store)]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no calibrations")
        return
    for row in rows:
        loss = "-" if row["loss"] is None else f"{row['loss']:.6g}"
        typer.echo(
            f"{row['calibration_id']}  {row['status']:<8}  {row['algorithm']:<7}  "
            f"{row['evaluations']}/{row['budget']} points  best loss {loss}"
        )


@command("calibration")
def calibration_command(
    calibration_id: Annotated[str, typer.Argument(metavar="ID", help="Calibration id.")],
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show one calibration: its answer and (abc-smc) its posterior."""
    from modelops.calibration import open_calibration

    handle = open_calibration(calibration_id, store=store)
    if as_json:
        typer.echo(json.dumps(handle.result()))
        return
    _print(handle)


def _row(handle: Calibration) -> dict[str, Any]:
    result = handle.result()
    best = result["best"]
    return {
        "calibration_id": result["calibration_id"],
        "status": result["status"],
        "algorithm": result["algorithm"],
        "evaluations": result["evaluations"],
        "budget": result["budget"],
        "loss": None if best is None else best["loss"],
    }


def _print(handle: Calibration) -> None:
    result = handle.result()
    typer.echo(
        f"calibration {result['calibration_id']} {result['status']}: {result['algorithm']}, "
        f"{result['evaluations']}/{result['budget']} points"
    )
    best = result["best"]
    if best is not None:
        se = "" if best["loss_se"] is None else f" ± {best['loss_se']:.4g}"
        typer.echo(f"best (re-evaluated) loss {best['loss']:.6g}{se}")
        for name, value in best["params"].items():
            typer.echo(f"  {name} = {value}")
    for name, stats in (result.get("posterior") or {}).items():
        typer.echo(
            f"posterior {name}: mean {stats['mean']:.4g}, 90% interval "
            f"[{stats['q05']:.4g}, {stats['q95']:.4g}]"
        )
    typer.echo(f"journal in {handle.directory}")


class _Display:
    """Live progress of a calibration: a rich status line on a terminal, plain lines otherwise."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.live = None
        self._last = 0.0
        self._phase = ""
        if not quiet:
            from rich.console import Console

            console = Console(stderr=True)
            if console.is_terminal:
                from rich.live import Live

                self.live = Live("", console=console, transient=False, refresh_per_second=4)

    def __enter__(self) -> _Display:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def __call__(self, p: CalibrationProgress) -> None:
        if self.quiet:
            return
        best = "-" if p.best_loss is None else f"{p.best_loss:.6g}"
        tasks = ""
        if p.job is not None:
            tasks = f", round tasks {p.job.finished}/{p.job.total}"
        line = (
            f"[{p.elapsed:6.1f}s] {p.phase}: generation {p.generation}, "
            f"{p.evaluations}/{p.budget} points, best loss {best}, "
            f"{p.tasks_run} tasks run, {p.tasks_cached} cached{tasks}"
        )
        if self.live is not None:
            self.live.update(line)
            return
        now = time.monotonic()  # plain lines: each phase's first and last, else every 2 s
        if p.phase == self._phase and p.phase != "done" and now - self._last < 2.0:
            return
        self._phase, self._last = p.phase, now
        print(line, file=sys.stderr, flush=True)
