"""Scoring the SIR study against its synthetic observed data, and the loss table's contract."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import modelops
from modelops.analysis import Target, aggregate, load_scores, load_targets, score
from modelops_contracts import ContractViolationError
from tests.conftest import ToyBundle
from tests.modelops.analysis.conftest import (
    GAPPY_OBSERVED,
    GAPPY_REPLICATES,
    GAPPY_SETS,
    TRUE_PARAMS,
    GappyJob,
    SirJob,
    observed_attack_rate,
)


def attack_rate_target(directory: Path, weight: float = 1.0) -> Target:
    """A scalar target: the observed epidemic's attack rate against ``summary.attack_rate``."""
    path = directory / "attack_rate.parquet"
    pl.DataFrame({"attack_rate": [observed_attack_rate()]}).write_parquet(path)
    return Target(
        name="attack_rate", output="summary", data=path, on=(), value="attack_rate",
        observed="attack_rate", loss="mse_of_mean", weight=weight,
    )  # fmt: skip


def params_of(row: dict[str, Any]) -> dict[str, float]:
    return {"beta": row["beta"], "gamma": row["gamma"]}


def test_attack_rate_target_recovers_the_true_parameters(sir_job: SirJob, tmp_path: Path) -> None:
    table = score(sir_job.handle, [attack_rate_target(tmp_path)], write=False)
    assert params_of(table.row(0, named=True)) == TRUE_PARAMS
    assert table["loss"].is_sorted()


def test_weighted_combination_recovers_the_true_parameters(sir_job: SirJob, tmp_path: Path) -> None:
    cases = load_targets(sir_job.targets_file)[0]
    targets = [attack_rate_target(tmp_path, weight=1e7), cases]
    table = score(sir_job.handle, targets, write=False)
    assert params_of(table.row(0, named=True)) == TRUE_PARAMS
    want = 1e7 * table["loss_attack_rate"] + table["loss_cases"]
    np.testing.assert_allclose(table["loss"].to_numpy(), want.to_numpy())


def test_daily_cases_rank_the_true_parameters_near_the_top(scored_sir_job: SirJob) -> None:
    # the observed epidemic peaks about a week later than the replicate mean of the true
    # parameters, so a pointwise daily loss also likes the slower (0.2, 0.05) epidemic
    table = load_scores(scored_sir_job.handle.store, scored_sir_job.job_id)
    assert table is not None
    top = [params_of(row) for row in table.head(2).iter_rows(named=True)]
    assert TRUE_PARAMS in top
    assert params_of(table.row(-1, named=True)) == {"beta": 0.5, "gamma": 0.05}


def test_loss_table_matches_a_direct_computation(sir_job: SirJob) -> None:
    cases = load_targets(sir_job.targets_file)[0]
    target = Target(
        **{**cases.to_dict(), "data": cases.data, "on": cases.on, "loss": "mse_of_mean"}
    )
    table = score(sir_job.handle, [target], write=False)
    observed = pl.read_csv(cases.data)
    means = aggregate(sir_job.handle, "incidence", ["day"], columns=["new_cases"])
    want = (
        means.join(observed, on="day")
        .group_by("param_id")
        .agg(((pl.col("cases") - pl.col("new_cases_mean")) ** 2).mean().alias("want"))
    )
    joined = table.join(want, on="param_id")
    assert joined.height == 9
    np.testing.assert_allclose(joined["loss_cases"].to_numpy(), joined["want"].to_numpy())
    assert table.columns == [
        "param_id", "beta", "gamma", "loss_cases", "loss", "missing_points", "n_replicates",
        "n_tasks", "failed",
    ]  # fmt: skip
    assert table["n_replicates"].to_list() == [5] * 9
    assert not table["failed"].any()


def test_scores_are_written_next_to_the_results(scored_sir_job: SirJob) -> None:
    path = scored_sir_job.handle.store.job_dir(scored_sir_job.job_id) / "scores.parquet"
    written = pl.read_parquet(path)
    assert written.height == 9 and written["loss"].is_sorted()


def test_user_loss_sees_replicates_by_points(
    sir_job: SirJob, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shape_loss.py").write_text(
        "def shape(observed, simulated):\n"
        "    assert observed.shape == (simulated.shape[1],)\n"
        "    return simulated.shape[0] * 1000 + simulated.shape[1]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = load_targets(sir_job.targets_file)[0]
    target = Target(
        **{**cases.to_dict(), "data": cases.data, "on": cases.on, "loss": "shape_loss:shape"}
    )
    table = score(sir_job.handle, [target], write=False)
    assert table["loss"].to_list() == [5100.0] * 9


def test_missing_column_is_a_contract_error(sir_job: SirJob) -> None:
    cases = load_targets(sir_job.targets_file)[0]
    target = Target(**{**cases.to_dict(), "data": cases.data, "on": cases.on, "value": "nope"})
    with pytest.raises(ContractViolationError, match="no column"):
        score(sir_job.handle, [target], write=False)


def test_parameter_sets_with_failed_replicates_are_flagged(toy_bundle: ToyBundle) -> None:
    handle = modelops.run(
        toy_bundle.study("boom", xs=[1, 2, 3]), bundle=toy_bundle.path,
        store=toy_bundle.store, workers=2,
    )  # fmt: skip
    observed = toy_bundle.path.parent / "obs.csv"
    pl.DataFrame({"step": [0, 1, 2], "value": [0.5, 1.5, 2.5]}).write_csv(observed)
    target = Target("series", "series", observed, ("step",), "value", "value")
    table = score(handle, [target])
    flagged = table.filter(pl.col("failed"))
    assert flagged["x"].to_list() == [3]
    assert flagged["n_replicates"].to_list() == [0]
    assert flagged["loss"].to_list() == [None]  # not averaged over fewer replicates
    assert flagged["missing_points"].to_list() == [3]  # no replicate simulated any point
    assert table["loss"].null_count() == 1 and table["loss"][-1] is None


def poisson(observed: list[int], rate: float) -> float:
    return sum(rate - y * math.log(rate) + math.lgamma(y + 1) for y in observed)


def gappy_rows(job: GappyJob) -> dict[str, dict[str, Any]]:
    """The loss table's rows by the name of their set in GAPPY_SETS, and the table's order."""
    table = score(job.handle, [job.target], write=False)
    names = {tuple(v.values()): k for k, v in GAPPY_SETS.items()}
    rows = {}
    for rank, row in enumerate(table.iter_rows(named=True)):
        rows[names[row["rate"], row["n"], row["ragged"]]] = {**row, "rank": rank}
    return rows


def test_a_set_with_missing_points_is_flagged_and_sorts_last(gappy_job: GappyJob) -> None:
    rows = gappy_rows(gappy_job)
    short = rows["short"]
    # a sum over the one point it simulated would be lower than the full set's three-point sum
    assert poisson(GAPPY_OBSERVED["cases"][:1], 5.0) < poisson(GAPPY_OBSERVED["cases"], 5.0)
    assert short["missing_points"] == 2
    assert short["loss_cases"] is None and short["loss"] is None
    assert short["rank"] == len(GAPPY_SETS) - 1
    assert not short["failed"] and short["n_replicates"] == GAPPY_REPLICATES


def test_a_point_missing_in_some_replicates_still_counts(gappy_job: GappyJob) -> None:
    raw = gappy_job.handle.results("counts").filter(pl.col("ragged") == 1)
    per_replicate = raw.group_by("task_id").len()["len"].to_list()
    assert sorted(set(per_replicate)) == [1, 3]  # some replicates lack steps 1 and 2
    rows = gappy_rows(gappy_job)
    want = poisson(GAPPY_OBSERVED["cases"], 5.0)  # all three points, rate from those that have it
    for name in ("full", "ragged"):
        assert rows[name]["missing_points"] == 0
        assert rows[name]["loss"] == pytest.approx(want)
        assert rows[name]["rank"] < rows["short"]["rank"]


def test_negbin_and_gaussian_targets_score_the_replicate_mean(gappy_job: GappyJob) -> None:
    from scipy import stats

    cases = GAPPY_OBSERVED["cases"]
    negbin = dataclasses.replace(gappy_job.target, name="nb", loss="negbin_nll", dispersion=2.0)
    gaussian = dataclasses.replace(gappy_job.target, name="g", loss="gaussian_nll", sigma=1.5)
    table = score(gappy_job.handle, [negbin, gaussian], write=False)
    full = table.filter((pl.col("n") == 3) & (pl.col("ragged") == 0)).row(0, named=True)
    # every replicate simulates 5.0, so the replicate mean is 5.0 at each point
    assert full["loss_nb"] == pytest.approx(-stats.nbinom(n=2.0, p=2.0 / 7.0).logpmf(cases).sum())
    assert full["loss_g"] == pytest.approx(-stats.norm(5.0, 1.5).logpdf(cases).sum())
    written = Target(**{**negbin.to_dict(), "data": negbin.data, "on": negbin.on})
    assert written == negbin
