"""The example SIR study, run once per test session into a temporary store, and its targets.

``sir_job`` is shared and read-only apart from ``scored_sir_job``, which scores it once against
the daily-cases target (``scores.parquet`` then exists for every test that asks for it).
Tests that score with other targets pass ``write=False``.
"""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

import modelops
from modelops.analysis import load_targets, score
from modelops.api import JobHandle

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sir"
TRUE_PARAMS = {"beta": 0.3, "gamma": 0.1}
POPULATION = 10_000
INITIAL_INFECTED = 10

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
class SirJob:
    """A finished SIR job and a directory holding observed.csv and cases.yaml."""

    handle: JobHandle
    data: Path

    @property
    def job_id(self) -> str:
        return self.handle.job_id

    @property
    def store(self) -> Path:
        return self.handle.store.root

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
