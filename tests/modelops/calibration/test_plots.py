"""The calibration figures, drawn from real calibrations of the noisy line model."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from matplotlib.collections import Collection
from matplotlib.image import imread
from matplotlib.patches import StepPatch

import modelops
from modelops.calibration import Calibration
from modelops.calibration._plots import (
    draw_losses,
    draw_posterior,
    draw_predictive,
    draw_trace,
    plot_losses,
    plot_posterior,
    plot_predictive,
    plot_trace,
)
from modelops.store import open_existing_store, read_job
from modelops_contracts import ContractViolationError
from tests.modelops.calibration.conftest import TARGETS, TRUE, LineBundle, make_line_bundle

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
R = 2
TRUE_SUM = sum(TRUE["slope"] * t + TRUE["offset"] for t in range(10))


def calibrate(line: LineBundle, **kwargs: Any) -> Calibration:
    args: dict[str, Any] = {
        "replicates": R, "seed": 3, "workers": 1, "fix": line.fix, **kwargs
    }  # fmt: skip
    return modelops.calibrate("line.Line", line.targets, bundle=line.path, store=line.store, **args)


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> LineBundle:
    return make_line_bundle(tmp_path_factory.mktemp("plots"))


@pytest.fixture(scope="module")
def optimizer(line: LineBundle) -> Calibration:
    return calibrate(line, algorithm="random", budget=12, batch=4, top_k=3)


@pytest.fixture(scope="module")
def abc(line: LineBundle) -> Calibration:
    return calibrate(
        line, algorithm="abc-smc", budget=80, batch=20, top_k=2, settings={"population": 20}
    )


@pytest.fixture(scope="module")
def two_targets(line: LineBundle) -> Calibration:
    """The line target and a scalar one: the sum of ``y`` against the true line's sum."""
    data = line.targets.parent
    (data / "total.csv").write_text(f"sum\n{TRUE_SUM}\n", encoding="utf-8")
    scalar = "  - {name: total, output: total, data: total.csv, on: [], value: sum}\n"
    targets = data / "two.yaml"
    targets.write_text(TARGETS + scalar, encoding="utf-8")
    return modelops.calibrate(
        "line.Line", targets, bundle=line.path, store=line.store, algorithm="random",
        budget=8, batch=4, top_k=1, replicates=R, seed=3, workers=1, fix=line.fix,
    )  # fmt: skip


def labelled(artists: Iterable[Any], label: str) -> Any:
    """The one artist (or container) of ``artists`` whose label starts with ``label``."""
    found = [a for a in artists if str(a.get_label()).startswith(label)]
    assert len(found) == 1, f"{len(found)} artists labelled {label!r}"
    return found[0]


def simulate(params: dict[str, Any], seed: int) -> np.ndarray:
    """The line model's ``y`` for one task, computed here rather than read from the store."""
    rng = np.random.default_rng(seed)
    return params["slope"] * np.arange(10) + params["offset"] + rng.normal(0.0, 0.5, size=10)


def predictive_runs(cal: Calibration, keep: Any) -> np.ndarray:
    """Every kept task's simulated ``y`` of the predictive job, one row per task."""
    job_id = cal.journal.record()["result"]["predictive_job_id"]
    with open_existing_store(cal.store) as store:
        rows = [r for r in read_job(store, job_id).task_rows() if keep(r)]
    return np.array([simulate(dict(r.params), r.seed) for r in rows])


def test_trace_draws_every_evaluation_and_the_reevaluated_answer(optimizer: Calibration) -> None:
    losses = optimizer.evaluations()["loss"].to_numpy()
    best = optimizer.best
    assert best is not None
    figure = draw_trace(optimizer)
    (axes,) = figure.axes
    dots = labelled(axes.collections, "evaluation")
    assert np.allclose(dots.get_offsets(), np.column_stack([np.arange(1, 13), losses]))
    line = labelled(axes.lines, "best so far")
    assert np.allclose(line.get_ydata(), np.minimum.accumulate(losses))
    answer = labelled(axes.containers, "answer: re-evaluated best")
    x, y = answer.lines[0].get_data()
    assert x[0] > 12 and y[0] == best["loss"]
    (bar,) = answer.lines[2][0].get_segments()
    se = best["loss_se"]
    assert np.allclose(bar[:, 1], [best["loss"] - 2 * se, best["loss"] + 2 * se])
    others = labelled(axes.containers, "re-evaluated candidates")
    expected = [c["loss"] for c in best["candidates"] if c["param_id"] != best["param_id"]]
    assert sorted(others.lines[0].get_ydata()) == sorted(expected)
    assert len(expected) == 2
    assert "re-evaluated" in [t.get_text() for t in axes.texts]


def test_losses_one_panel_per_free_parameter_with_the_answer(optimizer: Calibration) -> None:
    table = optimizer.evaluations()
    best = optimizer.best
    assert best is not None
    figure = draw_losses(optimizer)
    assert len(figure.axes) == 2  # slope and offset; the fixed width has no panel
    for axes, name, scale in zip(figure.axes, ["slope", "offset"], ["linear", "log"], strict=True):
        assert axes.get_xscale() == scale  # offset is a log-scale parameter
        dots = labelled(axes.collections, "evaluation")
        assert np.allclose(dots.get_offsets(), table.select(name, "loss").to_numpy())
        star = labelled(axes.collections, "answer")
        assert np.allclose(star.get_offsets(), [[best["params"][name], best["loss"]]])
        assert [line.get_xdata() for line in axes.lines] == [[best["params"][name]] * 2]
        assert not [c for c in axes.collections if str(c.get_label()).startswith("failed")]


def test_failed_points_are_marked_along_the_top(optimizer: Calibration, tmp_path: Path) -> None:
    store = tmp_path / "store"
    copy = store / "calibrations" / optimizer.calibration_id
    shutil.copytree(optimizer.directory, copy)
    table = optimizer.evaluations()
    failed = [0, 3]
    mask = pl.Series([i in failed for i in range(table.height)])
    table = table.with_columns(pl.when(mask).then(None).otherwise(pl.col("loss")).alias("loss"))
    table.write_parquet(copy / "evaluations.parquet")
    cal = Calibration(optimizer.calibration_id, store)
    for axes in draw_losses(cal).axes:
        name = "slope" if axes.get_xscale() == "linear" else "offset"
        marks: Collection = labelled(axes.collections, "failed")
        assert np.allclose(marks.get_offsets(), [[table[name][i], 1.0] for i in failed])
        top = axes.transAxes.transform([0.0, 1.0])[1]  # y = 1 in axes units: the top edge
        pixels = marks.get_offset_transform().transform(marks.get_offsets())
        assert np.allclose(pixels[:, 1], top)
        dots = labelled(axes.collections, "evaluation")
        assert len(dots.get_offsets()) == table.height - len(failed)
    (axes,) = draw_trace(cal).axes
    assert np.allclose(labelled(axes.collections, "failed").get_offsets()[:, 0], [1, 4])
    losses = table["loss"].fill_null(np.nan).to_numpy()
    best_so_far = labelled(axes.lines, "best so far").get_ydata()
    assert np.isnan(best_so_far[0])
    assert np.allclose(best_so_far[1:], np.fmin.accumulate(losses[1:]))


def test_posterior_is_a_corner_plot_of_the_populations(abc: Calibration) -> None:
    posterior = abc.posterior()
    summary = abc.posterior_summary()
    assert posterior is not None and summary is not None
    populations = sorted(set(posterior["population"]))
    assert len(populations) >= 2
    last = posterior.filter(pl.col("population") == populations[-1])
    weights = last["weight"].to_numpy() / last["weight"].sum()
    figure = draw_posterior(abc)
    slope_axes, pairs, offset_axes = figure.axes  # the diagonal and the one pair below it
    for axes, name in ((slope_axes, "slope"), (offset_axes, "offset")):
        steps = [p for p in axes.patches if isinstance(p, StepPatch)]
        assert len(steps) == len(populations)
        (filled,) = [p for p in steps if p.get_fill()]
        heights, edges, _ = filled.get_data()
        expected, _ = np.histogram(last[name].to_numpy(), bins=edges, weights=weights)
        assert np.allclose(heights, expected)
        assert np.isclose(heights.sum(), 1.0)
        interval = sorted(float(line.get_xdata()[0]) for line in axes.lines)
        assert np.allclose(interval, [summary[name]["q05"], summary[name]["q95"]])
    assert offset_axes.get_xscale() == "log"
    (particles,) = pairs.collections
    assert np.allclose(particles.get_offsets(), last.select("slope", "offset").to_numpy())
    assert np.allclose(particles.get_array(), weights)
    assert pairs.get_yscale() == "log"


def test_an_optimizer_has_no_posterior(optimizer: Calibration) -> None:
    with pytest.raises(ContractViolationError, match="has no posterior: only abc-smc"):
        draw_posterior(optimizer)


def test_predictive_of_an_optimizer_is_the_answers_new_replicates(
    optimizer: Calibration,
) -> None:
    best = optimizer.best
    assert best is not None
    runs = predictive_runs(optimizer, lambda r: r.param_id == best["param_id"] and r.replicate >= R)
    assert len(runs) == 4 * R  # the re-evaluation's new replicates, not the search's
    figure = draw_predictive(optimizer)
    (axes,) = figure.axes
    mean = labelled(axes.lines, "simulated mean")
    assert np.allclose(mean.get_xdata(), np.arange(10))
    assert np.allclose(mean.get_ydata(), runs.mean(axis=0))
    band = labelled(axes.collections, "5-95% over replicates")
    vertices = band.get_paths()[0].vertices
    for t, low, high in zip(range(10), *np.quantile(runs, [0.05, 0.95], axis=0), strict=True):
        assert np.isclose(vertices, [t, low]).all(axis=1).any()
        assert np.isclose(vertices, [t, high]).all(axis=1).any()
    observed = labelled(axes.collections, "observed")
    truth = [[t, TRUE["slope"] * t + TRUE["offset"]] for t in range(10)]
    assert np.allclose(observed.get_offsets(), truth)


def test_predictive_of_abc_pools_the_posterior_draws(abc: Calibration) -> None:
    runs = predictive_runs(abc, lambda r: True)
    assert len(runs) == 20 * R  # posterior draws x R
    figure = draw_predictive(abc)
    (axes,) = figure.axes
    assert np.allclose(labelled(axes.lines, "simulated mean").get_ydata(), runs.mean(axis=0))
    labelled(axes.collections, "5-95% over posterior draws")
    assert f"20 posterior draws × {R} replicates" in figure.get_suptitle()


def test_predictive_of_an_unknown_target_is_refused(optimizer: Calibration) -> None:
    with pytest.raises(ContractViolationError, match="has no target 'nope'; its targets: line"):
        draw_predictive(optimizer, target="nope")
    assert len(draw_predictive(optimizer, target="line").axes) == 1


def test_predictive_of_a_scalar_target_is_a_histogram(two_targets: Calibration) -> None:
    best = two_targets.best
    assert best is not None
    runs = predictive_runs(
        two_targets, lambda r: r.param_id == best["param_id"] and r.replicate >= R
    )
    line_axes, total_axes = draw_predictive(two_targets).axes
    assert line_axes.get_title() == "line: series.y"
    assert total_axes.get_title() == "total: total.sum"
    bars = [p for p in total_axes.patches if p.get_label() != "observed"]
    assert sum(bar.get_height() for bar in bars) == len(runs) == 4 * R
    lefts = min(bar.get_x() for bar in bars)
    rights = max(bar.get_x() + bar.get_width() for bar in bars)
    assert np.isclose(lefts, runs.sum(axis=1).min()) and np.isclose(rights, runs.sum(axis=1).max())
    (observed,) = total_axes.lines
    assert np.allclose(observed.get_xdata(), [TRUE_SUM] * 2)
    # the scalar panel is the narrow one
    assert total_axes.get_position().width < line_axes.get_position().width


def test_plots_are_png_files(optimizer: Calibration, abc: Calibration, tmp_path: Path) -> None:
    written = [
        plot_trace(optimizer, tmp_path / "trace.png"),
        plot_losses(optimizer, tmp_path / "sub" / "losses.png"),
        plot_predictive(optimizer, tmp_path / "predictive.png"),
        plot_posterior(abc, tmp_path / "posterior.png"),
    ]
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
        image = imread(path)
        assert image.shape[0] >= 400 and image.shape[1] >= 600
