"""The SIR example: deterministic per seed, valid study, reproducible observed data."""

from __future__ import annotations

import csv
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modelops.runtime import (
    ChunkSpec,
    ChunkTask,
    load_entrypoint,
    resolve_entrypoint,
    run_chunk,
    unload_bundles,
)

SIR_DIR = Path(__file__).resolve().parents[3] / "examples" / "sir"
PARAMS = {"beta": 0.3, "gamma": 0.1}


@pytest.fixture(autouse=True)
def _clean_loader() -> Iterator[None]:
    unload_bundles()
    yield
    unload_bundles()


def simulate(seed: int, scenario: str = "baseline") -> dict[str, Any]:
    runner = load_entrypoint(SIR_DIR, f"sir_model.SIR/{scenario}")
    return dict(runner.run(PARAMS, seed))


def test_same_seed_same_epidemic_different_seed_different_one() -> None:
    first, again, other = simulate(1), simulate(1), simulate(2)
    for column in ("new_cases", "infected", "recovered"):
        np.testing.assert_array_equal(first["incidence"][column], again["incidence"][column])
    assert first["summary"] == again["summary"]
    assert not np.array_equal(first["incidence"]["new_cases"], other["incidence"]["new_cases"])


def test_outputs_are_consistent() -> None:
    out = simulate(5)
    incidence, summary = out["incidence"], out["summary"]
    assert list(incidence) == ["day", "new_cases", "infected", "recovered"]
    assert len(incidence["day"]) == 100
    assert set(summary) == {"peak_day", "peak_infected", "attack_rate"}
    total = 100 + int(np.sum(incidence["new_cases"]))  # 100 initial cases
    assert summary["attack_rate"] == pytest.approx(total / 10_000)


def _final_size(r0: float) -> float:
    """The SIR final-size relation z = 1 - exp(-r0 z), solved by fixed-point iteration."""
    z = 0.5
    for _ in range(200):
        z = 1.0 - float(np.exp(-r0 * z))
    return z


def test_lockdown_halves_contacts() -> None:
    # beta / gamma = 3 at baseline; half the contacts give 1.5: each final size as theory says
    baseline = [simulate(seed)["summary"]["attack_rate"] for seed in range(5)]
    lockdown = [simulate(seed, "lockdown")["summary"]["attack_rate"] for seed in range(5)]
    assert abs(np.mean(baseline) - _final_size(3.0)) < 0.03
    assert abs(np.mean(lockdown) - _final_size(1.5)) < 0.06


def test_study_file_fits_the_model() -> None:
    study = yaml.safe_load((SIR_DIR / "study.yaml").read_text())
    assert len(study["parameter_sets"]) == 9 and study["n_replicates"] == 5
    info = resolve_entrypoint(
        SIR_DIR,
        f"{study['model']}/{study['scenario']}",
        params=study["parameter_sets"],
        outputs=study["outputs"],
    )
    assert info.outputs == ("incidence", "summary")


def test_observed_data_comes_from_the_documented_truth() -> None:
    with (SIR_DIR / "observed.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = simulate(20240501)
    assert [int(r["day"]) for r in rows] == list(range(100))
    assert [int(r["cases"]) for r in rows] == [int(c) for c in out["incidence"]["new_cases"]]


def test_sir_in_a_chunk() -> None:
    tasks = [
        ChunkTask(index=i, task_id=f"{i:064x}", param_id="p", replicate=i, seed=i, params=PARAMS)
        for i in range(3)
    ]
    result = run_chunk(ChunkSpec(str(SIR_DIR), "sir_model.SIR/baseline", None, None, tasks))
    assert all(o.ok for o in result.outcomes)
    assert result.tables["incidence"].num_rows == 300
    assert result.tables["summary"].num_rows == 3
    assert "numpy" in result.packages and "modelops" in result.packages


def test_same_tables_in_a_spawned_process() -> None:
    tasks = [
        ChunkTask(
            index=i, task_id=f"{i:064x}", param_id="p", replicate=i, seed=7 + i, params=PARAMS
        )
        for i in range(2)
    ]
    spec = ChunkSpec(str(SIR_DIR), "sir_model.SIR/lockdown", None, {"days": 30}, tasks)
    here = run_chunk(spec)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.apply(run_chunk, (spec,))
    assert there.worker != here.worker
    assert [o.ok for o in there.outcomes] == [True, True]
    for name in ("incidence", "summary"):
        assert there.tables[name].equals(here.tables[name])
    assert there.tables["incidence"].num_rows == 60
