"""compute_indices and analyze on real design jobs: rankings, groups, losses, caching, errors."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from modelops import run
from modelops.analysis import load_targets, score
from modelops.sampling import ParameterSpace
from modelops.sensitivity import analyze, compute_indices, morris, saltelli
from modelops_contracts import ContractViolationError, SimulationStudy
from tests.modelops.sensitivity.conftest import ISHIGAMI_VARIANCE, A, B


@pytest.fixture
def functions(functions_bundle: Path) -> Iterator[Any]:
    """The functions module, importable here so spaces come from its Model classes."""
    sys.path.insert(0, str(functions_bundle))
    try:
        import functions as module

        yield module
    finally:
        sys.path.remove(str(functions_bundle))
        sys.modules.pop("functions", None)


def _run(study: SimulationStudy, bundle: Path, store: Path) -> str:
    handle = run(study, bundle=bundle, store=store, workers=1)
    return handle.job_id


def _ishigami(functions: Any, noise: float = 0.0) -> ParameterSpace:
    return ParameterSpace.from_model(functions.Ishigami).with_fixed({"noise": noise})


def test_morris_recovers_the_ranking(functions: Any, functions_bundle: Path, tmp_path: Path):
    study = morris(functions.Ranked, 20, levels=4, seed=3, model="functions.Ranked")
    job_id = _run(study, functions_bundle, tmp_path / "store")
    result = compute_indices(job_id, "y", value="f", store=tmp_path / "store")
    mu_star = {p: f["mu_star"] for p, f in result.groups[0].indices.items()}
    assert sorted(mu_star, key=mu_star.__getitem__, reverse=True) == ["a", "b", "c", "d"]
    assert mu_star["d"] == pytest.approx(0.0, abs=1e-12)
    assert 10.0 <= mu_star["a"] <= 10.5 and 5.0 <= mu_star["b"] <= 5.5  # a b adds up to 0.5
    assert result.method == "morris" and result.n == 20
    table = analyze(job_id, "y", value="f", store=tmp_path / "store")
    assert table.columns == [
        "parameter",
        "mu_star",
        "mu_star_conf",
        "sigma",
        "mu",
        "noise_fraction",
    ]


def test_a_partly_cached_design_gives_the_same_indices_as_a_fresh_run(
    functions: Any, functions_bundle: Path, tmp_path: Path
) -> None:
    design = saltelli(
        _ishigami(functions, 1.0), 64, seed=5, replicates=2, model="functions.Ishigami"
    )
    half = design.parameter_sets[::2]
    earlier = SimulationStudy(model="functions.Ishigami", parameter_sets=half, n_replicates=2)
    shared = tmp_path / "shared"
    _run(earlier, functions_bundle, shared)
    handle = run(design, bundle=functions_bundle, store=shared, workers=1)
    assert handle.status()["counts"]["cached"] == 2 * len(half)
    fresh = _run(design, functions_bundle, tmp_path / "fresh")
    assert fresh == handle.job_id
    cached_result = compute_indices(handle.job_id, "y", value="f", store=shared)
    fresh_result = compute_indices(fresh, "y", value="f", store=tmp_path / "fresh")
    assert cached_result.to_json() == fresh_result.to_json()


def test_by_day_gives_the_indices_of_each_day(
    functions: Any, functions_bundle: Path, tmp_path: Path
) -> None:
    study = saltelli(functions.Series, 256, seed=2, replicates=3, model="functions.Series")
    store = tmp_path / "store"
    job_id = _run(study, functions_bundle, store)
    result = compute_indices(job_id, "series", value="y", by=["day"], store=store)
    days = result.to_json()
    assert isinstance(days, list) and [d["day"] for d in days] == [0, 1, 2, 3, 4]
    first, last = days[0]["indices"], days[-1]["indices"]
    assert first["a"]["ST"] == pytest.approx(0.0, abs=0.05)  # y = b + noise on day 0
    assert first["b"]["S1"] == pytest.approx(1.0, abs=0.1)
    assert last["a"]["S1"] == pytest.approx(16 / 17, abs=0.1)  # var(4a) = 16 var(b)
    noise = days[0]["noise_fraction"]  # noise var 0.01 against var(b) = 1/12
    assert noise == pytest.approx(0.01 / (0.01 + 1 / 12), abs=0.03)
    frame = analyze(job_id, "series", value="y", by=["day"], store=store)
    assert frame.columns[:2] == ["day", "parameter"] and frame.height == 10


def test_several_rows_per_task_need_a_by(
    functions: Any, functions_bundle: Path, tmp_path: Path
) -> None:
    study = saltelli(functions.Series, 8, seed=2, model="functions.Series")
    job_id = _run(study, functions_bundle, tmp_path / "store")
    with pytest.raises(ContractViolationError, match=r"several rows per task.*--by.*day"):
        compute_indices(job_id, "series", value="y", store=tmp_path / "store")
    with pytest.raises(ContractViolationError, match="no result column 'nope'"):
        compute_indices(job_id, "series", value="nope", store=tmp_path / "store")
    with pytest.raises(ContractViolationError, match="cannot group by 'a'"):
        compute_indices(job_id, "series", value="y", by=["a"], store=tmp_path / "store")
    with pytest.raises(ContractViolationError, match="needs a morris design"):
        compute_indices(job_id, "total", value="sum", method="morris", store=tmp_path / "store")


def test_the_loss_of_a_scored_job(functions: Any, functions_bundle: Path, tmp_path: Path):
    study = saltelli(functions.Series, 64, seed=4, replicates=2, model="functions.Series")
    store = tmp_path / "store"
    job_id = _run(study, functions_bundle, store)
    with pytest.raises(ContractViolationError, match="has no scores: run 'mops score"):
        compute_indices(job_id, loss=True, store=store)
    data = tmp_path / "observed.csv"
    data.write_text("day,y\n" + "".join(f"{t},{0.9 * t + 0.1}\n" for t in range(5)))
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "targets:\n  - {name: s, output: series, data: observed.csv, on: [day], value: y, "
        "loss: mse_of_mean}\n"
    )
    score(job_id, load_targets(targets), store=store)
    result = compute_indices(job_id, loss=True, store=store).to_json()
    assert isinstance(result, dict)
    assert result["value"] == "loss" and result["output"] is None
    assert result["noise_fraction"] is None
    st = {p: f["ST"] for p, f in result["indices"].items()}
    assert st["a"] > st["b"] > 0  # the slope moves the loss most


def test_design_sets_without_results_are_refused(
    functions: Any, functions_bundle: Path, tmp_path: Path
) -> None:
    study = saltelli(functions.Fragile, 16, seed=1, model="functions.Fragile")
    handle = run(study, bundle=functions_bundle, store=tmp_path / "store", workers=1)
    assert handle.status()["counts"]["failed"] > 0
    with pytest.raises(ContractViolationError, match=r"design parameter sets .* no finite 'y'"):
        compute_indices(handle.job_id, "y", value="f", store=tmp_path / "store")


def test_second_order_indices(functions: Any, functions_bundle: Path, tmp_path: Path):
    study = saltelli(
        _ishigami(functions), 2048, second_order=True, seed=8, model="functions.Ishigami"
    )
    job_id = _run(study, functions_bundle, tmp_path / "store")
    result = compute_indices(job_id, "y", value="f", store=tmp_path / "store")
    indices = result.groups[0].indices
    v13 = B**2 * 3.141592653589793**8 * (1 / 18 - 1 / 50) / ISHIGAMI_VARIANCE
    assert indices["x1"]["S2"]["x3"] == pytest.approx(v13, abs=0.06)
    assert indices["x3"]["S2"]["x1"] == indices["x1"]["S2"]["x3"]
    assert indices["x1"]["S2"]["x2"] == pytest.approx(0.0, abs=0.06)
    table = result.table()
    assert {"S2_x2", "S2_x2_conf", "S2_x3"} <= set(table.columns)
    assert A == 7.0


def test_small_designs_and_noise_are_flagged(
    functions: Any, functions_bundle: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    small = saltelli(_ishigami(functions), 8, seed=1, model="functions.Ishigami")
    result = compute_indices(_run(small, functions_bundle, store), "y", value="f", store=store)
    assert any(w.startswith("wide intervals") for w in result.warnings), result.warnings
    noisy = saltelli(
        _ishigami(functions, 10.0), 128, seed=1, replicates=4, model="functions.Ishigami"
    )
    result = compute_indices(_run(noisy, functions_bundle, store), "y", value="f", store=store)
    noise = result.groups[0].noise_fraction
    assert noise is not None and noise > 0.8  # 100 / (100 + 13.8)
    assert any("replicate noise is" in w for w in result.warnings), result.warnings


def test_a_constant_output_says_so(functions: Any, functions_bundle: Path, tmp_path: Path):
    study = saltelli(functions.Series, 8, seed=2, replicates=1, model="functions.Series")
    store = tmp_path / "store"
    job_id = _run(study, functions_bundle, store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compute_indices(job_id, "total", value="zero", store=store)
    assert result.warnings == ["the value is constant over the design: every index is 0"]
    assert all(f["S1"] == 0.0 for f in result.groups[0].indices.values())


def test_a_job_without_a_design_is_refused(functions_bundle: Path, tmp_path: Path) -> None:
    plain = SimulationStudy(
        model="functions.Ranked", parameter_sets=[{"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}]
    )
    job_id = _run(plain, functions_bundle, tmp_path / "store")
    with pytest.raises(ContractViolationError, match=r"mops sample saltelli\|morris"):
        compute_indices(job_id, "y", value="f", store=tmp_path / "store")


def test_the_same_analysis_twice_is_identical(
    functions: Any, functions_bundle: Path, tmp_path: Path
) -> None:
    study = saltelli(
        _ishigami(functions, 1.0), 32, seed=9, replicates=2, model="functions.Ishigami"
    )
    job_id = _run(study, functions_bundle, tmp_path / "store")
    once = compute_indices(job_id, "y", value="f", store=tmp_path / "store")
    twice = compute_indices(job_id, "y", value="f", store=tmp_path / "store")
    assert json.dumps(once.to_json()) == json.dumps(twice.to_json())
    assert isinstance(once.table(), pl.DataFrame)
