"""Bad values reaching the analysis API: contract errors naming the problem, never a crash."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import polars as pl
import pytest

from modelops.analysis import aggregate, draw_output, score, targets_from_dicts
from modelops_contracts import ContractViolationError
from tests.modelops.analysis.conftest import GappyJob


def _target(**overrides: object) -> dict[str, object]:
    item: dict[str, object] = {
        "name": "cases",
        "output": "counts",
        "data": "observed.csv",
        "on": ["step"],
        "value": "expected",
        "observed": "cases",
    }
    return {**item, **overrides}


@pytest.mark.parametrize("weight", [-1, -0.5, math.nan, math.inf, "heavy", True])
def test_a_weight_must_be_finite_and_not_negative(weight: object) -> None:
    with pytest.raises(ContractViolationError, match="weight must be a finite number >= 0"):
        targets_from_dicts([_target(weight=weight)])


def test_a_zero_weight_is_accepted() -> None:
    (target,) = targets_from_dicts([_target(weight=0)])
    assert target.weight == 0.0


def test_on_must_name_columns() -> None:
    with pytest.raises(ContractViolationError, match="'on' must be a column name"):
        targets_from_dicts([_target(on=7)])


@pytest.mark.parametrize(
    ("body", "raised"),
    [
        ("raise RuntimeError('the loss is broken')", "RuntimeError: the loss is broken"),
        ("raise KeyError('day')", "KeyError: 'day'"),
        ("return 1 / 0", "ZeroDivisionError"),
        ("return 'low'", "returned 'low', not a number"),
    ],
)
def test_a_user_loss_that_fails_is_one_contract_error(
    gappy_job: GappyJob,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    raised: str,
) -> None:
    module = f"hostile_loss_{abs(hash(body))}"
    (tmp_path / f"{module}.py").write_text(f"def loss(observed, simulated):\n    {body}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    target = dataclasses.replace(gappy_job.target, loss=f"{module}:loss")
    with pytest.raises(ContractViolationError) as caught:
        score(gappy_job.handle, [target], write=False)
    assert f"loss '{module}:loss'" in str(caught.value)
    assert raised in str(caught.value)


def test_a_user_loss_module_that_fails_at_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hostile_import_loss.py").write_text("raise RuntimeError('no import for you')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ContractViolationError, match="RuntimeError: no import for you"):
        targets_from_dicts([_target(loss="hostile_import_loss:loss")])


def test_a_non_numeric_observed_value(gappy_job: GappyJob, tmp_path: Path) -> None:
    data = tmp_path / "text.csv"
    pl.DataFrame({"step": [0, 1, 2], "cases": ["4", "six", "5"]}).write_csv(data)
    target = dataclasses.replace(gappy_job.target, data=data)
    with pytest.raises(ContractViolationError, match=r"must hold numbers.*'six'"):
        score(gappy_job.handle, [target], write=False)
    with pytest.raises(ContractViolationError, match="must hold numbers"):
        draw_output(gappy_job.handle, "counts", "step", "expected", targets=[target])


@pytest.mark.parametrize(
    ("by", "match"),
    [
        (["rate"], "it is a parameter"),
        (["task_id"], "it is a key column"),
        (["step", "step"], "given twice"),
        (["nope"], "no column 'nope'"),
    ],
)
def test_aggregate_refuses_grouping_columns(gappy_job: GappyJob, by: list[str], match: str) -> None:
    with pytest.raises(ContractViolationError, match=match):
        aggregate(gappy_job.handle, "counts", by)


def test_aggregate_of_a_parameter_named_n(gappy_job: GappyJob) -> None:
    frame = aggregate(gappy_job.handle, "counts", ["step"])
    assert {"n", "n_replicates", "expected_mean"} <= set(frame.columns)
    full = frame.filter((pl.col("rate") == 5.0) & (pl.col("n") == 3) & (pl.col("ragged") == 0))
    assert full["n_replicates"].to_list() == [4, 4, 4]


def test_plot_refuses_a_parameter_on_the_x_axis(gappy_job: GappyJob) -> None:
    with pytest.raises(ContractViolationError, match="cannot plot against 'rate'"):
        draw_output(gappy_job.handle, "counts", "rate", "expected")


@pytest.mark.parametrize("name", ["dispersion", "sigma"])
@pytest.mark.parametrize("value", [0, -2, math.nan, math.inf, "wide", True, [1]])
def test_a_loss_parameter_must_be_a_finite_number_above_zero(name: str, value: object) -> None:
    loss = {"dispersion": "negbin_nll", "sigma": "gaussian_nll"}[name]
    with pytest.raises(ContractViolationError, match=f"{name} must be a finite number > 0"):
        targets_from_dicts([_target(loss=loss, **{name: value})])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss": "negbin_nll"}, "target 'cases': negbin_nll needs 'dispersion'"),
        ({"loss": "gaussian_nll"}, "target 'cases': gaussian_nll needs 'sigma'"),
        ({"dispersion": 3}, "'dispersion' is only for loss negbin_nll, not 'mse_of_mean'"),
        ({"loss": "poisson_nll", "sigma": 1}, "'sigma' is only for loss gaussian_nll"),
        ({"loss": "negbin_nll", "dispersion": 2, "sigma": 1}, "'sigma' is only for loss"),
        ({"loss": "gaussian_nll", "dispersion": 2, "sigma": 1}, "'dispersion' is only for"),
    ],
)
def test_a_loss_parameter_belongs_to_its_loss(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ContractViolationError, match=message) as caught:
        targets_from_dicts([_target(**overrides)])
    assert "\n" not in str(caught.value)


def test_a_target_built_in_code_is_checked_too(gappy_job: GappyJob) -> None:
    with pytest.raises(ContractViolationError, match="negbin_nll needs 'dispersion'"):
        dataclasses.replace(gappy_job.target, loss="negbin_nll")
    with pytest.raises(ContractViolationError, match="'sigma' is only for loss gaussian_nll"):
        dataclasses.replace(gappy_job.target, sigma=1.0)
    target = dataclasses.replace(gappy_job.target, loss="gaussian_nll", sigma=2)
    assert target.sigma == 2.0 and isinstance(target.sigma, float)
