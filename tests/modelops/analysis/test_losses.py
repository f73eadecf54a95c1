"""Each built-in loss against a hand computation on a tiny table; user losses by import path."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from modelops.analysis import (
    binomial_nll,
    load_targets,
    mean_of_mse,
    mse_of_mean,
    poisson_nll,
    resolve_loss,
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
    ],
)  # fmt: skip
def test_bad_targets_files(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ContractViolationError, match=message):
        load_targets(write(tmp_path / "t.yaml", body))
