"""The example SIR: calibrations recover the parameters its observed data was drawn from.

``examples/sir/observed.csv`` is one epidemic drawn with beta = 0.3, gamma = 0.1 (population
10000, 100 initial cases); the targets score daily cases with ``poisson_nll``, which the
calibration objective takes in its replicate-marginal form.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import modelops

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sir"
TRUTH = {"beta": 0.3, "gamma": 0.1}
PRIOR = {"beta": (0.05, 1.0), "gamma": (0.02, 0.5)}
FIX = {"population": 10_000, "initial_infected": 100}


@pytest.fixture(scope="module")
def sir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sir") / "bundle"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_tpe_recovers_the_true_parameters(sir: Path, tmp_path: Path) -> None:
    cal = modelops.calibrate(
        "sir_model.SIR", sir / "targets.yaml", bundle=sir, store=tmp_path / "store",
        fix=FIX, algorithm="tpe", budget=200, replicates=4, workers=2,
    )  # fmt: skip
    best = cal.best
    assert best is not None and best["n_replicates"] == 16
    for name, truth in TRUTH.items():
        assert abs(best["params"][name] - truth) <= 0.1 * truth, (name, best["params"])


def test_abc_smc_credible_intervals_hold_the_truth(sir: Path, tmp_path: Path) -> None:
    cal = modelops.calibrate(
        "sir_model.SIR", sir / "targets.yaml", bundle=sir, store=tmp_path / "store",
        fix=FIX, algorithm="abc-smc", budget=4000, batch=100, replicates=4, workers=2,
        settings={"population": 100},
    )  # fmt: skip
    summary = cal.posterior_summary()
    assert summary is not None
    for name, truth in TRUTH.items():
        low, high = summary[name]["q05"], summary[name]["q95"]
        assert low <= truth <= high, (name, summary[name])
        lower, upper = PRIOR[name]
        assert high - low < (upper - lower) / 4, (name, summary[name])
