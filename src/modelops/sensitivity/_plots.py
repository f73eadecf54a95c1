"""A sensitivity analysis's pictures, drawn headless with matplotlib's Agg canvas (no pyplot).

- One group (no ``by``): Sobol' S1 and ST as bars with their intervals, and for a
  second-order design the S2 matrix as an annotated heat map; Morris mu* as bars with its
  interval, and mu* against sigma (which parameters act through interactions or non-linearity).
- Several groups (``by``): each index against the group (its numeric ``by`` value, or its
  position labelled with the key), one line per parameter with a band of its interval.

Indices may be missing (``None`` or NaN) in some groups: those points are left as gaps.
:func:`draw_sensitivity` returns the figure (for a notebook); :func:`plot_sensitivity` saves it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops._output import write_output
from modelops.store._fs import atomic_write_bytes
from modelops_contracts import ContractViolationError

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from modelops.sensitivity._result import GroupIndices, SensitivityResult

__all__ = ["draw_sensitivity", "plot_sensitivity"]

_METHODS = {"sobol": "Sobol' indices", "morris": "Morris elementary effects"}
_MAX_TICK_LABELS = 30  # groups on the x axis beyond this get every k-th label only


def plot_sensitivity(result: SensitivityResult, path: Path | str) -> Path:
    """Save :func:`draw_sensitivity` as PNG at ``path`` (replaced atomically) and return it.

    Raises:
        ContractViolationError: see :func:`draw_sensitivity`.
        ModelOpsError: the file cannot be written.
    """
    figure = draw_sensitivity(result)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    figure.clear()  # not a pyplot figure: clearing frees its artists now
    data = buffer.getvalue()
    return write_output(path, lambda dest: atomic_write_bytes(dest, data))


def draw_sensitivity(result: SensitivityResult) -> Figure:
    """The figure of ``result``: bars for one group, indices against the group for ``by``.

    Raises:
        ContractViolationError: the method is neither ``sobol`` nor ``morris``, or the result
            has no group to draw.
    """
    if result.method not in _METHODS:
        raise ContractViolationError(
            f"cannot draw sensitivity method {result.method!r}: sobol or morris", field="method"
        )
    if not result.groups:
        raise ContractViolationError(
            f"sensitivity result of job {result.job_id} has no groups to draw", field="groups"
        )
    if result.by:
        figure = _over_groups(result)
    elif result.method == "sobol":
        figure = _sobol_bars(result)
    else:
        figure = _morris_bars(result)
    figure.suptitle(_title(result), fontsize="medium")
    return figure


def _title(result: SensitivityResult) -> str:
    """What the figure shows, e.g. ``attack_rate (summary): Sobol' indices, N=1024, noise 12%``."""
    subject = result.value if result.output is None else f"{result.value} ({result.output})"
    if result.by:
        subject += f" by {', '.join(result.by)}"
    size = f"N={result.n}" if result.method == "sobol" else f"{result.n} trajectories"
    parts = [_METHODS.get(result.method, result.method), size]
    noise = _noise_percent([g.noise_fraction for g in result.groups])
    if noise:
        parts.append(f"noise {noise}")
    return f"{subject}: {', '.join(parts)}"


def _noise_percent(fractions: Sequence[float | None]) -> str | None:
    """The noise fraction as ``12%`` (``3-12%`` over groups); ``None`` when none is known."""
    known = [f for f in (_number(v) for v in fractions) if math.isfinite(f)]
    if not known:
        return None
    low, high = _percent(min(known)), _percent(max(known))
    return low if low == high else f"{low[:-1]}-{high}"


# -- one group ----------------------------------------------------------------------------


def _sobol_bars(result: SensitivityResult) -> Figure:
    """S1 and ST bars side by side per parameter, and the S2 heat map when there is one."""
    import numpy as np

    group = result.groups[0]
    names = result.parameters
    panels = 2 if result.second_order else 1
    figure = _figure(panels * max(6.0, 1.1 * len(names) + 2.0), 4.5)
    axes = figure.add_subplot(1, panels, 1)
    where = np.arange(len(names), dtype=np.float64)
    width = 0.38
    for offset, index in ((-width / 2, "S1"), (width / 2, "ST")):
        axes.bar(
            where + offset,
            _column(group, names, index),
            width,
            yerr=np.abs(_column(group, names, f"{index}_conf")),
            capsize=3,
            label=index,
        )
    _bar_axes(axes, names, "index")
    _legend(axes)
    if result.second_order:
        _s2_map(figure.add_subplot(1, panels, 2), group, names)
    return figure


def _s2_map(axes: Axes, group: GroupIndices, names: Sequence[str]) -> None:
    """The second-order indices as a matrix over parameter pairs, each cell annotated."""
    import numpy as np

    matrix = np.full((len(names), len(names)), np.nan)
    for row, name in enumerate(names):
        pairs = group.indices[name].get("S2") or {}
        for col, other in enumerate(names):
            if other != name and other in pairs:
                matrix[row, col] = _number(pairs[other])
    finite = matrix[np.isfinite(matrix)]
    reach = float(np.max(np.abs(finite))) if finite.size else 0.0
    reach = reach or 1.0
    axes.imshow(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-reach, vmax=reach)
    for row in range(len(names)):
        for col in range(len(names)):
            value = matrix[row, col]
            if math.isfinite(value):
                ink = "white" if abs(value) > 0.6 * reach else "black"  # readable on dark cells
                axes.text(
                    col, row, f"{value:.2f}", ha="center", va="center", fontsize="small", color=ink
                )
    ticks = range(len(names))
    _ticks(axes, ticks, list(names), tilt=len(names) > 4)
    axes.set_yticks(ticks, labels=list(names))
    axes.set_title("S2 (second order)", fontsize="medium")


def _morris_bars(result: SensitivityResult) -> Figure:
    """mu* bars with their interval, and mu* against sigma labelled by parameter."""
    import numpy as np

    group = result.groups[0]
    names = result.parameters
    figure = _figure(2 * max(5.0, 0.8 * len(names) + 2.0), 4.5)
    bars = figure.add_subplot(1, 2, 1)
    mu_star = _column(group, names, "mu_star")
    bars.bar(
        np.arange(len(names), dtype=np.float64),
        mu_star,
        0.6,
        yerr=np.abs(_column(group, names, "mu_star_conf")),
        capsize=3,
        label="mu*",
    )
    _bar_axes(bars, names, "mu*")
    spread = figure.add_subplot(1, 2, 2)
    sigma = _column(group, names, "sigma")
    drawn = np.isfinite(mu_star) & np.isfinite(sigma)
    spread.scatter(mu_star[drawn], sigma[drawn], color="C0", zorder=3)
    for name, x, y in zip(names, mu_star, sigma, strict=True):
        if math.isfinite(x) and math.isfinite(y):
            spread.annotate(
                name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize="small"
            )
    spread.set_xlabel("mu*")
    spread.set_ylabel("sigma")
    spread.set_title("mu* against sigma", fontsize="medium")
    return figure


def _bar_axes(axes: Axes, names: Sequence[str], label: str) -> None:
    """Parameter names under the bars, a zero line and the y label."""
    axes.axhline(0.0, color="black", linewidth=0.8)
    _ticks(axes, range(len(names)), list(names), tilt=len(names) > 6)
    axes.set_ylabel(label)


# -- several groups -------------------------------------------------------------------------


def _over_groups(result: SensitivityResult) -> Figure:
    """Each main index against the group, one line per parameter with a band of its interval."""
    import numpy as np

    xs, labels, axis = _group_axis(result)
    order = np.argsort(xs, kind="stable")
    groups = [result.groups[i] for i in order]
    xs = xs[order]
    labels = [labels[i] for i in order] if labels else []
    panels = ("S1", "ST") if result.method == "sobol" else ("mu_star",)
    figure = _figure(8.0, 3.2 * len(panels) + 1.0)
    first: Axes | None = None
    for index, figure_name in enumerate(panels):
        axes = figure.add_subplot(len(panels), 1, index + 1, sharex=first)
        first = first or axes
        for line, name in enumerate(result.parameters):
            values = np.array([_figure_of(g, name, figure_name) for g in groups])
            conf = np.abs([_figure_of(g, name, f"{figure_name}_conf") for g in groups])
            color = f"C{line % 10}"
            axes.plot(xs, values, marker="o", markersize=3, color=color, label=name)
            axes.fill_between(xs, values - conf, values + conf, color=color, alpha=0.2, linewidth=0)
        axes.axhline(0.0, color="black", linewidth=0.8)
        axes.set_ylabel("mu*" if figure_name == "mu_star" else figure_name)
        if labels:
            _group_ticks(axes, xs, labels)
    if first is not None:
        _legend(first)
    figure.axes[-1].set_xlabel(axis)
    return figure


def _group_axis(result: SensitivityResult) -> tuple[np.ndarray, list[str], str]:
    """The x of each group, tick labels (none when x is the ``by`` value) and the axis label.

    With one numeric ``by`` column x is its value; otherwise the group's position, labelled
    with its key (``day=3, age=1``).
    """
    import numpy as np

    keys = [group.key for group in result.groups]
    if len(result.by) == 1:
        column = result.by[0]
        values = [key.get(column) for key in keys]
        if all(_is_number(v) for v in values):
            return np.array(values, dtype=np.float64), [], column
    labels = [", ".join(f"{k}={v}" for k, v in key.items()) for key in keys]
    return np.arange(len(keys), dtype=np.float64), labels, ", ".join(result.by)


def _group_ticks(axes: Axes, xs: np.ndarray, labels: list[str]) -> None:
    """A tick per group labelled with its key (every k-th one when there are many)."""
    step = max(1, math.ceil(len(labels) / _MAX_TICK_LABELS))
    shown = slice(None, None, step)
    _ticks(axes, list(xs[shown]), labels[shown], tilt=len(labels) > 4)


# -- helpers ---------------------------------------------------------------------------------


def _column(group: GroupIndices, names: Sequence[str], figure_name: str) -> np.ndarray:
    """One figure of every parameter in ``names``, NaN where it is missing."""
    import numpy as np

    return np.array([_figure_of(group, name, figure_name) for name in names], dtype=np.float64)


def _figure_of(group: GroupIndices, name: str, figure_name: str) -> float:
    figures: Mapping[str, Any] = group.indices.get(name) or {}
    return _number(figures.get(figure_name))


def _number(value: Any) -> float:
    """A float, NaN for ``None`` or anything that is not a number."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _percent(fraction: float) -> str:
    """``12%``; one significant digit below 1% (``0.4%``), so a small share is not ``0%``."""
    share = 100.0 * fraction
    return f"{share:.0f}%" if share >= 1.0 or share == 0.0 else f"{share:.1g}%"


def _ticks(axes: Axes, where: Sequence[float], labels: list[str], *, tilt: bool) -> None:
    """x ticks with labels, tilted (and ending at their tick) when there are many."""
    if tilt:
        axes.set_xticks(where, labels=labels, rotation=40, ha="right", rotation_mode="anchor")
    else:
        axes.set_xticks(where, labels=labels)


def _legend(axes: Axes) -> None:
    """A legend, when something labelled was drawn (matplotlib warns about an empty one)."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(max(width, 6.0), height), dpi=100, layout="constrained")
