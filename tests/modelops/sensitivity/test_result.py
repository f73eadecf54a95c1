"""SensitivityResult's JSON, table and warning summary, and the checks behind the warnings."""

from __future__ import annotations

import math

from modelops.sensitivity import GroupIndices, SensitivityResult
from modelops.sensitivity._analyze import _sobol_warnings
from modelops.sensitivity._result import summarise_warnings


def _figures(s1: float, st: float, conf: float = 0.01) -> dict[str, float]:
    return {"S1": s1, "S1_conf": conf, "ST": st, "ST_conf": conf}


def _result(groups: tuple[GroupIndices, ...], by: tuple[str, ...] = ()) -> SensitivityResult:
    return SensitivityResult(
        job_id="job-1", method="sobol", output="o", value="v", by=by, n=64,
        parameters=("a", "b"), second_order=False, groups=groups,
    )  # fmt: skip


def test_json_and_table_of_one_group() -> None:
    group = GroupIndices({}, {"a": _figures(0.5, 0.6), "b": _figures(math.nan, 0.1)}, 0.25)
    result = _result((group,))
    data = result.to_json()
    assert isinstance(data, dict)
    assert data["indices"]["b"]["S1"] is None  # NaN is not JSON
    assert data["noise_fraction"] == 0.25 and data["n"] == 64 and data["warnings"] == []
    table = result.table()
    assert table.columns == ["parameter", "S1", "S1_conf", "ST", "ST_conf", "noise_fraction"]
    assert table["S1"].to_list() == [0.5, None]


def test_by_groups_are_a_list_with_their_keys() -> None:
    groups = tuple(
        GroupIndices({"day": d}, {"a": _figures(0.1 * d, 0.2), "b": _figures(0, 0)}, None)
        for d in range(3)
    )
    data = _result(groups, by=("day",)).to_json()
    assert isinstance(data, list) and [g["day"] for g in data] == [0, 1, 2]
    assert _result(groups, by=("day",)).table().columns[:2] == ["day", "parameter"]


def test_warnings_of_many_groups_are_summarised_by_kind() -> None:
    groups = [
        ({"day": d}, [f"wide intervals (S1 of a ±0.{d + 10}): use a larger N"]) for d in range(3, 9)
    ]
    groups += [({"day": 20}, ["wide intervals (S1 of a ±0.2): use a larger N"])]
    groups += [({"day": 5}, ["not converged: ST of b moved by 0.1"])]
    lines = summarise_warnings(groups)
    assert lines == [
        "day=3-8, 20 (7 groups), e.g. day=3: wide intervals (S1 of a ±0.13): use a larger N",
        "day=5: not converged: ST of b moved by 0.1",
    ]
    assert summarise_warnings([({}, ["one", "two"])]) == ["one", "two"]


def test_indices_outside_zero_one_are_flagged_beyond_their_interval_and_a_margin() -> None:
    figures = {"a": _figures(-0.10, 1.10, 0.02), "b": _figures(-0.015, 1.015, 0.005)}
    notes = _sobol_warnings(figures, None, 64)
    assert any(n.startswith("S1 of a is negative beyond its interval") for n in notes)
    assert any(n.startswith("ST of a is above 1 beyond its interval") for n in notes)
    assert not any(" of b " in n for n in notes), notes  # within the margin: no warning
    moved = _sobol_warnings({"a": _figures(0.5, 0.6)}, {"a": {"S1": 0.4, "ST": 0.6}}, 64)
    assert moved == ["not converged: S1 of a moved by 0.100 from N=32 to N=64; use a larger N"]
