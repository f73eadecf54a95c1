"""Each built-in loss against a hand computation on a tiny table; user losses by import path."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from modelops.analysis import (
    BUILTIN_LOSSES,
    LIKELIHOOD_LOSSES,
    Target,
    binomial_nll,
    gaussian_nll,
    load_targets,
    mean_of_mse,
    mse_of_mean,
    negbin_nll,
    poisson_nll,
    resolve_loss,
    targets_from_dicts,
)
from modelops_contracts import ContractViolationError

# two observed points; two replicates (rows) of the simulation
OBSERVED = np.array([1.0, 3.0])
SIMULATED = np.array([[0.0, 2.0], [2.0, 6.0]])  # replicate means: [1, 4]


def test_mse_of_mean() -> None:
    # ((1 - 1)^2 + (3 - 4)^2) / 2
    assert mse_of_mean(OBSERVED, SIMULATED) == pytest.approx(0.5)


def test_mean_of_mse() -> None:
    # ((1-0)^2 + (3-2)^2 + (1-2)^2 + (3-6)^2) / 4 = (1 + 1 + 1 + 9) / 4
    assert mean_of_mse(OBSERVED, SIMULATED) == pytest.approx(3.0)


def test_mean_of_mse_skips_missing_replicate_values() -> None:
    simulated = np.array([[0.0, np.nan], [2.0, 6.0]])
    assert mean_of_mse(OBSERVED, simulated) == pytest.approx((1 + 1 + 9) / 3)


def test_poisson_nll() -> None:
    # rates [1, 4]: (1 - 1 ln 1 + ln 1!) + (4 - 3 ln 4 + ln 3!)
    want = 1.0 + 4.0 - 3.0 * math.log(4.0) + math.log(6.0)
    assert poisson_nll(OBSERVED, SIMULATED) == pytest.approx(want)


def test_poisson_nll_survives_a_zero_rate() -> None:
    assert math.isfinite(poisson_nll(np.array([2.0]), np.array([[0.0]])))


def test_binomial_nll() -> None:
    observed, trials = np.array([2.0, 3.0]), np.array([10.0, 10.0])
    simulated = np.array([[0.1, 0.2], [0.3, 0.4]])  # probabilities; means [0.2, 0.3]
    want = -(
        math.log(math.comb(10, 2)) + 2 * math.log(0.2) + 8 * math.log(0.8)
        + math.log(math.comb(10, 3)) + 3 * math.log(0.3) + 7 * math.log(0.7)
    )  # fmt: skip
    assert binomial_nll(observed, simulated, trials) == pytest.approx(want)


COUNTS = np.array([0.0, 3.0, 12.0, 40.0])
REPLICATES = np.array([[0.5, 2.0, 10.0, 30.0], [1.5, 5.0, 16.0, 50.0]])  # means [1, 3.5, 13, 40]


@pytest.mark.parametrize("k", [0.3, 2.0, 50.0, 1e6])
def test_negbin_nll_matches_scipy(k: float) -> None:
    mu = REPLICATES.mean(axis=0)
    want = -stats.nbinom(n=k, p=k / (k + mu)).logpmf(COUNTS).sum()
    assert negbin_nll(COUNTS, REPLICATES, k) == pytest.approx(want, rel=1e-10)


def test_negbin_nll_tends_to_poisson_and_survives_a_zero_mean() -> None:
    assert negbin_nll(COUNTS, REPLICATES, 1e9) == pytest.approx(
        poisson_nll(COUNTS, REPLICATES), rel=1e-6
    )
    assert math.isfinite(negbin_nll(np.array([2.0]), np.array([[0.0]]), 5.0))


@pytest.mark.parametrize("sigma", [0.1, 1.0, 7.5])
def test_gaussian_nll_matches_scipy(sigma: float) -> None:
    mu = REPLICATES.mean(axis=0)
    want = -stats.norm(loc=mu, scale=sigma).logpdf(COUNTS).sum()
    assert gaussian_nll(COUNTS, REPLICATES, sigma) == pytest.approx(want, rel=1e-12)


def test_gaussian_nll_uses_the_replicates_that_have_a_value() -> None:
    simulated = np.array([[0.5, np.nan], [1.5, 2.0]])  # means [1, 2]
    want = -stats.norm(loc=[1.0, 2.0], scale=2.0).logpdf([1.0, 3.0]).sum()
    assert gaussian_nll(np.array([1.0, 3.0]), simulated, 2.0) == pytest.approx(want)


def test_likelihood_losses_are_builtins() -> None:
    assert set(BUILTIN_LOSSES) >= LIKELIHOOD_LOSSES
    assert set(BUILTIN_LOSSES) - LIKELIHOOD_LOSSES == {"mse_of_mean", "mean_of_mse"}
    assert resolve_loss("negbin_nll") is negbin_nll
    assert resolve_loss("gaussian_nll") is gaussian_nll


def _item(**overrides: object) -> dict[str, object]:
    item = {"name": "a", "output": "o", "data": "d.csv", "on": ["day"], "value": "v"}
    return {**item, **overrides}


def test_dispersion_and_sigma_round_trip() -> None:
    negbin, gaussian = targets_from_dicts(
        [_item(loss="negbin_nll", dispersion=4), _item(name="b", loss="gaussian_nll", sigma="2.5")]
    )
    assert (negbin.dispersion, negbin.sigma) == (4.0, None)
    assert (gaussian.dispersion, gaussian.sigma) == (None, 2.5)
    for target in (negbin, gaussian):
        (again,) = targets_from_dicts([target.to_dict()])
        assert again == target


def test_loss_arguments_decide_the_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pl.DataFrame({"day": [0, 1], "v": [1, 2], "n": [10, 20]})
    base = Target("a", "o", tmp_path / "d.csv", ("day",), "v", "v", trials="n")

    def arguments(**changes: object) -> tuple[object, ...]:
        return dataclasses.replace(base, **changes).loss_arguments(frame)  # type: ignore[arg-type]

    (trials,) = arguments(loss="binomial_nll")
    np.testing.assert_array_equal(trials, [10.0, 20.0])
    assert arguments(loss="negbin_nll", dispersion=3.0) == (3.0,)  # not the trials
    assert arguments(loss="gaussian_nll", sigma=0.5) == (0.5,)
    assert arguments(loss="poisson_nll") == ()
    (tmp_path / "arity_losses.py").write_text(
        "def two(observed, simulated):\n    return 0.0\n\n\n"
        "def three(observed, simulated, trials):\n    return float(trials.sum())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert arguments(loss="arity_losses:two") == ()
    (trials,) = arguments(loss="arity_losses:three")
    np.testing.assert_array_equal(trials, [10.0, 20.0])
    assert arguments(loss="arity_losses:three", trials=None) == ()


def test_user_loss_by_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_losses.py").write_text(
        "def total_gap(observed, simulated):\n"
        "    return float(abs(observed.sum() - simulated.mean(axis=0).sum()))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("my_losses:total_gap", "my_losses.total_gap"):
        assert resolve_loss(name)(OBSERVED, SIMULATED) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nonsense", "unknown loss 'nonsense'"),
        ("no_such_module_xyz:f", "cannot import loss"),
        ("math:pi", "is not callable"),
    ],
)
def test_bad_loss_names(name: str, message: str) -> None:
    with pytest.raises(ContractViolationError, match=message):
        resolve_loss(name)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_targets_file_reads_defaults_and_resolves_data_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.yaml",
        "targets:\n  - {name: a, output: incidence, data: obs.csv, on: [day], value: new_cases}\n",
    )
    (target,) = load_targets(path)
    assert target.on == ("day",)  # a bare YAML ``on:`` key is read as a field, not as true
    assert target.data == tmp_path / "obs.csv"
    assert (target.observed, target.loss, target.weight) == ("new_cases", "mse_of_mean", 1.0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("targets: []\n", "non-empty 'targets:' list"),
        ("targets:\n  - {name: a, output: o, data: d.csv, on: [day]}\n", "missing field"),
        ("targets:\n  - {name: a, output: o, data: d, on: x, value: v, colour: red}\n", "colour"),
        ("targets:\n  - {name: a, output: o, data: d, on: x, value: v, loss: bogus}\n", "bogus"),
        ("targets:\n  - {name: a, output: o, data: d, on: x, value: v, loss: binomial_nll}\n",
         "trials"),
        ("targets:\n  - {name: a, output: o, data: d, on: x, value: v}\n"
         "  - {name: a, output: o, data: d, on: x, value: v}\n", "unique"),
        ("targets:\n  - {name: a, output: o, data: d, on: x, value: v, loss: negbin_nll}\n",
         "negbin_nll needs 'dispersion'"),
        ("targets:\n  - {name: a, output: o, data: d, on: x, value: v, sigma: 1}\n",
         "'sigma' is only for loss gaussian_nll"),
    ],
)  # fmt: skip
def test_bad_targets_files(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ContractViolationError, match=message):
        load_targets(write(tmp_path / "t.yaml", body))
