"""Commands that run jobs and read them: run, status, jobs, results, failures, cancel."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from modelops.cli._app import EXIT_FAILED, EXIT_INTERRUPTED, command, fail
from modelops.cli._cluster import ClusterFlags, batch_settings
from modelops.cli._env import chosen_environment
from modelops.cli._options import (
    AccountOption,
    BundleOption,
    ClusterOption,
    CoresOption,
    EnvOption,
    JobExtraOption,
    JobsOption,
    MemoryOption,
    QueueOption,
    RetriesOption,
    SchedulerOption,
    StartTimeoutOption,
    StoreOption,
    TaskTimeoutOption,
    WalltimeOption,
    WorkersOption,
)
from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    from modelops.api import JobHandle


@command("run")
def run_command(
    study: Annotated[Path, typer.Argument(help="Study file (YAML or JSON).")],
    bundle: BundleOption = Path(),
    store: StoreOption = None,
    workers: WorkersOption = None,
    retries: RetriesOption = 2,
    task_timeout: TaskTimeoutOption = None,
    max_output: Annotated[
        float,
        typer.Option(
            "--max-task-output",
            min=0.001,
            help="MB of rows one task may return (key columns included); a larger output fails "
            "that task.",
        ),
    ] = 64.0,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first failure.")
    ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every task again.")] = False,
    job_id: Annotated[str | None, typer.Option("--job-id", help="Name the job.")] = None,
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
    env: EnvOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run a study: every task not already in the store, on local processes, a Dask cluster,
    or Dask workers started as Slurm (PBS, SGE, LSF) jobs with --cluster.

    Exit 0 when every task succeeded, 1 when any failed or timed out, 2 on bad input, 130 when
    stopped early by Ctrl-C or `mops cancel` (run the same command again to resume).
    """
    flags = ClusterFlags(
        cluster, jobs, cores, memory, walltime, queue, account, job_extra, start_timeout
    )
    args = _RunArgs(
        study, bundle, store, workers, retries, task_timeout, max_output, fail_fast, no_cache,
        job_id, scheduler, flags, env,
    )  # fmt: skip
    json_stdout = _stdout_for_json() if as_json else nullcontext(None)
    with json_stdout as out:
        _run(args, out)


@dataclass(frozen=True)
class _RunArgs:
    """The flags of ``mops run``, as given."""

    study: Path
    bundle: Path
    store: Path | None
    workers: int | None
    retries: int
    task_timeout: float | None
    max_output: float
    fail_fast: bool
    no_cache: bool
    job_id: str | None
    scheduler: str | None
    cluster: ClusterFlags
    env: str


@contextmanager
def _stdout_for_json() -> Iterator[TextIO]:
    """Point file descriptor 1 at stderr for the block; yield a stream on the real stdout.

    Whatever model code prints (at import while the study compiles, or in a process started
    meanwhile) then lands on stderr, and stdout carries the JSON summary alone.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with os.fdopen(os.dup(saved), "w", encoding="utf-8") as real:
            yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _run(args: _RunArgs, json_out: TextIO | None) -> None:
    """The body of ``mops run``; with ``json_out`` the summary is written there as JSON.

    The fork server that workers (and the model check) fork from imports the runtime's stack:
    it starts first, so it boots while this process loads the study and the engine, and it is
    killed at the end, so that this process's exit is not held up by the server's own.
    """
    from modelops.api import compile_key, finished_run
    from modelops.services._pool import start_forkserver, stop_forkserver
    from modelops.services._worker import PRELOAD

    key = None
    if not args.no_cache:  # a finished study: nothing to compile, check or start
        key = compile_key(
            args.study, args.bundle, store=args.store, job_id=args.job_id, base=args.study.parent
        )
        done = finished_run(key, store=args.store)
        if done is not None:
            _report(done, json_out)
            return
    if not _declares_requirements(args):  # else the environment's own server, once it is built
        start_forkserver(PRELOAD)
    try:
        _run_job(key, args, json_out)
    finally:
        stop_forkserver()  # after a bad study too: no worker started, nothing may outlive us


def _declares_requirements(args: _RunArgs) -> bool:
    """Whether the run's tasks go to the bundle's own environment (``--env auto``)."""
    from modelops.envs import declared_requirements
    from modelops.store import default_store
    from modelops_contracts.errors import BundleError

    if args.env != "auto":
        return False
    try:
        return (
            declared_requirements(args.bundle, (args.store or default_store()) / "envs") is not None
        )
    except BundleError:
        return True  # the run stops on it before any worker starts


def _run_job(key: str | None, args: _RunArgs, json_out: TextIO | None) -> None:
    from modelops_contracts import SimulationStudy

    as_json = json_out is not None

    # a bad study file fails at once: before the heavy imports, before any worker starts
    spec = SimulationStudy.load(args.study)

    from modelops.api import compile_study, default_store, remember_compiled, run
    from modelops.cli._progress import ProgressDisplay
    from modelops.engine import Progress, RunOptions
    from modelops.services import backend_for
    from modelops.services._pool import start_forkserver
    from modelops.services._worker import PRELOAD

    store_root = args.store or default_store()
    base = args.study.parent
    options = RunOptions(
        retries=args.retries,
        task_timeout=args.task_timeout,
        fail_fast=args.fail_fast,
        use_cache=not args.no_cache,
        max_task_output_bytes=int(args.max_output * 2**20),
    )
    batch = batch_settings(args.cluster, spec.cluster)
    try:
        backend = backend_for(scheduler=args.scheduler or None, workers=args.workers, batch=batch)
        environment = chosen_environment(args.bundle, Path(store_root), args.env, quiet=as_json)
        if environment is not None:
            backend.use_environment(environment)
            start_forkserver(PRELOAD, str(environment.python))  # the model check forks from it
    except ContractViolationError as err:
        if err.field not in ("workers", "scheduler", "env"):
            raise
        raise fail(f"--{err.field}: {err}") from None
    python = environment.python if environment is not None else None
    try:  # closed whatever happens: nothing may still be starting workers when we return
        backend.warm_up()  # workers boot (or the cluster connects) while the study compiles
        # the engine (pyarrow) loads while the fork server still boots, not after the check
        importlib.import_module("modelops.engine._execute")
        job = compile_study(
            spec, args.bundle, store=store_root, job_id=args.job_id, base=base, python=python
        )
        if args.scheduler or batch:  # an unreachable cluster fails here, before the job is
            from modelops.services import DaskSimulationService  # registered

            assert isinstance(backend, DaskSimulationService)
            if batch is not None and not as_json:
                typer.echo(f"starting {batch.kind} jobs ({batch.jobs} at most)...", err=True)
            backend.connect(log_directory=Path(store_root) / "jobs" / job.job_id / "workers")
        with ProgressDisplay(job.job_id, quiet=as_json) as display:
            shown: list[str] = []

            def progress(snapshot: Progress) -> None:
                link = backend.dashboard_link  # known once a cluster is connected
                if link and not shown and not as_json:
                    shown.append(link)
                    typer.echo(f"Dask dashboard: {link}", err=True)
                display.note(backend.status_line())
                display(snapshot)

            handle = run(
                job,
                bundle=args.bundle,
                store=store_root,
                options=options,
                backend=backend,
                on_progress=progress,
                env=environment,
            )
    finally:
        backend.close(kill=True)  # run() has closed it already, unless it never got that far
    remember_compiled(key, job, args.study, store=store_root, job_id=args.job_id, base=base)
    _report(handle, json_out)


def _report(handle: JobHandle, json_out: TextIO | None) -> None:
    """Print a run's summary (as JSON on ``json_out``) and exit with its code."""
    summary = handle.summary
    assert summary is not None
    if json_out is not None:
        json_out.write(json.dumps(summary.to_dict()) + "\n")
        json_out.flush()
    else:
        typer.echo(
            f"job {summary.job_id} {summary.state}: {summary.succeeded}/{summary.total} tasks "
            f"succeeded ({summary.cached} cached), {summary.failed} failed, "
            f"{summary.timed_out} timed out in {summary.wall_seconds:.1f} s"
        )
        outputs = handle.outputs()
        if outputs:
            listing = ", ".join(f"{name} ({rows} rows)" for name, rows in outputs.items())
            typer.echo(f"results in {summary.store}: {listing}")
            typer.echo(f"read them with: mops results {summary.job_id} OUTPUT")
        if summary.failed or summary.timed_out:
            typer.echo(f"see failures with: mops failures {summary.job_id}")
    if summary.failed or summary.timed_out:
        raise typer.Exit(EXIT_FAILED)
    if summary.state != "completed":  # stopped by `mops cancel`: resumable, like Ctrl-C
        raise typer.Exit(EXIT_INTERRUPTED)


@command("status")
def status_command(
    job: Annotated[str | None, typer.Argument(help="Job id [default: the latest job].")] = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show a job's state, task counts, outputs and provenance."""
    from modelops.store import job_status, open_existing_store

    result_store = open_existing_store(store)
    job_id = job or _latest_job(result_store)
    status = job_status(result_store, job_id)
    if as_json:
        typer.echo(json.dumps(status, indent=2, default=str))
        return
    counts = status["counts"]
    typer.echo(f"job        {status['job_id']}")
    typer.echo(f"state      {status['state']}")
    typer.echo(
        f"tasks      {status['total']} total: {counts['done']} done, {counts['cached']} cached, "
        f"{counts['failed']} failed, {counts['timeout']} timed out, {counts['pending']} pending"
    )
    typer.echo(f"entrypoint {status.get('entrypoint', '?')}")
    typer.echo(f"bundle     {status.get('bundle_ref', '?')}")
    typer.echo(f"started    {status['started_at']}   finished {status['finished_at']}")
    for name, rows in status["outputs"].items():
        typer.echo(f"output     {name}: {rows} rows")
    prov: dict[str, Any] = status.get("provenance", {})
    for key in ("python", "modelops", "host", "backend", "platform"):
        if key in prov:
            typer.echo(f"{key:<10} {prov[key]}")
    packages = prov.get("packages") or {}
    if packages:
        typer.echo("packages   " + ", ".join(f"{k}=={v}" for k, v in packages.items()))
    cluster = prov.get("cluster")
    if isinstance(cluster, dict):
        ids = ", ".join(map(str, cluster.get("job_ids") or [])) or "none"
        typer.echo(f"cluster    {cluster.get('kind')} jobs {ids}")
        typer.echo(f"workers    logs in {cluster.get('log_directory')}")
    typer.echo(f"log        {status['log']}")


@command("jobs")
def jobs_command(store: StoreOption = None) -> None:
    """List the jobs in the store."""
    from modelops.store import job_state, open_existing_store

    result_store = open_existing_store(store)
    jobs = result_store.ledger.list_jobs()
    if not jobs:
        typer.echo("no jobs")
        return
    typer.echo(f"{'job':<24} {'state':<12} {'tasks':>8} {'done':>8} {'failed':>7}  created")
    for record in jobs:
        state = job_state(result_store, record)
        counts = result_store.ledger.counts(record.job_id)
        done = counts["done"] + counts["cached"]
        failed = counts["failed"] + counts["timeout"]
        created = record.created_at.isoformat(timespec="seconds")
        typer.echo(
            f"{record.job_id:<24} {state:<12} {record.total:>8} {done:>8} {failed:>7}  {created}"
        )


@command("results")
def results_command(
    job: Annotated[str, typer.Argument(help="Job id.")],
    output: Annotated[str | None, typer.Argument(help="Output name [default: list them].")] = None,
    out_file: Annotated[
        Path | None, typer.Option("-o", "--output-file", help="Write to FILE.parquet or FILE.csv.")
    ] = None,
    store: StoreOption = None,
    aggregate: Annotated[
        bool, typer.Option("--aggregate", help="Summarise over replicates per parameter set.")
    ] = False,
    by: Annotated[
        list[str] | None, typer.Option("--by", help="Also group by COLUMN (with --aggregate).")
    ] = None,
) -> None:
    """List a job's outputs, print one, or write it to a Parquet or CSV file.

    With --aggregate: one row per parameter set (and --by value) with n, mean, std and
    quantiles 0.05, 0.25, 0.5, 0.75, 0.95 of each numeric column.
    """
    from modelops.store import job_status, open_existing_store

    if by and not aggregate:
        raise fail("--by groups the summary: give it with --aggregate")
    if output is None and (out_file is not None or aggregate):
        flag = "-o" if out_file is not None else "--aggregate"
        raise fail(f"{flag} needs an OUTPUT name (run 'mops results {job}' to list them)")
    result_store = open_existing_store(store)
    job_status(result_store, job)  # unknown job -> one-line error
    if out_file is not None and inside(out_file, result_store.root):
        raise fail(f"-o {out_file} is inside the store {result_store.root}: write elsewhere")
    if output is None:
        outputs = result_store.output_counts(job)
        if not outputs:
            typer.echo("no outputs yet")
        for name, rows in outputs.items():
            typer.echo(f"{name}\t{rows} rows")
        return
    if aggregate:
        from modelops.analysis import aggregate as aggregate_output

        summary = aggregate_output(job, output, by or [], store=result_store)
        if out_file is not None:
            from modelops._output import write_output

            as_csv = out_file.suffix.lower() == ".csv"
            write_output(out_file, summary.write_csv if as_csv else summary.write_parquet)
            typer.echo(f"wrote {summary.height} rows to {out_file}")
            return
        import polars as pl

        with pl.Config(tbl_rows=20, tbl_cols=12, fmt_str_lengths=14):
            typer.echo(str(summary))
        return
    if out_file is not None:
        rows = result_store.export_results(job, output, out_file)
        typer.echo(f"wrote {rows} rows to {out_file}")
        return
    import polars as pl

    frame = result_store.read_results(job, output)
    with pl.Config(tbl_rows=20, tbl_cols=12, fmt_str_lengths=14):
        typer.echo(str(frame))


@command("failures")
def failures_command(
    job: Annotated[str, typer.Argument(help="Job id.")],
    store: StoreOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most N.")] = 20,
) -> None:
    """Show the failed and timed-out tasks of a job with their errors."""
    from modelops.store import job_status, open_existing_store

    result_store = open_existing_store(store)
    job_status(result_store, job)
    failures = result_store.ledger.failures(job)
    if not failures:
        typer.echo("no failed tasks")
        return
    typer.echo(f"{len(failures)} failed task(s)")
    for record in failures[:limit]:
        typer.echo(
            f"\n{record.task_id[:16]}  param {record.param_id[:12]}  replicate {record.replicate}"
            f"  seed {record.seed}  {record.status}  attempts {record.attempts}"
        )
        typer.echo(f"  {record.error_type}: {record.message}")
        if record.stderr_tail:
            typer.echo("  stderr (tail):")
            for line in record.stderr_tail.rstrip().splitlines()[-10:]:
                typer.echo(f"    {line}")
    if len(failures) > limit:
        typer.echo(f"\n... and {len(failures) - limit} more (use --limit)")


@command("cancel")
def cancel_command(
    job: Annotated[str, typer.Argument(help="Job id.")],
    store: StoreOption = None,
) -> None:
    """Ask a running job to stop; finished tasks stay done, and re-running resumes."""
    from modelops.store import job_status, open_existing_store

    result_store = open_existing_store(store, readonly=False)
    state = job_status(result_store, job)["state"]
    if state != "running":
        raise fail(f"job {job} is not running (state: {state})")
    result_store.ledger.request_cancel(job)
    typer.echo(f"cancel requested for job {job}")


def inside(path: Path, root: Path) -> bool:
    """True if ``path`` (resolved, symlinks included) lies in directory ``root``."""
    return path.expanduser().resolve().is_relative_to(root.expanduser().resolve())


_JOB_FILES = frozenset({"job.json", "job.log", "scores.parquet", "scores_targets.json"})


def store_data(path: Path, root: Path) -> bool:
    """True if writing ``path`` would replace the store's own data: the ledger, a bundle, a
    job file or a shard (plots and reports beside a job are fine)."""
    resolved, base = path.expanduser().resolve(), root.expanduser().resolve()
    if not resolved.is_relative_to(base):
        return False
    parts = resolved.relative_to(base).parts
    if len(parts) <= 2 or parts[0] != "jobs":
        return True  # the ledger, the lock, bundles/..., jobs/<file>, jobs/<job id> itself
    return parts[2] == "outputs" or (len(parts) == 3 and parts[2] in _JOB_FILES)


def _latest_job(store: Any) -> str:
    jobs = store.ledger.list_jobs()
    if not jobs:
        print("error: the store has no jobs", file=sys.stderr)
        raise typer.Exit(2)
    return str(max(jobs, key=lambda j: j.created_at).job_id)
