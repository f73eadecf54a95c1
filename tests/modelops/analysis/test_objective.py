"""The calibration objective: replicate-marginal likelihoods, jackknife errors, replicate order.

A small job of a toy model (each replicate's values scaled by a factor taken from its seed) is
run in this process; the objective is checked against direct computations on its raw results.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from scipy import stats

import modelops
from modelops.analysis import Target, point_losses, score
from modelops.analysis._objective import jackknife_se, marginal_nll
from modelops.api import JobHandle
from modelops.services import InProcessSimulationService
from modelops.store import ResultStore, read_job
from modelops_contracts import ContractViolationError, SimulationStudy
from tests.modelops.analysis.conftest import GAPPY_OBSERVED, GappyJob

POINTS = 6
MODEL = f"""
import math


def run(params, seed):
    scale = 0.5 + math.sqrt(2.0) * (seed % 10007) / 10007  # many digits, one per replicate
    values = [params["rate"] * scale * (1.0 + step / 7.0) for step in range({POINTS})]
    return {{"counts": {{"step": list(range({POINTS})), "expected": values}}}}
"""
RATES = [2.0, 5.0, 9.0]
REPLICATES = 5
OBSERVED = [3.0, 5.0, 4.0, 8.0, 7.0, 9.0]


@dataclass(frozen=True)
class ToyJob:
    handle: JobHandle
    data: Path

    def target(self, loss: str = "poisson_nll", **fields: object) -> Target:
        fields = {"name": loss, **fields}
        return Target(
            output="counts", data=self.data, on=("step",), value="expected", observed="cases",
            loss=loss, **fields,  # type: ignore[arg-type]
        )  # fmt: skip

    def values(self, param_id: str, first_replicate: int = 0) -> np.ndarray:
        """The set's simulated values, replicates by points, from the raw results."""
        raw = self.handle.results("counts").filter(
            (pl.col("param_id") == param_id) & (pl.col("replicate") >= first_replicate)
        )
        ordered = raw.sort(["replicate", "step"])["expected"].to_numpy()
        return ordered.reshape(-1, POINTS)


def run_toy_job(root: Path) -> ToyJob:
    bundle = root / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "toy_objective.py").write_text(MODEL, encoding="utf-8")
    study = SimulationStudy(
        model="toy_objective.run",
        parameter_sets=[{"rate": rate} for rate in RATES],
        n_replicates=REPLICATES,
    )
    handle = modelops.run(
        study, bundle=bundle, store=root / "store", backend=InProcessSimulationService()
    )
    assert handle.summary is not None and handle.summary.failed == 0
    data = root / "observed.csv"
    pl.DataFrame({"step": list(range(POINTS)), "cases": OBSERVED}).write_csv(data)
    return ToyJob(handle, data)


@pytest.fixture(scope="module")
def toy_job(tmp_path_factory: pytest.TempPathFactory) -> ToyJob:
    return run_toy_job(tmp_path_factory.mktemp("objective"))


def direct_marginal(nll: np.ndarray) -> tuple[float, float]:
    """``-log(mean(exp(-nll)))`` and its delta-method error, computed the plain way."""
    likelihoods = np.exp(-nll)
    mean = likelihoods.mean()
    return -float(np.log(mean)), likelihoods.std(ddof=1) / (math.sqrt(len(nll)) * mean)


# -- the estimators ----------------------------------------------------------------------------


def test_marginal_matches_a_direct_computation() -> None:
    nll = np.array([3.0, 5.5, 4.25, 9.0])
    loss, se = marginal_nll(nll)
    want_loss, want_se = direct_marginal(nll)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    assert se == pytest.approx(want_se, rel=1e-12)
    assert loss is not None and min(nll) <= loss <= min(nll) + math.log(len(nll))


def test_marginal_is_stable_for_large_losses() -> None:
    nll = np.array([1000.0, 1001.0, 1003.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        assert direct_marginal(nll)[0] == math.inf  # exp(-1000) underflows to 0
    loss, se = marginal_nll(nll)
    want_loss, want_se = direct_marginal(nll - 1000.0)  # shifted by hand
    assert loss == pytest.approx(1000.0 + want_loss, rel=1e-14)
    assert se == pytest.approx(want_se, rel=1e-12)  # the error does not depend on the shift


def test_marginal_of_one_replicate_has_no_error() -> None:
    assert marginal_nll(np.array([7.5])) == (7.5, None)
    assert marginal_nll(np.array([])) == (None, None)


def test_jackknife_matches_a_hand_computation() -> None:
    # leave-one-out values 1, 2, 3, 4: mean 2.5, squared deviations 2.25 + 0.25 + 0.25 + 2.25
    assert jackknife_se(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(math.sqrt(0.75 * 5.0))
    assert jackknife_se(np.array([1.0, math.nan])) is None


# -- point_losses on a real job ---------------------------------------------------------------


def test_likelihood_targets_use_the_replicate_marginal(toy_job: ToyJob) -> None:
    table = point_losses(toy_job.handle, [toy_job.target()])
    y = np.array(OBSERVED)
    for row in table.iter_rows(named=True):
        values = toy_job.values(row["param_id"])
        nll = np.array([-stats.poisson.logpmf(y, v).sum() for v in values])
        loss, se = direct_marginal(nll)
        assert row["loss_poisson_nll"] == pytest.approx(loss, rel=1e-12)
        assert row["loss"] == row["loss_poisson_nll"]
        assert row["loss_se"] == pytest.approx(se, rel=1e-9)
        assert (row["n_replicates"], row["failed"]) == (REPLICATES, False)
    # the marginal is not the plug-in likelihood of the mean that score reports
    scored = score(toy_job.handle, [toy_job.target()], write=False)
    plug_in = dict(zip(scored["param_id"], scored["loss"], strict=True))
    assert all(
        plug_in[p] != pytest.approx(v)
        for p, v in zip(table["param_id"], table["loss"], strict=True)
    )


def test_other_losses_are_the_score_with_a_jackknife_error(toy_job: ToyJob) -> None:
    target = toy_job.target("mse_of_mean")
    table = point_losses(toy_job.handle, [target])
    scored = score(toy_job.handle, [target], write=False)
    assert dict(zip(table["param_id"], table["loss"], strict=True)) == dict(
        zip(scored["param_id"], scored["loss"], strict=True)
    )
    y = np.array(OBSERVED)
    for row in table.iter_rows(named=True):
        values = toy_job.values(row["param_id"])
        left_out = [
            np.mean((y - np.delete(values, r, axis=0).mean(axis=0)) ** 2) for r in range(REPLICATES)
        ]
        spread = sum((v - np.mean(left_out)) ** 2 for v in left_out)
        assert row["loss_se"] == pytest.approx(math.sqrt((REPLICATES - 1) / REPLICATES * spread))


def test_targets_add_up_with_their_weights(toy_job: ToyJob) -> None:
    targets = [
        toy_job.target("poisson_nll", weight=1.0),
        toy_job.target("negbin_nll", dispersion=3.0, weight=0.5),
        toy_job.target("gaussian_nll", sigma=2.0, weight=2.0),
        toy_job.target("mse_of_mean", weight=0.1),
    ]
    table = point_losses(toy_job.handle, targets)
    assert table.columns == [
        "param_id", "loss_poisson_nll", "loss_negbin_nll", "loss_gaussian_nll",
        "loss_mse_of_mean", "loss", "loss_se", "n_replicates", "failed",
    ]  # fmt: skip
    singles = [point_losses(toy_job.handle, [dataclasses.replace(t, weight=1.0)]) for t in targets]
    y = np.array(OBSERVED)
    for i, row in enumerate(table.iter_rows(named=True)):
        values = toy_job.values(row["param_id"])
        negbin = [-stats.nbinom(n=3.0, p=3.0 / (3.0 + v)).logpmf(y).sum() for v in values]
        gaussian = [-stats.norm(loc=v, scale=2.0).logpdf(y).sum() for v in values]
        assert row["loss_negbin_nll"] == pytest.approx(direct_marginal(np.array(negbin))[0])
        assert row["loss_gaussian_nll"] == pytest.approx(direct_marginal(np.array(gaussian))[0])
        losses = [single["loss"][i] for single in singles]
        errors = [single["loss_se"][i] for single in singles]
        weights = [t.weight for t in targets]
        assert row["loss"] == pytest.approx(
            sum(w * v for w, v in zip(weights, losses, strict=True))
        )
        want_se = math.sqrt(sum((w * e) ** 2 for w, e in zip(weights, errors, strict=True)))
        assert row["loss_se"] == pytest.approx(want_se)


def test_a_very_unlikely_fit_still_has_a_finite_marginal(toy_job: ToyJob) -> None:
    target = toy_job.target("gaussian_nll", sigma=0.01)
    table = point_losses(toy_job.handle, [target])
    y = np.array(OBSERVED)
    for row in table.iter_rows(named=True):
        nll = np.array(
            [
                -stats.norm(loc=v, scale=0.01).logpdf(y).sum()
                for v in toy_job.values(row["param_id"])
            ]
        )
        assert nll.min() > 1000  # every exp(-nll) underflows
        shift = nll.min()
        assert row["loss"] == pytest.approx(shift + direct_marginal(nll - shift)[0], rel=1e-12)
        assert math.isfinite(row["loss_se"])


def test_rows_follow_the_job_order(toy_job: ToyJob) -> None:
    job = read_job(toy_job.handle.store, toy_job.handle.job_id)
    table = point_losses(toy_job.handle.job_id, [toy_job.target()], store=toy_job.handle.store)
    assert table["param_id"].to_list() == list(job.parameter_sets())
    assert not table["loss"].is_sorted()  # the rates' losses are not in increasing order
    given = point_losses(toy_job.handle, [toy_job.target()], sim_job=job)
    assert given.equals(table)


def test_first_replicate_leaves_out_the_earlier_replicates(toy_job: ToyJob) -> None:
    table = point_losses(toy_job.handle, [toy_job.target()], first_replicate=2)
    y = np.array(OBSERVED)
    for row in table.iter_rows(named=True):
        values = toy_job.values(row["param_id"], first_replicate=2)
        assert len(values) == REPLICATES - 2
        nll = np.array([-stats.poisson.logpmf(y, v).sum() for v in values])
        assert row["loss"] == pytest.approx(direct_marginal(nll)[0], rel=1e-12)
        assert (row["n_replicates"], row["failed"]) == (REPLICATES - 2, False)
    last = point_losses(toy_job.handle, [toy_job.target()], first_replicate=REPLICATES - 1)
    assert last["n_replicates"].to_list() == [1] * len(RATES)
    assert last["loss_se"].to_list() == [None] * len(RATES)  # one replicate: no error
    assert last["loss"].null_count() == 0


def test_bad_arguments(toy_job: ToyJob, gappy_job: GappyJob) -> None:
    with pytest.raises(ContractViolationError, match="at least one target"):
        point_losses(toy_job.handle, [])
    with pytest.raises(ContractViolationError, match="cannot be named 'se'"):
        point_losses(toy_job.handle, [toy_job.target(name="se")])
    for bad in (-1, 1.5, True):
        with pytest.raises(ContractViolationError, match="first_replicate must be an int >= 0"):
            point_losses(toy_job.handle, [toy_job.target()], first_replicate=bad)  # type: ignore[arg-type]
    other = read_job(gappy_job.handle.store, gappy_job.job_id)
    with pytest.raises(ContractViolationError, match="sim_job is job"):
        point_losses(toy_job.handle, [toy_job.target()], sim_job=other)


# -- missing points ---------------------------------------------------------------------------


def gappy_rows(job: GappyJob) -> dict[tuple[object, object], dict[str, Any]]:
    """The objective's rows of the gappy job by (n, ragged) of their set."""
    table = point_losses(job.handle, [job.target])
    sets = read_job(job.handle.store, job.job_id).parameter_sets()
    rows: dict[tuple[object, object], dict[str, Any]] = {}
    for row in table.iter_rows(named=True):
        params = sets[row["param_id"]].params
        rows[params["n"], params["ragged"]] = row
    return rows


def test_missing_points_and_incomplete_replicates(gappy_job: GappyJob) -> None:
    rows = gappy_rows(gappy_job)
    poisson = -stats.poisson.logpmf(GAPPY_OBSERVED["cases"], 5.0).sum()
    full, short, ragged = rows[3, 0], rows[1, 0], rows[3, 1]
    assert full["loss"] == pytest.approx(poisson) and full["loss_se"] == 0.0
    assert short["loss"] is None and short["loss_se"] is None  # no replicate has steps 1, 2
    assert short["n_replicates"] == 4 and not short["failed"]
    # only the even-seed replicates are complete: the marginal is over them alone
    assert ragged["loss"] == pytest.approx(poisson) and ragged["loss_se"] == 0.0
    assert ragged["n_replicates"] == 4


# -- determinism ------------------------------------------------------------------------------


def shuffle_shards(root: Path, seed: int) -> None:
    """Rewrite every result shard of the store at ``root`` with its rows in another order."""
    rng = np.random.default_rng(seed)
    for path in sorted((root / "jobs").glob("*/outputs/*/part-*.parquet")):
        table = pq.read_table(path)
        order = rng.permutation(table.num_rows)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table.take(order), tmp)
        tmp.replace(path)


def test_the_same_results_in_another_row_order_give_identical_losses(
    toy_job: ToyJob, tmp_path: Path
) -> None:
    targets = [
        toy_job.target("poisson_nll"),
        toy_job.target("mse_of_mean"),
        toy_job.target("gaussian_nll", sigma=1.5),
    ]
    copy = tmp_path / "store"
    shutil.copytree(toy_job.handle.store.root, copy)
    shuffle_shards(copy, seed=7)
    job_id = toy_job.handle.job_id
    shuffled = ResultStore(copy, readonly=True)
    try:
        before = toy_job.handle.results("counts")
        after = shuffled.read_results(job_id, "counts")
        assert after.sort(["task_id", "step"]).equals(before.sort(["task_id", "step"]))
        assert before["task_id"].to_list() != after["task_id"].to_list()  # really reordered
        for first in (0, 2):
            want = point_losses(toy_job.handle, targets, first_replicate=first)
            got = point_losses(job_id, targets, store=shuffled, first_replicate=first)
            assert got.to_dicts() == want.to_dicts()  # exact, not approximate
        want_scores = score(toy_job.handle, targets, write=False)
        got_scores = score(job_id, targets, store=shuffled, write=False)
        assert got_scores.to_dicts() == want_scores.to_dicts()
    finally:
        shuffled.close()
