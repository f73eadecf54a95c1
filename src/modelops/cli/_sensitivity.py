"""``mops sensitivity``: which parameters drive an output of a design job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelops._output import write_output
from modelops.cli._app import command, fail
from modelops.cli._jobs import store_data
from modelops.cli._options import StoreOption
from modelops_contracts.errors import ModelOpsError

if TYPE_CHECKING:
    from modelops.sensitivity import SensitivityResult

_FORMATS = (".json", ".csv", ".parquet", ".png")
_SHOWN_ROWS = 40


@command("sensitivity")
def sensitivity_command(
    job: Annotated[str, typer.Argument(help="Job id of a saltelli or morris design.")],
    output: Annotated[str | None, typer.Argument(help="Output to analyse.")] = None,
    value: Annotated[
        str | None, typer.Option("--value", help="The output's column to analyse.")
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Indices per value of this column, e.g. day (repeat)."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option("--method", help="sobol or morris [default: the design's own]."),
    ] = None,
    loss: Annotated[
        bool, typer.Option("--loss", help="Analyse the scored total loss instead of OUTPUT.")
    ] = False,
    resamples: Annotated[
        int, typer.Option("--resamples", min=2, help="Bootstrap resamples for the intervals.")
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    out_file: Annotated[
        Path | None,
        typer.Option("-o", "--output-file", help="Also write: .json, .csv, .parquet or .png."),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Sobol' indices (S1, ST, with bootstrap intervals) or Morris effects (mu*, sigma) of
    --value in OUTPUT, computed on each parameter set's replicate mean, with the share of the
    variance that is replicate noise. Reads results only; never runs a simulation.

    The analysis and its picture are kept beside the job; `mops report JOB` shows them.
    """
    from modelops.sensitivity import compute_indices
    from modelops.sensitivity._saved import save_analysis
    from modelops.store import resolve_job

    if loss and (output is not None or value is not None or by):
        raise fail("--loss analyses the scored total loss: give no OUTPUT, --value or --by")
    if not loss and (output is None or value is None):
        raise fail("sensitivity needs OUTPUT --value COLUMN (or --loss)")
    if out_file is not None and out_file.suffix.lower() not in _FORMATS:
        raise fail(f"-o {out_file}: the file must end in {', '.join(_FORMATS)}")
    result_store, job_id = resolve_job(job, store)
    if out_file is not None and store_data(out_file, result_store.root):
        raise fail(f"-o {out_file} would overwrite the store's own data in {result_store.root}")
    result = compute_indices(
        job_id,
        output,
        value=value,
        by=by or (),
        method=method,
        loss=loss,
        store=result_store,
        resamples=resamples,
    )
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if out_file is not None:
        _write(result, out_file)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    else:
        for line in _lines(result):
            typer.echo(line)
    try:  # kept for mops report; a read-only store still answers
        _, picture = save_analysis(result, result_store)
    except ModelOpsError as err:
        typer.echo(f"warning: the analysis is not kept beside the job: {err}", err=True)
        return
    if not as_json:
        typer.echo(f"wrote {picture}" + (f" and {out_file}" if out_file is not None else ""))


def _write(result: SensitivityResult, path: Path) -> None:
    from modelops.sensitivity._plots import plot_sensitivity

    suffix = path.suffix.lower()
    if suffix == ".png":
        plot_sensitivity(result, path)
    elif suffix == ".json":
        text = json.dumps(result.to_json(), indent=2) + "\n"
        write_output(path, lambda target: target.write_text(text, encoding="utf-8"))
    elif suffix == ".csv":
        write_output(path, lambda target: result.table().write_csv(target))
    else:
        write_output(path, lambda target: result.table().write_parquet(target))


def _lines(result: SensitivityResult) -> list[str]:
    import polars as pl

    what = f"{result.value} of {result.output}" if result.output else "the total loss"
    size = f"N={result.n}" if result.method == "sobol" else f"{result.n} trajectories"
    kind = "Sobol' indices" if result.method == "sobol" else "Morris elementary effects"
    lines = [f"{kind} of {what}, job {result.job_id} ({size})"]
    table = result.table()
    if not result.by:
        noise = result.groups[0].noise_fraction
        if result.output is None:
            lines.append("replicate noise: none (the loss is one number per parameter set)")
        elif noise is None:
            lines.append("replicate noise: unknown (one replicate per parameter set)")
        else:
            lines.append(f"replicate noise: {noise:.1%} of the variance")
        table = table.drop("noise_fraction")
    with pl.Config(
        tbl_rows=_SHOWN_ROWS, tbl_cols=-1, float_precision=4, tbl_hide_dataframe_shape=True
    ):
        lines.append(str(table))
    if table.height > _SHOWN_ROWS:
        lines.append(f"({table.height} rows; --json or -o FILE.csv for all of them)")
    return lines
