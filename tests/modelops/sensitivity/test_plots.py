"""The pictures of a sensitivity analysis, read back from the drawn artists.

Results are built by hand with known numbers, so each bar, line and cell can be checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from modelops.sensitivity._plots import draw_sensitivity, plot_sensitivity
from modelops.sensitivity._result import GroupIndices, SensitivityResult
from modelops_contracts import ContractViolationError

PARAMS = ("a", "b", "c")
# S1, S1_conf, ST, ST_conf per parameter
SOBOL = {"a": (0.31, 0.02, 0.56, 0.03), "b": (0.44, 0.05, 0.44, 0.04), "c": (0.0, 0.01, 0.24, 0.02)}
# mu_star, mu_star_conf, sigma, mu per parameter
MORRIS = {"a": (2.0, 0.3, 1.5, 2.0), "b": (0.5, 0.1, 0.2, -0.5), "c": (1.2, 0.2, 2.5, 0.1)}
S2 = {("a", "b"): 0.01, ("a", "c"): 0.24, ("b", "c"): -0.02}


def sobol_figures(
    values: tuple[float | None, ...], s2: Mapping[str, float | None] | None = None
) -> dict[str, Any]:
    figures: dict[str, Any] = dict(zip(("S1", "S1_conf", "ST", "ST_conf"), values, strict=True))
    if s2 is not None:
        figures["S2"] = dict(s2)
        figures["S2_conf"] = dict.fromkeys(s2, 0.01)
    return figures


def sobol_result(
    *,
    job_id: str = "job-1",
    second_order: bool = False,
    noise: float | None = 0.12,
    warnings: tuple[str, ...] = (),
    output: str | None = "summary",
    value: str = "attack_rate",
) -> SensitivityResult:
    """One group of the Sobol' indices in :data:`SOBOL` (and :data:`S2` when second order)."""
    indices = {}
    for name in PARAMS:
        pairs = None
        if second_order:
            pairs = {o: S2.get((name, o), S2.get((o, name))) for o in PARAMS if o != name}
        indices[name] = sobol_figures(SOBOL[name], pairs)
    group = GroupIndices({}, indices, noise, warnings=warnings)
    return SensitivityResult(
        job_id, "sobol", output, value, (), 1024, PARAMS, second_order, (group,)
    )


def morris_result(*, job_id: str = "job-1") -> SensitivityResult:
    indices = {
        name: dict(zip(("mu_star", "mu_star_conf", "sigma", "mu"), MORRIS[name], strict=True))
        for name in PARAMS
    }
    group = GroupIndices({}, indices, None)
    return SensitivityResult(
        job_id, "morris", "summary", "attack_rate", (), 20, PARAMS, False, (group,)
    )


def by_result(
    method: str,
    keys: Sequence[Mapping[str, Any]],
    by: tuple[str, ...],
    value: Any,
    *,
    noise: Sequence[float | None] | None = None,
    warnings: Sequence[tuple[str, ...]] | None = None,
    job_id: str = "job-1",
) -> SensitivityResult:
    """One group per key; ``value(position, parameter, figure)`` gives each figure."""
    columns = ("S1", "S1_conf", "ST", "ST_conf") if method == "sobol" else MORRIS_COLUMNS
    groups = tuple(
        GroupIndices(
            dict(key),
            {p: {c: value(i, p, c) for c in columns} for p in PARAMS},
            noise[i] if noise is not None else None,
            warnings=warnings[i] if warnings is not None else (),
        )
        for i, key in enumerate(keys)
    )
    return SensitivityResult(
        job_id, method, "incidence", "new_cases", by, 256, PARAMS, False, groups
    )


MORRIS_COLUMNS = ("mu_star", "mu_star_conf", "sigma", "mu")


def daily(position: int, parameter: str, figure: str) -> float:
    """A figure that tells its group and parameter apart: 0.1 * (position + 1) + offset."""
    offset = {"a": 0.0, "b": 0.01, "c": 0.02}[parameter]
    if figure.endswith("_conf") or figure == "sigma":
        return 0.005
    return 0.1 * (position + 1) + offset + (0.5 if figure in ("ST", "mu") else 0.0)


def bar_heights(axes: Axes) -> list[float]:
    return [p.get_height() for p in axes.patches if isinstance(p, Rectangle)]


def error_spans(axes: Axes) -> list[np.ndarray]:
    """Per error-bar container, the (low, high) of each bar's error bar."""
    spans = []
    for container in axes.containers:
        if isinstance(container, ErrorbarContainer):
            (segments,) = [c for c in container.lines[2] if isinstance(c, LineCollection)]
            spans.append(np.array([[s[0][1], s[1][1]] for s in segments.get_segments()]))
    return spans


def intervals(table: Mapping[str, tuple[float, ...]], value: int, conf: int) -> np.ndarray:
    return np.array(
        [[table[p][value] - table[p][conf], table[p][value] + table[p][conf]] for p in PARAMS]
    )


def parameter_lines(axes: Axes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        str(line.get_label()): (np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
        for line in axes.get_lines()
        if line.get_label() in PARAMS
    }


def test_sobol_bars_are_s1_and_st_with_their_intervals() -> None:
    figure = draw_sensitivity(sobol_result())
    assert len(figure.axes) == 1
    (axes,) = figure.axes
    s1 = [SOBOL[p][0] for p in PARAMS]
    st = [SOBOL[p][2] for p in PARAMS]
    assert bar_heights(axes) == pytest.approx(s1 + st)
    s1_spans, st_spans = error_spans(axes)
    np.testing.assert_allclose(s1_spans, intervals(SOBOL, 0, 1))
    np.testing.assert_allclose(st_spans, intervals(SOBOL, 2, 3))
    assert [t.get_text() for t in axes.get_xticklabels()] == list(PARAMS)
    assert axes.get_ylabel() == "index"
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in axes.get_lines())  # zero line
    assert figure.get_suptitle() == "attack_rate (summary): Sobol' indices, N=1024, noise 12%"


def test_title_without_noise_for_the_loss() -> None:
    figure = draw_sensitivity(sobol_result(noise=None, output=None, value="loss"))
    assert figure.get_suptitle() == "loss: Sobol' indices, N=1024"


def test_small_noise_is_not_rounded_to_zero() -> None:
    assert draw_sensitivity(sobol_result(noise=0.004)).get_suptitle().endswith("noise 0.4%")


def test_second_order_adds_an_annotated_s2_map() -> None:
    figure = draw_sensitivity(sobol_result(second_order=True))
    assert len(figure.axes) == 2
    heat = figure.axes[1]
    (image,) = [i for i in heat.get_images() if isinstance(i, AxesImage)]
    matrix = np.ma.filled(image.get_array(), np.nan)
    for (i, a), (j, b) in ((x, y) for x in enumerate(PARAMS) for y in enumerate(PARAMS)):
        expected = np.nan if a == b else S2.get((a, b), S2.get((b, a)))
        assert matrix[i, j] == pytest.approx(expected, nan_ok=True)
    texts = sorted(t.get_text() for t in heat.texts)
    assert texts == sorted(f"{v:.2f}" for v in S2.values() for _ in range(2))


def test_morris_bars_and_mu_star_against_sigma() -> None:
    figure = draw_sensitivity(morris_result())
    assert len(figure.axes) == 2
    bars, spread = figure.axes
    assert bar_heights(bars) == pytest.approx([MORRIS[p][0] for p in PARAMS])
    (spans,) = error_spans(bars)
    np.testing.assert_allclose(spans, intervals(MORRIS, 0, 1))
    (points,) = spread.collections
    np.testing.assert_allclose(points.get_offsets(), [[MORRIS[p][0], MORRIS[p][2]] for p in PARAMS])
    assert [t.get_text() for t in spread.texts] == list(PARAMS)
    assert (spread.get_xlabel(), spread.get_ylabel()) == ("mu*", "sigma")
    assert (
        figure.get_suptitle() == "attack_rate (summary): Morris elementary effects, 20 trajectories"
    )


def test_by_a_numeric_column_draws_lines_against_its_values() -> None:
    days = [3, 1, 2]  # out of order: the lines run along the day
    result = by_result(
        "sobol", [{"day": d} for d in days], ("day",), daily, noise=[0.03, 0.12, 0.05]
    )
    figure = draw_sensitivity(result)
    assert len(figure.axes) == 2
    for axes, index in zip(figure.axes, ("S1", "ST"), strict=True):
        lines = parameter_lines(axes)
        assert sorted(lines) == list(PARAMS)
        for name, (xs, ys) in lines.items():
            assert xs.tolist() == [1.0, 2.0, 3.0]
            by_day = {d: daily(i, name, index) for i, d in enumerate(days)}
            assert ys.tolist() == pytest.approx([by_day[1], by_day[2], by_day[3]])
        assert len(axes.collections) == len(PARAMS)  # one band per parameter
        assert axes.get_ylabel() == index
    assert figure.axes[-1].get_xlabel() == "day"
    assert figure.get_suptitle() == (
        "new_cases (incidence) by day: Sobol' indices, N=256, noise 3-12%"
    )


def test_the_band_is_the_interval() -> None:
    result = by_result("sobol", [{"day": d} for d in (0, 1)], ("day",), daily)
    axes = draw_sensitivity(result).axes[0]
    band = axes.collections[0]  # parameter "a", drawn first
    ys = band.get_paths()[0].vertices[:, 1]
    low = [daily(i, "a", "S1") - 0.005 for i in (0, 1)]
    high = [daily(i, "a", "S1") + 0.005 for i in (0, 1)]
    assert min(ys) == pytest.approx(min(low)) and max(ys) == pytest.approx(max(high))


def test_by_several_columns_labels_each_group_with_its_key() -> None:
    keys = [{"day": 1, "age": "young"}, {"day": 1, "age": "old"}, {"day": 2, "age": "young"}]
    figure = draw_sensitivity(by_result("sobol", keys, ("day", "age"), daily))
    axes = figure.axes[-1]
    assert [t.get_text() for t in axes.get_xticklabels()] == [
        "day=1, age=young", "day=1, age=old", "day=2, age=young",
    ]  # fmt: skip
    xs, _ = parameter_lines(axes)["a"]
    assert xs.tolist() == [0.0, 1.0, 2.0]


def test_by_a_text_column_uses_positions() -> None:
    keys = [{"region": r} for r in ("north", "south")]
    axes = draw_sensitivity(by_result("sobol", keys, ("region",), daily)).axes[-1]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["region=north", "region=south"]


def test_morris_by_draws_one_mu_star_panel() -> None:
    result = by_result("morris", [{"day": d} for d in range(4)], ("day",), daily)
    figure = draw_sensitivity(result)
    assert len(figure.axes) == 1
    _, ys = parameter_lines(figure.axes[0])["b"]
    assert ys.tolist() == pytest.approx([daily(i, "b", "mu_star") for i in range(4)])


def test_missing_values_leave_gaps(tmp_path: Path) -> None:
    def patchy(position: int, parameter: str, figure: str) -> float | None:
        if position == 1 or (parameter == "b" and position == 2):
            return None
        return daily(position, parameter, figure)

    result = by_result("sobol", [{"day": d} for d in range(4)], ("day",), patchy, noise=[None] * 4)
    figure = draw_sensitivity(result)
    _, ys = parameter_lines(figure.axes[0])["b"]
    assert np.isnan(ys).tolist() == [False, True, True, False]
    assert plot_sensitivity(result, tmp_path / "gaps.png").stat().st_size > 0


def test_missing_values_in_one_group_and_nothing_known(tmp_path: Path) -> None:
    values = dict.fromkeys(PARAMS, (None, None, None, None))
    values["a"] = (0.3, None, 0.5, 0.02)
    indices = {p: sobol_figures(values[p]) for p in PARAMS}
    group = GroupIndices({}, indices, None)
    result = SensitivityResult("job-1", "sobol", "s", "v", (), 8, PARAMS, False, (group,))
    heights = bar_heights(draw_sensitivity(result).axes[0])
    assert heights[0] == 0.3 and heights[3] == 0.5 and np.isnan(heights[1])
    plot_sensitivity(result, tmp_path / "one.png")
    blank = by_result("sobol", [{"day": 0}, {"day": 1}], ("day",), lambda *_: None)
    plot_sensitivity(blank, tmp_path / "blank.png")
    morris = SensitivityResult(
        "job-1", "morris", "s", "v", (), 8, PARAMS, False,
        (GroupIndices({}, {p: dict.fromkeys(MORRIS_COLUMNS) for p in PARAMS}, None),),
    )  # fmt: skip
    plot_sensitivity(morris, tmp_path / "morris.png")
    no_pairs = {p: sobol_figures(SOBOL[p], {o: None for o in PARAMS if o != p}) for p in PARAMS}
    second = SensitivityResult(
        "job-1", "sobol", "s", "v", (), 8, PARAMS, True, (GroupIndices({}, no_pairs, None),)
    )
    figure = draw_sensitivity(second)
    assert not figure.axes[1].texts  # no value to annotate
    plot_sensitivity(second, tmp_path / "s2.png")


def test_plot_writes_a_png_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = plot_sensitivity(sobol_result(second_order=True), tmp_path / "sub" / "sobol.png")
    assert path == tmp_path / "sub" / "sobol.png"
    image = mpimg.imread(path)
    assert image.shape[0] == 450 and image.shape[1] >= 600
    assert np.any(image[..., :3] < 0.5)  # something dark was drawn
    assert [p.name for p in path.parent.iterdir()] == ["sobol.png"]


def test_an_unknown_method_is_refused() -> None:
    result = SensitivityResult("job-1", "fast", "s", "v", (), 8, PARAMS, False, ())
    with pytest.raises(ContractViolationError, match="'fast'"):
        draw_sensitivity(result)
