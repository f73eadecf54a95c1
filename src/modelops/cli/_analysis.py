"""Commands that read a job's results as a modeller would: score, plot, report (also of a
calibration)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from modelops.cli._app import command, fail
from modelops.cli._jobs import store_data
from modelops.cli._options import StoreOption
from modelops_contracts.errors import ContractViolationError, StoreError

_CALIBRATION_ID = re.compile(r"cal-[0-9a-f]{16}")
"""A calibration id. Compiled jobs are named ``job-`` + hex, but ``--job-id`` may name a job
anything, so an id of this shape is a calibration's only if the store holds one."""

_HTML = frozenset({".html", ".htm"})  # what -o may write beside a journal


@command("score")
def score_command(
    job: Annotated[str, typer.Argument(help="Job id.")],
    targets: Annotated[
        Path | None,
        typer.Option("--targets", help="Targets file [default: the targets last scored]."),
    ] = None,
    store: StoreOption = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Print the best N rows.")] = 20,
) -> None:
    """Score every parameter set against observed data; write and print the loss table."""
    import polars as pl

    from modelops.analysis import load_targets, score
    from modelops.analysis._score import SCORES_FILE, load_scored_targets
    from modelops.store import resolve_job

    result_store, job_id = resolve_job(job, store)
    chosen = load_targets(targets) if targets else load_scored_targets(result_store, job_id)
    if not chosen:
        raise fail(f"job {job_id} has no targets yet: pass --targets FILE")
    table = score(job_id, chosen, store=result_store)
    with pl.Config(tbl_rows=top, tbl_cols=-1, fmt_str_lengths=14, tbl_width_chars=160):
        typer.echo(str(table.drop("param_id").head(top)))
    flagged = int(table["failed"].sum())
    if flagged:
        typer.echo(f"{flagged} parameter set(s) have failed replicates (failed = true)")
    missing = int((table["missing_points"] > 0).sum())
    if missing:
        typer.echo(
            f"{missing} parameter set(s) have missing points: observed points no replicate "
            "simulated (missing_points > 0); their loss is null and they sort last"
        )
    typer.echo(f"wrote {result_store.job_dir(job_id) / SCORES_FILE}")


@command("plot")
def plot_command(
    job: Annotated[str, typer.Argument(help="Job id.")],
    output: Annotated[str | None, typer.Argument(help="Output to draw.")] = None,
    x: Annotated[str | None, typer.Option("--x", help="Column on the x axis.")] = None,
    y: Annotated[str | None, typer.Option("--y", help="Column on the y axis.")] = None,
    loss: Annotated[
        bool, typer.Option("--loss", help="Draw the loss against each parameter.")
    ] = False,
    best: Annotated[
        int, typer.Option("--best", min=1, help="Parameter sets to draw when scored.")
    ] = 5,
    targets: Annotated[
        Path | None, typer.Option("--targets", help="Targets file for the observed overlay.")
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("-o", "--output-file", help="PNG file to write.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Draw OUTPUT's --y against --x (mean and 5-95% band), or with --loss the loss plot."""
    from modelops.analysis import load_targets, plot_loss, plot_output
    from modelops.store import resolve_job

    result_store, job_id = resolve_job(job, store)
    _check_out_file(out_file, result_store.root)
    plots = result_store.job_dir(job_id) / "plots"
    if loss:
        if output is not None:
            raise fail("give either OUTPUT with --x and --y, or --loss")
        try:
            path = plot_loss(job_id, out_file or plots / "loss.png", store=result_store)
        except ContractViolationError as err:
            if err.field != "scores":
                raise
            raise fail(f"{err} (run 'mops score {job_id}')") from None
    else:
        if output is None or x is None or y is None:
            raise fail("plot needs OUTPUT --x COLUMN --y COLUMN (or --loss)")
        path = plot_output(
            job_id,
            output,
            x,
            y,
            out_file or plots / f"{output}-{y}.png",
            store=result_store,
            best=best,
            targets=load_targets(targets) if targets else None,
        )
    typer.echo(f"wrote {path}")


@command("report")
def report_command(
    job: Annotated[str, typer.Argument(metavar="ID", help="Job id, or calibration id (cal-...).")],
    out_file: Annotated[
        Path | None, typer.Option("-o", "--output-file", help="HTML file to write.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Write one self-contained HTML page of a job (summary, counts, failures, losses, plots,
    sensitivity analyses) or of a calibration (inputs, answer, posterior, figures)."""
    from modelops.analysis import write_report
    from modelops.sensitivity import report_section
    from modelops.store import resolve_job

    if _CALIBRATION_ID.fullmatch(job) and _report_calibration(job, out_file, store):
        return
    result_store, job_id = resolve_job(job, store)
    _check_out_file(out_file, result_store.root)
    sections = [report_section(result_store, job_id)]
    typer.echo(f"wrote {write_report(job_id, out_file, store=result_store, sections=sections)}")


def _report_calibration(calibration_id: str, out_file: Path | None, store: Path | None) -> bool:
    """Write the calibration's report; False if the store has no such calibration but a job.

    Raises:
        StoreError: neither a calibration nor a job of that id is in the store.
    """
    from modelops.calibration import open_calibration, write_calibration_report
    from modelops.store import open_existing_store

    try:
        handle = open_calibration(calibration_id, store=store)
    except StoreError as missing:
        try:
            with open_existing_store(store) as result_store:
                if result_store.ledger.get_job(calibration_id) is not None:
                    return False
        except StoreError:
            pass
        raise missing from None
    if out_file is not None and _journal_data(out_file, handle.store):
        raise fail(f"-o {out_file} would overwrite the store's own data in {handle.store}")
    typer.echo(f"wrote {write_calibration_report(handle, out_file)}")
    return True


def _journal_data(out_file: Path, root: Path) -> bool:
    """True if writing ``out_file`` would replace store data; an HTML file directly in a
    calibration's directory (beside its journal, whose files are JSON and Parquet) is fine."""
    resolved, base = out_file.expanduser().resolve(), root.expanduser().resolve()
    if resolved.is_relative_to(base):
        parts = resolved.relative_to(base).parts
        if len(parts) == 3 and parts[0] == "calibrations" and resolved.suffix in _HTML:
            return False
    return store_data(out_file, root)


def _check_out_file(out_file: Path | None, root: Path) -> None:
    if out_file is not None and store_data(out_file, root):
        raise fail(f"-o {out_file} would overwrite the store's own data in {root}")
