"""A calibration's pictures, drawn headless with matplotlib's Agg canvas (pyplot is never imported).

- :func:`draw_trace`: each evaluation's loss in the order asked, the best so far, and at the end
  the re-evaluated candidates, the answer with its ±2 SE bar.
- :func:`draw_losses`: the loss against each free parameter, failed points along the top, the
  answer marked.
- :func:`draw_posterior` (ABC-SMC only): a small corner plot, the weighted marginals of every
  population (earlier ones faint) with the 90% interval, and the last population's pairs.
- :func:`draw_predictive`: the model at the answer (or at posterior draws) over the observed
  data: mean and 5-95% band over replicates, one panel per target.

Each returns a figure (for a notebook); ``plot_*`` saves the same figure as a PNG file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops._output import write_output
from modelops.analysis._aggregate import reading_results
from modelops.analysis._plots import observed_dots
from modelops.analysis._score import scan_target
from modelops.analysis._targets import observed_numbers
from modelops.calibration._journal import param_columns
from modelops_contracts import ContractViolationError
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from modelops.analysis import Target
    from modelops.calibration._handle import Calibration
    from modelops.calibration._spec import CalibrationSpec
    from modelops.model import Parameter
    from modelops.store import ResultStore

__all__ = [
    "draw_losses",
    "draw_posterior",
    "draw_predictive",
    "draw_trace",
    "plot_losses",
    "plot_posterior",
    "plot_predictive",
    "plot_trace",
]

_BAND = (0.05, 0.95)
_ANSWER = "C3"
_MAX_BINS = 200  # histogram bins of a marginal, at most
_INT_BINS = 40  # an int parameter spanning at most this many values gets one bin per value


# -- the loss trace --------------------------------------------------------------------------


def plot_trace(cal: Calibration, path: Path | str) -> Path:
    """Save :func:`draw_trace` as PNG at ``path``."""
    return _save(draw_trace(cal), path)


def draw_trace(cal: Calibration) -> Figure:
    """Each evaluation's loss against the number of evaluations, and the re-evaluated answer.

    The dots are the search's losses (each the mean of R replicates, so partly luck); the step
    line is the best of them so far. Once the calibration has finished, the top candidates'
    re-evaluated losses (new replicates) stand at the right, each joined by a faint line to its
    search loss, and the answer (the best re-evaluated) is a star with its ±2 SE bar.

    Raises:
        ContractViolationError: the calibration has no evaluations yet.
    """
    import numpy as np

    spec = cal.spec
    table = _evaluations(cal)
    losses = _losses(table)
    order = np.arange(1, len(losses) + 1, dtype=np.float64)
    scored = ~np.isnan(losses)
    figure = _figure(8.0, 4.5)
    axes = figure.add_subplot()
    axes.scatter(
        order[scored],
        losses[scored],
        s=12,
        alpha=0.6,
        color="C0",
        label=f"evaluation (search, {spec.replicates} replicates)",
    )
    _failed(axes, order[~scored])
    axes.plot(
        order,
        np.fmin.accumulate(losses),
        drawstyle="steps-post",
        color="C1",
        linewidth=1.5,
        label="best so far (search)",
    )
    shown = list(losses[scored])
    best = cal.best
    if best is not None:
        shown += _reevaluated(axes, best, table, len(losses))
    _loss_scale(axes, shown)
    axes.set_xlabel("evaluations")
    axes.set_ylabel("loss")
    axes.set_title(f"loss trace ({spec.algorithm})\ncalibration {cal.calibration_id}")
    _legend(axes)
    return figure


def _reevaluated(
    axes: Axes, best: Mapping[str, Any], table: pl.DataFrame, count: int
) -> list[float]:
    """Draw the re-evaluated candidates right of the search; the losses drawn."""
    at = count + max(1.0, 0.04 * count)
    where = {
        (g, p): i + 1
        for i, (g, p) in enumerate(zip(table["generation"], table["point"], strict=True))
    }
    axes.axvline(count + 0.5, color="grey", linewidth=0.8, linestyle=":")
    axes.text(
        at,
        1.0,
        "re-evaluated",
        transform=axes.get_xaxis_transform(),
        ha="center",
        va="bottom",
        fontsize="small",
    )
    candidates = [c for c in best["candidates"] if c.get("loss") is not None]
    for candidate in candidates:
        asked = where.get((candidate["generation"], candidate["point"]))
        if asked is not None and candidate.get("search_loss") is not None:
            axes.plot(
                [asked, at],
                [candidate["search_loss"], candidate["loss"]],
                color="grey",
                alpha=0.35,
                linewidth=0.8,
            )
    others = [c for c in candidates if c["param_id"] != best["param_id"]]
    if others:
        axes.errorbar(
            [at] * len(others),
            [c["loss"] for c in others],
            yerr=[2.0 * (c.get("loss_se") or 0.0) for c in others],
            fmt="o",
            mfc="none",
            color="C2",
            capsize=3,
            label="re-evaluated candidates (±2 SE)",
        )
    se = best.get("loss_se")
    axes.errorbar(
        [at],
        [best["loss"]],
        yerr=None if se is None else [2.0 * se],
        fmt="*",
        markersize=13,
        color=_ANSWER,
        capsize=4,
        zorder=4,
        label=f"answer: re-evaluated best, {best['n_replicates']} new replicates (±2 SE)",
    )
    return [float(c["loss"]) for c in candidates]


# -- loss against each parameter -------------------------------------------------------------


def plot_losses(cal: Calibration, path: Path | str) -> Path:
    """Save :func:`draw_losses` as PNG at ``path``."""
    return _save(draw_losses(cal), path)


def draw_losses(cal: Calibration) -> Figure:
    """The search's loss against each free parameter, one panel each.

    Points are coloured by the order asked (dark first); a log-scale parameter gets a log x
    axis over its range. Points without a loss (failed replicates, missing observed points) are
    crosses along the top. The answer is a dashed line at its value, and a star at its
    re-evaluated loss.

    Raises:
        ContractViolationError: the calibration has no evaluations yet.
    """
    import numpy as np
    import polars as pl

    spec = cal.spec
    table = _evaluations(cal)
    losses = _losses(table)
    scored = ~np.isnan(losses)
    order = np.arange(len(losses))
    parameters = spec.space.parameters
    columns = param_columns(spec.space.names)
    best = cal.best
    figure = _figure(4.0 * len(parameters), 4.0)
    for index, parameter in enumerate(parameters):
        axes = figure.add_subplot(1, len(parameters), index + 1)
        values = table[columns[parameter.name]].cast(pl.Float64).to_numpy()
        axes.scatter(
            values[scored],
            losses[scored],
            c=order[scored],
            cmap="viridis",
            vmin=0,
            vmax=max(len(losses) - 1, 1),
            s=14,
            label="evaluation (colour: order asked)",
        )
        _failed(axes, values[~scored])
        if best is not None:
            value = float(best["params"][parameter.name])
            axes.axvline(value, color=_ANSWER, linestyle="--", linewidth=1.0)
            axes.scatter(
                [value],
                [best["loss"]],
                marker="*",
                s=160,
                color=_ANSWER,
                zorder=4,
                label="answer (re-evaluated)",
            )
        _range(axes, parameter, "x")
        _loss_scale(axes, [*losses[scored], *([best["loss"]] if best is not None else [])])
        axes.set_xlabel(parameter.name + (" (log scale)" if parameter.log else ""))
        axes.set_ylabel("loss" if index == 0 else "")
    _legend(figure.axes[0])
    _title(figure, "loss against each free parameter", cal.calibration_id)
    return figure


# -- the posterior (ABC-SMC) -----------------------------------------------------------------


def plot_posterior(cal: Calibration, path: Path | str) -> Path:
    """Save :func:`draw_posterior` as PNG at ``path``.

    Raises:
        ContractViolationError: not an abc-smc calibration, or no population is complete yet.
    """
    return _save(draw_posterior(cal), path)


def draw_posterior(cal: Calibration) -> Figure:
    """A corner plot of the posterior: marginals on the diagonal, pairs below it.

    Each diagonal panel holds the weighted histogram of one free parameter (probability per
    bin, bins over its whole prior range) for every complete population, the earlier ones faint
    outlines, the last one filled, with its 90% interval (weighted 5% and 95% quantiles) as
    dashed lines. Each panel below the diagonal is the last population's particles for a pair of
    parameters, sized and coloured by weight.

    Raises:
        ContractViolationError: not an abc-smc calibration, or no population is complete yet.
    """
    import numpy as np
    import polars as pl

    spec = cal.spec
    if spec.algorithm != "abc-smc":
        raise ContractViolationError(
            f"calibration {cal.calibration_id} ({spec.algorithm}) has no posterior: only "
            "abc-smc calibrations do",
            field="algorithm",
        )
    table = cal.posterior()
    if table is None or table.is_empty():
        raise ContractViolationError(
            f"calibration {cal.calibration_id} has no complete population yet: run the same "
            "command again to resume it",
            field="posterior",
        )
    parameters = spec.space.parameters
    columns = param_columns(spec.space.names, posterior=True)
    summary = cal.posterior_summary() or {}
    populations = sorted(set(table["population"].to_list()))
    latest = table.filter(pl.col("population") == populations[-1])
    weights = _normalised(latest["weight"].to_numpy())
    count = len(parameters)
    side = max(2.8 * count, 4.5)
    figure = _figure(side, side)
    for row, across in enumerate(parameters):
        for col in range(row + 1):
            axes = figure.add_subplot(count, count, row * count + col + 1)
            if row == col:
                _marginal(axes, table, populations, columns[across.name], across)
                interval = summary.get(across.name)
                if interval is not None:
                    for key in ("q05", "q95"):
                        axes.axvline(
                            interval[key],
                            color=_ANSWER,
                            linestyle="--",
                            linewidth=1.0,
                            label="90% interval" if key == "q05" else None,
                        )
                axes.set_ylabel("weight per bin" if row == 0 else "")
            else:
                down = parameters[col]
                axes.scatter(
                    latest[columns[down.name]].cast(pl.Float64).to_numpy(),
                    latest[columns[across.name]].cast(pl.Float64).to_numpy(),
                    s=8.0 + 60.0 * weights / max(float(np.max(weights)), 1e-300),
                    c=weights,
                    cmap="viridis",
                    alpha=0.8,
                    edgecolors="none",
                )
                _range(axes, down, "x")
                _range(axes, across, "y")
                axes.set_ylabel(across.name if col == 0 else "")
            axes.set_xlabel(parameters[col].name if row == count - 1 else "")
    _legend(figure.axes[0])
    epsilon = float(latest["epsilon"][0])
    _title(
        figure,
        f"posterior: population {populations[-1]} of {len(populations)} "
        f"(epsilon {epsilon:.3g}, {latest.height} particles)",
        cal.calibration_id,
    )
    return figure


def _marginal(
    axes: Axes, table: pl.DataFrame, populations: list[int], column: str, parameter: Parameter
) -> None:
    """Weighted histograms of one parameter, one per population (the last one filled)."""
    import numpy as np
    import polars as pl

    edges = _edges(
        parameter,
        table[column].cast(pl.Float64).to_numpy(),
        table.filter(pl.col("population") == populations[-1])[column].cast(pl.Float64).to_numpy(),
    )
    for index, population in enumerate(populations):
        part = table.filter(pl.col("population") == population)
        heights, _ = np.histogram(
            part[column].cast(pl.Float64).to_numpy(),
            bins=edges,
            weights=_normalised(part["weight"].to_numpy()),
        )
        if population == populations[-1]:
            axes.stairs(
                heights, edges, fill=True, alpha=0.55, color="C0", label=f"population {population}"
            )
        else:
            axes.stairs(
                heights,
                edges,
                color="grey",
                alpha=0.3 + 0.4 * index / len(populations),
                linewidth=1.0,
                label="earlier populations" if index == 0 else None,
            )
    _range(axes, parameter, "x")


def _edges(parameter: Parameter, every: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Bin edges covering every population, as fine as the last one needs.

    The last population's spread is cut into about ``2 * sqrt(particles)`` bins (8 to 30),
    and bins of that width (in log space for a log-scale parameter) are laid over the values of
    all populations, at most :data:`_MAX_BINS` of them. An int parameter spanning few values
    gets one bin per value.
    """
    import math

    import numpy as np

    if parameter.kind == "int" and float(every.max() - every.min()) < _INT_BINS:
        return np.arange(float(every.min()) - 0.5, float(every.max()) + 1.0)
    into = np.log if parameter.log else np.asarray
    low, high = float(np.min(into(every))), float(np.max(into(every)))
    first, end = float(np.min(into(last))), float(np.max(into(last)))
    per = min(30, max(8, round(2 * math.sqrt(len(last)))))
    width = (end - first) / per or (high - low) / per or 1.0
    width = max(width, (high - low) / _MAX_BINS)
    start = first - math.ceil((first - low) / width) * width
    count = max(1, math.ceil((high - start) / width))
    edges = start + width * np.arange(count + 1)
    if parameter.log:
        edges = np.exp(edges)
    lower, upper = float(parameter.lower), float(parameter.upper)
    if edges[0] < lower < edges[1]:  # the outer bins end at the prior's bounds
        edges[0] = lower
    if edges[-2] < upper < edges[-1]:
        edges[-1] = upper
    return edges


# -- the predictive check --------------------------------------------------------------------


def plot_predictive(cal: Calibration, path: Path | str, *, target: str | None = None) -> Path:
    """Save :func:`draw_predictive` as PNG at ``path``.

    Raises:
        ContractViolationError: see :func:`draw_predictive`.
        StoreError: the predictive job's results are missing.
    """
    return _save(draw_predictive(cal, target=target), path)


def draw_predictive(cal: Calibration, target: str | None = None) -> Figure:
    """The predictive check: the model at the answer, or at posterior draws, over the data.

    An optimizer's check is the answer's re-evaluation (its new replicates only); an ABC-SMC
    calibration's is its job of posterior draws × R replicates, pooled into one band. Each
    target with one ``on`` column gets a panel of the simulated mean and 5-95% band over those
    replicates against that column, with the observed data as dots; a scalar target (no ``on``
    column) a panel of the simulated values' histogram with the observed value as a line.
    Targets joined on several columns are not drawn. ``target`` names the one to draw (default:
    all).

    Raises:
        ContractViolationError: the calibration has not finished, ``target`` names no target of
            it, no target can be drawn, or a target's observed data cannot be read.
        StoreError: the predictive job's results are missing or unreadable.
    """
    import polars as pl

    from modelops.store import open_existing_store

    spec = cal.spec
    record = cal.journal.record()
    result = record.get("result")
    best = cal.best
    if record.get("status") != "finished" or not isinstance(result, dict) or best is None:
        raise ContractViolationError(
            f"calibration {cal.calibration_id} has not finished: its predictive check runs at "
            "the end (run the same command again to resume it)",
            field="status",
        )
    job_id = str(result["predictive_job_id"])
    chosen = _drawable(spec, target, cal.calibration_id)
    pooled = spec.algorithm == "abc-smc" and job_id != result.get("reeval_job_id")
    where = (
        None
        if pooled
        else (pl.col("param_id") == best["param_id"]) & (pl.col("replicate") >= spec.replicates)
    )
    with open_existing_store(cal.store) as store:
        frames = [_simulated(store, job_id, t, where) for t in chosen]
    figure = _figure(sum(5.0 if t.on else 3.0 for t in chosen), 4.0)
    grid = figure.add_gridspec(1, len(chosen), width_ratios=[2 if t.on else 1 for t in chosen])
    for index, (t, frame) in enumerate(zip(chosen, frames, strict=True)):
        axes = figure.add_subplot(grid[0, index])
        if t.on:
            _band(axes, t, frame, pooled)
        else:
            _scalar(axes, t, frame)
        axes.set_title(f"{t.name}: {t.output}.{t.value}", fontsize="medium")
        _legend(axes)
    sets = max(max(frame["sets"].to_list(), default=0) for frame in frames)
    if pooled:
        what = f"{sets} posterior draws × {spec.replicates} replicates"
    else:
        what = f"the answer on {spec.reeval_replicates} new replicates"
    _title(figure, f"predictive check: {what}", f"{cal.calibration_id}, job {job_id}")
    return figure


def _drawable(spec: CalibrationSpec, name: str | None, calibration_id: str) -> list[Target]:
    """The targets the predictive check draws: ``name``'s, or all, less multi-column joins."""
    targets = list(spec.targets)
    if name is not None:
        targets = [t for t in targets if t.name == name]
        if not targets:
            known = ", ".join(t.name for t in spec.targets)
            raise ContractViolationError(
                f"calibration {calibration_id} has no target {name!r}; its targets: {known}",
                field="target",
            )
    drawable = [t for t in targets if len(t.on) <= 1]
    if not drawable:
        raise ContractViolationError(
            f"calibration {calibration_id}: the predictive check draws targets with one 'on' "
            f"column or none, and {', '.join(t.name for t in targets)} join on several",
            field="target",
        )
    return drawable


def _simulated(
    store: ResultStore, job_id: str, target: Target, where: pl.Expr | None
) -> pl.DataFrame:
    """The target's simulated column over the chosen replicates of the predictive job.

    With an ``on`` column: one row per value of it, with ``mean``, ``q05``, ``q95``, ``n``
    (replicates) and ``sets`` (parameter sets); without: every simulated ``value`` and ``sets``.

    Raises:
        ContractViolationError: the output lacks a column the target names.
        StoreError: the job has no results for the output (or none of the chosen replicates).
    """
    import polars as pl

    lazy, _ = scan_target(store, job_id, target)
    if where is not None:
        lazy = lazy.filter(where)
    value = pl.col(target.value).cast(pl.Float64)
    sets = pl.col("param_id").n_unique().alias("sets")
    if target.on:
        x = target.on[0]
        query = (
            lazy.filter(pl.col(x).is_not_null())
            .group_by(x)
            .agg(
                value.mean().alias("mean"),
                *(
                    value.quantile(q, interpolation="linear").alias(f"q{q * 100:02.0f}")
                    for q in _BAND
                ),
                pl.col("task_id").n_unique().alias("n"),
                sets,
            )
            .sort(x)
        )
    else:
        query = lazy.select(value.alias("value"), sets)
    with reading_results(job_id, target.output):
        frame = query.collect(engine="streaming")
    if frame.is_empty():
        raise StoreError(
            f"job {job_id} has no results of output {target.output!r} for the predictive check",
            hint=f"`mops status {job_id}` and `mops failures {job_id}` tell why",
        )
    return frame


def _band(axes: Axes, target: Target, frame: pl.DataFrame, pooled: bool) -> None:
    """The simulated mean and 5-95% band against the ``on`` column, the observed data as dots."""
    x = target.on[0]
    xs = frame[x].to_numpy()
    axes.plot(xs, frame["mean"].to_numpy(), color="C0", linewidth=1.5, label="simulated mean")
    over = "posterior draws × replicates" if pooled else "replicates"
    axes.fill_between(
        xs,
        frame["q05"].to_numpy(),
        frame["q95"].to_numpy(),
        color="C0",
        alpha=0.25,
        linewidth=0,
        label=f"5-95% over {over}",
    )
    observed_dots(axes, target, x, label="observed", size=14)
    axes.set_xlabel(x)
    axes.set_ylabel(target.value)


def _scalar(axes: Axes, target: Target, frame: pl.DataFrame) -> None:
    """A scalar target: the simulated values' histogram and the observed value."""
    values = frame["value"].drop_nulls().to_numpy()
    axes.hist(
        values, bins=max(5, min(20, len(values) // 2)), color="C0", alpha=0.6, label="simulated"
    )
    observed = target.read_observed()
    axes.axvline(
        float(observed_numbers(observed, target.observed, target)[0]),
        color="black",
        linewidth=2.0,
        label="observed",
    )
    axes.set_xlabel(target.value)


# -- helpers ---------------------------------------------------------------------------------


def _evaluations(cal: Calibration) -> pl.DataFrame:
    """The calibration's evaluations table, refused when it is empty."""
    table = cal.evaluations()
    if table.is_empty():
        raise ContractViolationError(
            f"calibration {cal.calibration_id} has no evaluations yet", field="evaluations"
        )
    return table


def _losses(table: pl.DataFrame) -> np.ndarray:
    """The loss column as floats, NaN where there is no loss."""
    import polars as pl

    return table["loss"].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _normalised(weights: np.ndarray) -> np.ndarray:
    import numpy as np

    weights = np.asarray(weights, dtype=np.float64)
    total = float(weights.sum())
    return weights / total if total > 0 else np.full(len(weights), 1.0 / max(len(weights), 1))


def _failed(axes: Axes, xs: np.ndarray) -> None:
    """Points without a loss as crosses along the top of the panel."""
    import numpy as np

    if len(xs):
        axes.scatter(
            xs,
            np.ones(len(xs)),
            transform=axes.get_xaxis_transform(),
            marker="x",
            color="black",
            clip_on=False,
            zorder=4,
            label="failed or not scored (along the top)",
        )


def _range(axes: Axes, parameter: Parameter, which: str) -> None:
    """An axis over the parameter's whole range, log-scaled for a log-scale parameter."""
    low, high = float(parameter.lower), float(parameter.upper)
    if parameter.kind == "int":
        limits = (low - 0.5, high + 0.5)
    elif parameter.log:
        pad = (high / low) ** 0.03
        limits = (low / pad, high * pad)
    else:
        pad = 0.03 * (high - low) or 0.5
        limits = (low - pad, high + pad)
    if which == "x":
        if parameter.log:
            axes.set_xscale("log")
        axes.set_xlim(*limits)
    else:
        if parameter.log:
            axes.set_yscale("log")
        axes.set_ylim(*limits)


def _loss_scale(axes: Axes, losses: Sequence[float]) -> None:
    """A log y axis when every loss is positive and they span more than a factor of 30."""
    finite = [v for v in losses if v == v and abs(v) != float("inf")]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 30:
        axes.set_yscale("log")


def _title(figure: Figure, text: str, calibration: str) -> None:
    """The figure's title, and on a second line the calibration it shows (long ids fit)."""
    figure.suptitle(f"{text}\ncalibration {calibration}", fontsize="medium")


def _legend(axes: Axes) -> None:
    """A legend, when something labelled was drawn (matplotlib warns about an empty one)."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(max(width, 6.0), height), dpi=100, layout="constrained")


def _save(figure: Figure, path: Path | str) -> Path:
    return write_output(path, lambda dest: figure.savefig(dest, format="png"))
