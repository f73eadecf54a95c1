"""A job above the grouped-encoding threshold reads like any other: aggregate, score, plots.

Jobs of more than ``GROUPED_THRESHOLD`` tasks are written as a template plus one group per
parameter set instead of one record per task; analysis must see the same parameter sets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

import modelops
from modelops.analysis import Target, aggregate, draw_loss, draw_output, score
from modelops.api import JobHandle
from modelops.services import InProcessSimulationService
from modelops_contracts import SimulationStudy
from modelops_contracts.job import GROUPED_THRESHOLD
from tests.modelops.cli.conftest import run_mops

MODEL = """
def run(params, seed):
    a, b = params["a"], params["b"]
    return {"series": {"step": [0, 1, 2], "value": [a * s + b + seed % 2 for s in range(3)]}}
"""
SETS = [{"a": 1.0, "b": 10}, {"a": 2.0, "b": 20}, {"a": 3.0, "b": 30}]
REPLICATES = GROUPED_THRESHOLD // len(SETS) + 1


@dataclass(frozen=True)
class LargeJob:
    handle: JobHandle
    target: Target


@pytest.fixture(scope="module")
def large_job(tmp_path_factory: pytest.TempPathFactory) -> LargeJob:
    root = tmp_path_factory.mktemp("large")
    bundle = root / "bundle"
    bundle.mkdir()
    (bundle / "large_model.py").write_text(MODEL, encoding="utf-8")
    study = SimulationStudy(model="large_model.run", parameter_sets=SETS, n_replicates=REPLICATES)
    backend = InProcessSimulationService()
    handle = modelops.run(study, bundle=bundle, store=root / "store", backend=backend)
    assert handle.summary is not None and handle.summary.succeeded == len(SETS) * REPLICATES
    document = json.loads(handle.store.read_job_file(handle.job_id))
    assert "groups" in document and "tasks" not in document  # the compact encoding
    observed = root / "observed.csv"  # the a=2 set without its seed noise: it scores best
    pl.DataFrame({"step": [0, 1, 2], "v": [20.5, 22.5, 24.5]}).write_csv(observed)
    return LargeJob(handle, Target("v", "series", observed, ("step",), "value", "v"))


def test_aggregate_has_the_parameters_as_columns(large_job: LargeJob) -> None:
    got = aggregate(large_job.handle, "series", by=["step"])
    assert got.columns[:5] == ["param_id", "a", "b", "step", "n"]
    assert not [c for c in got.columns if c.startswith(("a_", "b_"))]
    assert got.height == len(SETS) * 3
    assert got["n"].to_list() == [REPLICATES] * got.height
    assert sorted(set(zip(got["a"], got["b"], strict=True))) == [(1.0, 10), (2.0, 20), (3.0, 30)]


def test_results_aggregate_from_the_command_line(large_job: LargeJob, tmp_path: Path) -> None:
    out = tmp_path / "agg.csv"
    store = large_job.handle.store.root
    args = ("results", large_job.handle.job_id, "series", "--aggregate", "-o", out)
    result = run_mops(*args, "--store", store)
    assert result.code == 0, result.stderr
    frame = pl.read_csv(out)
    assert frame.columns[:4] == ["param_id", "a", "b", "n"]
    assert frame.height == len(SETS) and "a_mean" not in frame.columns


def test_score_has_one_row_per_set(large_job: LargeJob) -> None:
    table = score(large_job.handle, [large_job.target], write=False)
    assert table.height == len(SETS)
    assert table["a"].to_list()[0] == 2.0 and table["b"].to_list()[0] == 20
    assert table["n_tasks"].to_list() == [REPLICATES] * len(SETS)
    assert table["n_replicates"].to_list() == [REPLICATES] * len(SETS)
    assert table["loss"].null_count() == 0 and table["loss"].is_sorted()
    assert not table["failed"].any() and table["missing_points"].sum() == 0


def test_plots_label_every_set_with_its_parameters(large_job: LargeJob) -> None:
    unscored = draw_output(large_job.handle, "series", "step", "value")
    labels = [text.get_text() for text in unscored.axes[0].get_legend().get_texts()]
    assert sorted(labels) == ["a=1, b=10", "a=2, b=20", "a=3, b=30"]

    table = score(large_job.handle, [large_job.target])  # written: the plots now rank sets
    ranked = [
        f"#{rank + 1} a={row['a']:g}, b={row['b']}"
        for rank, row in enumerate(table.iter_rows(named=True))
    ]
    scored = draw_output(large_job.handle, "series", "step", "value", best=len(SETS))
    labels = [text.get_text() for text in scored.axes[0].get_legend().get_texts()]
    assert labels == [*ranked, "observed (v)"]
    loss = draw_loss(large_job.handle)
    assert [axes.get_xlabel() for axes in loss.axes] == ["a", "b"]
