"""The example SIR study, run once per test session into a temporary store, and its targets.

``sir_job`` is shared and read-only apart from ``scored_sir_job``, which scores it once against
the daily-cases target (``scores.parquet`` then exists for every test that asks for it).
Tests that score with other targets pass ``write=False``.

``gappy_job`` runs a tiny model whose sets leave some observed points unsimulated (in every
replicate, or in some replicates only), in this process, for the missing-points rule.
"""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

import modelops
from modelops.analysis import Target, load_targets, score
from modelops.api import JobHandle
from modelops.services import InProcessSimulationService
from modelops_contracts import SimulationStudy

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sir"
TRUE_PARAMS = {"beta": 0.3, "gamma": 0.1}
POPULATION = 10_000
INITIAL_INFECTED = 100

CASES_TARGETS = """
targets:
  - name: cases
    output: incidence
    data: observed.csv
    on: [day]
    value: new_cases
    observed: cases
    loss: poisson_nll
"""


@dataclass(frozen=True)
class _Finished:
    """A finished job: its handle, and its id and store root for the CLI."""

    handle: JobHandle

    @property
    def job_id(self) -> str:
        return self.handle.job_id

    @property
    def store(self) -> Path:
        return self.handle.store.root


@dataclass(frozen=True)
class SirJob(_Finished):
    """A finished SIR job and a directory holding observed.csv and cases.yaml."""

    data: Path

    @property
    def targets_file(self) -> Path:
        return self.data / "cases.yaml"


@pytest.fixture(scope="session")
def sir_job(tmp_path_factory: pytest.TempPathFactory) -> SirJob:
    root = tmp_path_factory.mktemp("sir")
    bundle = root / "bundle"
    shutil.copytree(EXAMPLE, bundle, ignore=shutil.ignore_patterns("__pycache__"))
    handle = modelops.run(bundle / "study.yaml", bundle=bundle, store=root / "store", workers=2)
    assert handle.summary is not None and handle.summary.failed == 0
    data = root / "data"
    data.mkdir()
    shutil.copy(EXAMPLE / "observed.csv", data / "observed.csv")
    (data / "cases.yaml").write_text(textwrap.dedent(CASES_TARGETS), encoding="utf-8")
    return SirJob(handle, data)


@pytest.fixture(scope="session")
def scored_sir_job(sir_job: SirJob) -> SirJob:
    """The SIR job with ``scores.parquet`` written for the daily-cases target."""
    score(sir_job.handle, load_targets(sir_job.targets_file))
    return sir_job


def observed_attack_rate() -> float:
    """The attack rate of the observed epidemic: everyone ever infected, over the population."""
    cases = int(pl.read_csv(EXAMPLE / "observed.csv")["cases"].sum())
    return (cases + INITIAL_INFECTED) / POPULATION


GAPPY_MODEL = """
def run(params, seed):
    # ``n`` rows of ``counts`` (steps 0 .. n-1); a ragged set gives odd seeds one row only
    n = 1 if params["ragged"] and seed % 2 else params["n"]
    return {"counts": {"step": list(range(n)), "expected": [params["rate"]] * n}}
"""
GAPPY_OBSERVED = {"step": [0, 1, 2], "cases": [4, 6, 5]}
GAPPY_SETS = {
    "full": {"rate": 5.0, "n": 3, "ragged": 0},  # every point in every replicate
    "short": {"rate": 5.0, "n": 1, "ragged": 0},  # steps 1 and 2 in no replicate
    "ragged": {"rate": 5.0, "n": 3, "ragged": 1},  # steps 1 and 2 in even-seed replicates only
}
GAPPY_REPLICATES = 4


@dataclass(frozen=True)
class GappyJob(_Finished):
    """A finished ``gappy_model`` job and its Poisson target on ``counts.expected``."""

    target: Target
    targets_file: Path


@pytest.fixture(scope="session")
def gappy_job(tmp_path_factory: pytest.TempPathFactory) -> GappyJob:
    """One gappy job for the session (``mops score`` tests may write its scores)."""
    return run_gappy_job(tmp_path_factory.mktemp("gappy"))


def run_gappy_job(root: Path) -> GappyJob:
    """Run the gappy study into ``root/store`` in this process; the bundle and data in ``root``."""
    bundle = root / "bundle"
    bundle.mkdir()
    (bundle / "gappy_model.py").write_text(GAPPY_MODEL, encoding="utf-8")
    study = SimulationStudy(
        model="gappy_model.run",
        parameter_sets=list(GAPPY_SETS.values()),
        n_replicates=GAPPY_REPLICATES,
    )
    backend = InProcessSimulationService()
    handle = modelops.run(study, bundle=bundle, store=root / "store", backend=backend)
    assert handle.summary is not None and handle.summary.failed == 0
    observed = root / "observed.csv"
    pl.DataFrame(GAPPY_OBSERVED).write_csv(observed)
    target = Target("cases", "counts", observed, ("step",), "expected", "cases", loss="poisson_nll")
    targets_file = root / "targets.yaml"
    targets_file.write_text(
        "targets:\n  - {name: cases, output: counts, data: observed.csv, on: [step],\n"
        "     value: expected, observed: cases, loss: poisson_nll}\n",
        encoding="utf-8",
    )
    return GappyJob(handle, target, targets_file)
