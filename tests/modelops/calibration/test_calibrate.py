"""modelops.calibrate end to end on the local pool: journal, answer, resume, cache, errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest

import modelops
from modelops.calibration import list_calibrations, open_calibration
from modelops_contracts import ContractViolationError, ModelError
from tests.modelops.calibration.conftest import TRUE, LineBundle
from tests.modelops.services.conftest import DaskCluster


def _calibrate(line: LineBundle, **kwargs: object) -> modelops.Calibration:
    args: dict[str, object] = {
        "algorithm": "random",
        "budget": 12,
        "replicates": 2,
        "batch": 4,
        "seed": 3,
        "top_k": 2,
        "workers": 1,
        "fix": line.fix,
        **kwargs,
    }
    return modelops.calibrate("line.Line", line.targets, bundle=line.path, store=line.store, **args)  # type: ignore[arg-type]


def _outcomes(store: Path) -> int:
    with sqlite3.connect(store / "ledger.sqlite") as db:
        (count,) = db.execute("select count(*) from outcomes").fetchone()
    return int(count)


def test_journal_and_answer(line_bundle: LineBundle) -> None:
    cal = _calibrate(line_bundle)
    evaluations = cal.evaluations()
    assert evaluations.height == 12
    assert evaluations["generation"].to_list() == [0] * 4 + [1] * 4 + [2] * 4
    assert evaluations["point"].to_list() == [0, 1, 2, 3] * 3
    assert {
        "param_id",
        "slope",
        "offset",
        "width",
        "loss",
        "loss_se",
        "n_replicates",
        "job_id",
    } <= set(evaluations.columns)
    assert evaluations["width"].to_list() == [5] * 12  # fixed never moves
    assert evaluations["n_replicates"].to_list() == [2] * 12
    best = cal.best
    assert best is not None
    # the answer is a re-evaluation on 4 x R new replicates, never the raw search loss
    assert best["n_replicates"] == 8
    assert best["replicates"] == [2, 10]
    top = evaluations.sort("loss").head(2)["param_id"].to_list()
    assert best["param_id"] in top
    assert best["loss"] != best["search_loss"]
    assert len(best["candidates"]) == 2
    result = cal.result()
    assert set(result) == {
        "calibration_id", "status", "algorithm", "budget", "evaluations", "best", "store"
    }  # fmt: skip
    assert result["status"] == "finished"
    assert result["best"]["params"]["width"] == 5
    assert (cal.directory / "best.json").is_file()
    assert [c.calibration_id for c in list_calibrations(line_bundle.store)] == [cal.calibration_id]
    assert open_calibration(cal.calibration_id, store=line_bundle.store).best == best


def test_rerun_of_a_finished_calibration_runs_nothing(line_bundle: LineBundle) -> None:
    first = _calibrate(line_bundle)
    outcomes = _outcomes(line_bundle.store)
    before = (first.directory / "evaluations.parquet").read_bytes()
    again = _calibrate(line_bundle)
    assert again.calibration_id == first.calibration_id
    assert _outcomes(line_bundle.store) == outcomes
    assert (again.directory / "evaluations.parquet").read_bytes() == before


def test_same_result_with_one_and_two_workers(line_bundle: LineBundle, tmp_path: Path) -> None:
    one = _calibrate(line_bundle, algorithm="tpe", workers=1)
    two = modelops.calibrate(
        "line.Line", line_bundle.targets, bundle=line_bundle.path, store=tmp_path / "other",
        algorithm="tpe", budget=12, replicates=2, batch=4, seed=3, top_k=2, workers=2,
        fix=line_bundle.fix,
    )  # fmt: skip
    assert one.calibration_id == two.calibration_id
    name = "evaluations.parquet"
    assert (one.directory / name).read_bytes() == (two.directory / name).read_bytes()
    assert (one.directory / "best.json").read_bytes() == (two.directory / "best.json").read_bytes()


def test_a_second_calibration_reuses_every_simulation(line_bundle: LineBundle) -> None:
    first = _calibrate(line_bundle, algorithm="sobol")
    outcomes = _outcomes(line_bundle.store)
    second = _calibrate(line_bundle, algorithm="sobol", top_k=1)  # another id, same points
    assert second.calibration_id != first.calibration_id
    evaluations = second.evaluations()
    assert evaluations.equals(first.evaluations())
    record = json.loads((second.directory / "calibration.json").read_text())
    assert record["result"]["tasks_run"] == 0  # search and re-evaluation: all cached
    assert _outcomes(line_bundle.store) > outcomes  # recorded as cached in the new jobs


@pytest.mark.parametrize("algorithm", ["tpe", "cmaes"])
def test_optimizers_approach_the_truth(line_bundle: LineBundle, algorithm: str) -> None:
    cal = _calibrate(line_bundle, algorithm=algorithm, budget=48, batch=8, workers=2)
    best = cal.best
    assert best is not None
    assert abs(best["params"]["slope"] - TRUE["slope"]) < 0.5
    assert isinstance(best["params"]["width"], int)


def test_abc_smc_gives_a_posterior(line_bundle: LineBundle) -> None:
    cal = _calibrate(
        line_bundle, algorithm="abc-smc", budget=80, batch=20, settings={"population": 20}
    )
    posterior = cal.posterior()
    assert posterior is not None
    assert {"population", "slope", "offset", "weight", "distance", "epsilon"} <= set(
        posterior.columns
    )
    last = posterior.filter(pl.col("population") == posterior["population"].max())
    assert last.height == 20
    assert abs(last["weight"].sum() - 1.0) < 1e-9
    summary = cal.result()["posterior"]
    assert set(summary) == {"slope", "offset"}
    assert summary["slope"]["q05"] <= summary["slope"]["q50"] <= summary["slope"]["q95"]
    populations = json.loads((cal.directory / "populations.json").read_text())["populations"]
    assert populations[0]["epsilon"] is None
    assert all(p["size"] == 20 for p in populations)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": "hill-climb"}, "unknown algorithm"),
        ({"budget": 0}, "budget"),
        ({"replicates": 0}, "replicates"),
        ({"fix": {"slope": 1.0, "offset": 5.0, "width": 5}}, "no free parameter"),
    ],
)
def test_bad_input_writes_nothing(line_bundle: LineBundle, kwargs: dict, message: str) -> None:
    with pytest.raises(ContractViolationError, match=message):
        _calibrate(line_bundle, **kwargs)
    assert not (line_bundle.store / "calibrations").exists()


def test_a_target_naming_an_unknown_output_writes_nothing(line_bundle: LineBundle) -> None:
    bad = line_bundle.targets.with_name("bad.yaml")
    bad.write_text(
        line_bundle.targets.read_text().replace("output: series", "output: nowhere"),
        encoding="utf-8",
    )
    with pytest.raises(ModelError, match="nowhere"):
        modelops.calibrate(
            "line.Line", bad, bundle=line_bundle.path, store=line_bundle.store, budget=4,
            fix=line_bundle.fix,
        )  # fmt: skip
    assert not (line_bundle.store / "calibrations").exists()


def test_same_result_on_a_dask_cluster(
    line_bundle: LineBundle, tmp_path: Path, dask_cluster: DaskCluster
) -> None:
    local = _calibrate(line_bundle, algorithm="tpe")
    on_dask = modelops.calibrate(
        "line.Line", line_bundle.targets, bundle=line_bundle.path, store=tmp_path / "dask",
        algorithm="tpe", budget=12, replicates=2, batch=4, seed=3, top_k=2,
        scheduler=dask_cluster.address, fix=line_bundle.fix,
    )  # fmt: skip
    assert on_dask.calibration_id == local.calibration_id
    for name in ("evaluations.parquet", "best.json"):
        assert (on_dask.directory / name).read_bytes() == (local.directory / name).read_bytes()


def test_changed_data_is_a_new_calibration_not_the_remembered_one(line_bundle: LineBundle) -> None:
    first = _calibrate(line_bundle)
    data = line_bundle.targets.with_name("observed.csv")
    data.write_text(data.read_text().replace("t,y\n0,10.0", "t,y\n0,11.0"), encoding="utf-8")
    second = _calibrate(line_bundle)
    assert second.calibration_id != first.calibration_id
    assert second.best is not None and second.best != first.best
