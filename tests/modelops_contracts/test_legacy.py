from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from modelops_contracts import ContractViolationError, SimJob, SimTask, SimulationStudy
from modelops_contracts.legacy import ParameterSet, SimBatch, read_legacy_job
from modelops_contracts.migration import migrate_document

LEGACY = Path(__file__).parent.parent / "fixtures" / "legacy"


def _load(name: str) -> str:
    return (LEGACY / name).read_text()


def test_old_job_with_one_batch_loads_flat_with_one_warning() -> None:
    with pytest.warns(DeprecationWarning, match="mops migrate") as record:
        job = SimJob.from_json(_load("job_one_batch.json"))
    assert len(record) == 1
    raw = json.loads(_load("job_one_batch.json"))
    assert job.job_id == "legacy-one-batch"
    assert [t.seed for t in job.tasks] == [t["seed"] for t in raw["batches"][0]["tasks"]]
    assert [t.param_id for t in job.tasks] == [
        t["params"]["param_id"] for t in raw["batches"][0]["tasks"]
    ]
    assert job.metadata == {"origin": "modelops-contracts 0.x"}


def test_old_job_with_many_batches_keeps_task_order() -> None:
    with pytest.warns(DeprecationWarning) as record:
        job = SimJob.from_json(_load("job_two_batches.json"))
    assert len(record) == 1
    assert [t.seed for t in job.tasks] == [1, 2, 3]
    assert all(t.outputs == ("summary",) for t in job.tasks)
    assert job.metadata["legacy"] == {"priority": 5}


def test_deprecation_warnings_point_at_the_callers_line(bundle_ref: str) -> None:
    raw = json.loads(_load("job_two_batches.json"))
    task = SimTask.from_components("m.M", "baseline", bundle_ref, {"x": 1}, 1)
    with pytest.warns(DeprecationWarning) as record:
        SimJob.from_json(json.dumps(raw))
        SimJob.from_dict(raw)
        SimJob("j", batches=[{"tasks": [task]}])
    assert [w.filename for w in record] == [__file__] * 3


def test_a_stored_param_id_that_disagrees_is_an_error() -> None:
    with warnings.catch_warnings(), pytest.raises(ContractViolationError, match="does not match"):
        warnings.simplefilter("ignore", DeprecationWarning)
        SimJob.from_json(_load("job_bad_param_id.json"))


def test_legacy_reads_old_jobs_into_plain_data_that_simjob_wraps() -> None:
    raw = json.loads(_load("job_two_batches.json"))
    with pytest.warns(DeprecationWarning, match="batches") as record:
        old = read_legacy_job(raw)
    assert len(record) == 1
    assert old.job_id == raw["job_id"] and [t.seed for t in old.tasks] == [1, 2, 3]
    assert old.metadata["legacy"] == {"priority": 5}
    with pytest.warns(DeprecationWarning):
        job = SimJob.from_dict(raw)
    assert list(job.tasks) == old.tasks and job.metadata == old.metadata
    with pytest.warns(DeprecationWarning), pytest.raises(ContractViolationError, match="unknown"):
        read_legacy_job({**raw, "colour": "red"})


def test_old_study_with_parameter_set_wrappers_loads_as_plain_dicts() -> None:
    with pytest.warns(DeprecationWarning, match="ParameterSet") as record:
        study = SimulationStudy.from_json(_load("study_parameter_set_wrappers.json"))
    assert len(record) == 1
    assert study.parameter_sets[0] == {"beta": 0.5, "gamma": 0.1}
    assert study.total_simulation_count() == 6


def test_migrated_files_load_without_warnings_and_mean_the_same() -> None:
    for name in ("job_one_batch.json", "job_two_batches.json"):
        with pytest.warns(DeprecationWarning):
            old = SimJob.from_json(_load(name))
            kind, new_doc, was_legacy = migrate_document(json.loads(_load(name)))
        assert kind == "job" and was_legacy and "batches" not in new_doc
        new = SimJob.from_dict(new_doc)  # no warning: filterwarnings=error would fail here
        assert new == old
    # migrate_document records the warnings it provokes instead of letting them out
    kind, new_doc, was_legacy = migrate_document(
        json.loads(_load("study_parameter_set_wrappers.json"))
    )
    assert kind == "study" and was_legacy
    assert SimulationStudy.from_dict(new_doc).parameter_sets[1] == {"beta": 0.3, "gamma": 0.1}


def test_migrate_reports_current_files_as_not_legacy(bundle_ref: str) -> None:
    study = SimulationStudy("m.M", "baseline", [{"x": 1}], "grid")
    kind, doc, was_legacy = migrate_document(study.to_dict())
    assert (kind, was_legacy) == ("study", False) and doc == study.to_dict()
    with pytest.raises(ContractViolationError, match="not a ModelOps"):
        migrate_document({"hello": "world"})
    with pytest.raises(ContractViolationError, match="not a ModelOps"):
        migrate_document([1, 2])


def test_legacy_types_still_import_and_warn_on_construction(bundle_ref: str) -> None:
    task = SimTask.from_components("m.M", "baseline", bundle_ref, {"x": 1}, 1)
    with pytest.warns(DeprecationWarning, match="2.0"):
        batch = SimBatch("b0", [task])
    with pytest.warns(DeprecationWarning, match="parameter dict"):
        ps = ParameterSet({"x": 1})
    assert ps.params == {"x": 1}
    with pytest.warns(DeprecationWarning, match="batches"):
        job = SimJob("j", batches=[batch])
    assert list(job.tasks) == [task]


def test_nothing_in_modelops_uses_the_legacy_types() -> None:
    src = Path(__file__).parents[2] / "src"
    pattern = re.compile(r"\b(SimBatch|ParameterSet|LegacyJob|flatten_batches|read_legacy_job)\b")
    offenders = [str(p) for p in (src / "modelops").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    defined = [
        p.name
        for p in (src / "modelops_contracts").rglob("*.py")
        if re.search(r"^class (SimBatch|ParameterSet)\b", p.read_text(), re.M)
    ]
    assert defined == ["legacy.py"]
