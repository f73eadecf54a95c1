"""PNG plots drawn headless with matplotlib's Agg canvas (pyplot is never imported).

- :func:`plot_output`: mean and 5-95% band of one output column against another, one line
  per parameter set (the best ``best`` by loss when the job was scored), with the observed
  data of a matching target overlaid.
- :func:`plot_loss`: the total loss against each parameter, failed parameter sets marked.

:func:`draw_output` and :func:`draw_loss` return the same figures unsaved (for a notebook).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops._output import write_output
from modelops.analysis._aggregate import aggregate, reading_results
from modelops.analysis._score import load_scored_targets, load_scores, observed_numbers
from modelops.analysis._targets import Target
from modelops.model import KEY_COLUMNS
from modelops.store import read_job, resolve_job
from modelops_contracts import ContractViolationError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from modelops.store import JobLike, ResultStore

__all__ = ["draw_loss", "draw_output", "observed_dots", "plot_loss", "plot_output"]

_BAND = (0.05, 0.95)


def plot_output(
    job: JobLike | str,
    output: str,
    x: str,
    y: str,
    path: Path | str,
    *,
    store: ResultStore | Path | str | None = None,
    best: int = 5,
    targets: Sequence[Target] | None = None,
) -> Path:
    """Draw ``y`` against ``x`` (see :func:`draw_output`) and save it as PNG at ``path``.

    Raises:
        ContractViolationError: ``x`` or ``y`` is not a column of ``output``.
        StoreError: unknown job or output.
    """
    figure = draw_output(job, output, x, y, store=store, best=best, targets=targets)
    return _save(figure, path)


def draw_output(
    job: JobLike | str,
    output: str,
    x: str,
    y: str,
    *,
    store: ResultStore | Path | str | None = None,
    best: int = 5,
    targets: Sequence[Target] | None = None,
) -> Figure:
    """The figure of ``y`` against ``x``: mean and 5-95% band over replicates per set.

    Without scores every parameter set is drawn; with scores (see :func:`score`) the ``best``
    lowest-loss ones. Each line is labelled with its parameter values (``#rank`` first when
    scored). Observed data is overlaid from a target on ``output`` whose value is ``y`` (from
    ``targets``, or those the job was last scored against).

    Raises:
        ContractViolationError: ``x`` or ``y`` is not a column of ``output``, ``x`` is a
            parameter or key column, or ``x`` is ``y``.
        StoreError: unknown job or output.
    """
    import polars as pl

    result_store, job_id = resolve_job(job, store)
    sim_job = read_job(result_store, job_id)
    _check_axes(x, y, sim_job.parameter_names())
    frame = aggregate(job_id, output, [x], store=result_store, quantiles=_BAND, columns=[y]).filter(
        pl.col(x).is_not_null()
    )
    scores = load_scores(result_store, job_id)
    chosen = (
        scores["param_id"].head(best).to_list()
        if scores is not None
        else frame["param_id"].unique(maintain_order=True).to_list()
    )
    sets = sim_job.parameter_sets()
    figure = _figure()
    axes = figure.add_subplot()
    for rank, pid in enumerate(chosen):
        rows = frame.filter(pl.col("param_id") == pid).sort(x)
        if rows.is_empty():
            continue
        label = _label(sets[pid].params) if pid in sets else pid[:12]
        if scores is not None:
            label = f"#{rank + 1} {label}"
        xs = rows[x].to_numpy()
        (line,) = axes.plot(xs, rows[f"{y}_mean"].to_numpy(), label=label, linewidth=1.5)
        axes.fill_between(
            xs,
            rows[f"{y}_q05"].to_numpy(),
            rows[f"{y}_q95"].to_numpy(),
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
        )
    overlays = targets if targets is not None else load_scored_targets(result_store, job_id)
    _check_targets(result_store, job_id, output, overlays)
    for target in overlays:
        if target.output == output and target.value == y and list(target.on) == [x]:
            observed_dots(axes, target, x, label=f"observed ({target.name})", size=10)
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_title(f"{output}: {y} (mean and 5-95% band over replicates)")
    _legend(axes)
    return figure


def observed_dots(axes: Axes, target: Target, x: str, *, label: str, size: float) -> None:
    """A target's observed values as black dots against its ``on`` column ``x``.

    Raises:
        ContractViolationError: the observed data is unreadable or not numbers.
    """
    observed = target.read_observed().sort(x)
    axes.scatter(
        observed[x].to_numpy(),
        observed_numbers(observed, target.observed, target),
        s=size,
        color="black",
        zorder=3,
        label=label,
    )


def _check_targets(store: ResultStore, job_id: str, output: str, targets: Sequence[Target]) -> None:
    """Refuse a target on ``output`` that names columns the output does not have."""
    mine = [t for t in targets if t.output == output]
    if not mine:
        return
    with reading_results(job_id, output):
        columns = store.scan_results(job_id, output).collect_schema().names()
    for target in mine:
        missing = [c for c in (*target.on, target.value) if c not in columns]
        if missing:
            raise ContractViolationError(
                f"target {target.name!r}: output {output!r} has no column(s) {', '.join(missing)}"
            )


def _check_axes(x: str, y: str, params: Sequence[str]) -> None:
    """Refuse an x axis that is constant within a parameter set, and y equal to x."""
    if x in params or x in KEY_COLUMNS:
        kind = "a parameter" if x in params else "a key column"
        raise ContractViolationError(
            f"cannot plot against {x!r}: it is {kind}, constant along each line (one line per "
            "parameter set); use a column that varies within a run, such as a time column, or "
            "the loss plot to see parameters",
            field="x",
        )
    if x == y:
        raise ContractViolationError(f"cannot plot {y!r} against itself", field="y")


def plot_loss(
    job: JobLike | str, path: Path | str, *, store: ResultStore | Path | str | None = None
) -> Path:
    """Draw the loss plot (see :func:`draw_loss`) and save it as PNG at ``path``.

    Raises:
        ContractViolationError: the job has not been scored, or has no numeric parameters.
    """
    return _save(draw_loss(job, store=store), path)


def draw_loss(job: JobLike | str, *, store: ResultStore | Path | str | None = None) -> Figure:
    """The figure of the total loss against each numeric parameter (failed sets as crosses).

    Sets without a total loss (missing points, failed replicates) are left out.

    Raises:
        ContractViolationError: the job has not been scored, or has no numeric parameters.
    """
    result_store, job_id = resolve_job(job, store)
    scores = load_scores(result_store, job_id)
    if scores is None:
        raise ContractViolationError(
            f"job {job_id} has no scores yet: score it first", field="scores"
        )
    declared = read_job(result_store, job_id).parameter_names()
    names = [c for c in declared if c in scores.schema and scores.schema[c].is_numeric()]
    if not names:
        raise ContractViolationError(f"job {job_id} has no numeric parameters to plot")
    scored = scores.filter(scores["loss"].is_not_null())
    figure = _figure(width=4.0 * len(names))
    positive = bool(scored.height) and bool((scored["loss"] > 0).all())
    for index, name in enumerate(names):
        axes = figure.add_subplot(1, len(names), index + 1)
        for failed, marker in ((False, "o"), (True, "x")):
            part = scored.filter(scored["failed"] == failed)
            if part.height:
                axes.scatter(
                    part[name].to_numpy(),
                    part["loss"].to_numpy(),
                    marker=marker,
                    label="failed replicates" if failed else "complete",
                )
        if positive:
            axes.set_yscale("log")
        axes.set_xlabel(name)
        axes.set_ylabel("loss" if index == 0 else "")
    _legend(figure.axes[0])
    figure.suptitle(f"job {job_id}: weighted loss against each parameter")
    return figure


def _label(params: Mapping[str, Any]) -> str:
    parts = (f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return ", ".join(parts)


def _legend(axes: Axes) -> None:
    """A legend, when something was drawn (matplotlib warns about an empty one)."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")


def _figure(width: float = 8.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(max(width, 6.0), 4.5), dpi=100, layout="constrained")


def _save(figure: Figure, path: Path | str) -> Path:
    return write_output(path, lambda dest: figure.savefig(dest, format="png"))
