"""The Ishigami function through the whole pipeline: `mops sample saltelli` -> `mops run` ->
`mops sensitivity`, against its analytic Sobol' indices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.modelops.cli.conftest import run_mops
from tests.modelops.sensitivity.conftest import ISHIGAMI_S1, ISHIGAMI_ST, ISHIGAMI_VARIANCE

N = 4096


def _pipeline(bundle: Path, tmp: Path, *, noise: float, replicates: int) -> dict[str, Any]:
    study, store = tmp / "ishigami.json", tmp / "store"
    sampled = run_mops(
        "sample", "saltelli", "functions.Ishigami", "--bundle", bundle, "--n", N,
        "--fix", f"noise={noise}", "--replicates", replicates, "--seed", 11, "-o", study,
    )  # fmt: skip
    assert sampled.code == 0, sampled.stderr
    ran = run_mops("run", study, "--bundle", bundle, "--store", store, "--json", timeout=300)
    assert ran.code == 0, ran.stderr
    job_id = json.loads(ran.stdout)["job_id"]
    analysed = run_mops("sensitivity", job_id, "y", "--value", "f", "--store", store, "--json")
    assert analysed.code == 0, analysed.stderr
    result: dict[str, Any] = json.loads(analysed.stdout)
    assert result["method"] == "sobol" and result["n"] == N
    assert result["output"] == "y" and result["value"] == "f"
    return result


def _check(result: dict[str, Any], tolerance: float) -> None:
    for name in ("x1", "x2", "x3"):
        figures = result["indices"][name]
        for kind, truth in (("S1", ISHIGAMI_S1[name]), ("ST", ISHIGAMI_ST[name])):
            estimate, conf = figures[kind], figures[f"{kind}_conf"]
            assert abs(estimate - truth) <= tolerance, (name, kind, estimate, truth)
            assert estimate - conf <= truth <= estimate + conf, (name, kind, estimate, conf)


@pytest.mark.slow
def test_indices_match_the_analytic_values(functions_bundle: Path, tmp_path: Path) -> None:
    result = _pipeline(functions_bundle, tmp_path, noise=0.0, replicates=1)
    _check(result, 0.02)
    assert result["noise_fraction"] is None  # one replicate: noise cannot be told
    assert set(result["convergence"]) == {str(N // 4), str(N // 2), str(N)}
    assert result["warnings"] == []


@pytest.mark.slow
def test_replicate_noise_is_measured_and_removed(functions_bundle: Path, tmp_path: Path) -> None:
    sd, replicates = 2.0, 4
    result = _pipeline(functions_bundle, tmp_path, noise=sd, replicates=replicates)
    _check(result, 0.03)
    truth = sd**2 / (sd**2 + ISHIGAMI_VARIANCE)
    assert abs(result["noise_fraction"] - truth) <= 0.02, (result["noise_fraction"], truth)
