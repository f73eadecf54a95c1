"""Re-running a finished study skips compiling it, and anything that changes the answer runs."""

from __future__ import annotations

import json
from pathlib import Path

import modelops
from modelops.store import ResultStore
from tests.conftest import TOY_BAD_X, ToyBundle


def study_file(toy: ToyBundle, name: str, xs: list[int], model: str = "ok") -> Path:
    path = toy.path.parent / name
    path.write_text(
        json.dumps(
            {
                "model": f"toy.{model}",
                "scenario": "baseline",
                "sampling_method": "manual",
                "n_replicates": 2,
                "parameter_sets": [{"x": x} for x in xs],
            }
        )
    )
    return path


def started_at(toy: ToyBundle, job_id: str) -> object:
    with ResultStore(toy.store) as store:
        record = store.ledger.get_job(job_id)
        assert record is not None
        return record.started_at


def test_a_finished_study_is_answered_without_running(toy_bundle: ToyBundle) -> None:
    study = study_file(toy_bundle, "s.json", [1, 2, 3])
    first = modelops.run(study, bundle=toy_bundle.path, store=toy_bundle.store, workers=1)
    assert first.summary is not None and first.summary.succeeded == 6
    before = started_at(toy_bundle, first.job_id)
    again = modelops.run(study, bundle=toy_bundle.path, store=toy_bundle.store, workers=1)
    assert again.summary is not None
    assert (again.job_id, again.summary.cached, again.summary.state) == (
        first.job_id,
        6,
        "completed",
    )
    assert started_at(toy_bundle, first.job_id) == before  # no run was recorded: none happened
    assert again.results("summary").height == 6


def test_a_changed_study_or_bundle_compiles_again(toy_bundle: ToyBundle) -> None:
    study = study_file(toy_bundle, "s.json", [1, 2])
    first = modelops.run(study, bundle=toy_bundle.path, store=toy_bundle.store, workers=1)
    study_file(toy_bundle, "s.json", [1, 2, 5])  # one more set: a new job, two tasks to run
    grown = modelops.run(study, bundle=toy_bundle.path, store=toy_bundle.store, workers=1)
    assert grown.summary is not None and grown.job_id != first.job_id
    assert (grown.summary.cached, grown.summary.total) == (4, 6)
    (toy_bundle.path / "extra.py").write_text("X = 1\n")  # new code: every task is new
    recoded = modelops.run(study, bundle=toy_bundle.path, store=toy_bundle.store, workers=1)
    assert recoded.summary is not None and recoded.job_id != grown.job_id
    assert recoded.summary.cached == 0


def test_a_lost_shard_or_a_failure_means_a_real_run(toy_bundle: ToyBundle) -> None:
    study = study_file(toy_bundle, "s.json", [1, 2])
    first = modelops.run(study, bundle=toy_bundle.path, store=toy_bundle.store, workers=1)
    for shard in toy_bundle.store.glob(f"jobs/{first.job_id}/outputs/series/*.parquet"):
        shard.unlink()
    again = modelops.run(study, bundle=toy_bundle.path, store=toy_bundle.store, workers=1)
    assert again.summary is not None
    assert again.summary.cached == 0 and again.results("series").height > 0  # ran again

    bad = study_file(toy_bundle, "b.json", [1, TOY_BAD_X], model="boom")
    once = modelops.run(bad, bundle=toy_bundle.path, store=toy_bundle.store, workers=1)
    assert once.summary is not None and once.summary.failed > 0
    twice = modelops.run(bad, bundle=toy_bundle.path, store=toy_bundle.store, workers=1)
    assert twice.summary is not None and twice.summary.failed > 0  # failures are run again
    assert started_at(toy_bundle, twice.job_id) != started_at(toy_bundle, first.job_id)
