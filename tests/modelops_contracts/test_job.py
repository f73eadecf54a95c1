from __future__ import annotations

import pickle
import warnings

import pytest

from modelops_contracts import (
    ContractViolationError,
    GroupedTasks,
    SimJob,
    SimTask,
    SimulationStudy,
)


def _tasks(bundle_ref: str, n_sets: int = 3, reps: int = 2) -> list[SimTask]:
    return [
        SimTask.from_components("sir.SIR", "baseline", bundle_ref, {"beta": 0.1 * (i + 1)}, seed)
        for i in range(n_sets)
        for seed in range(reps)
    ]


def test_constructor_and_queries(bundle_ref: str) -> None:
    tasks = _tasks(bundle_ref)
    job = SimJob("my-job", tasks, {"owner": "me"})
    assert job.task_count() == 6 and job.parameter_count() == 3
    assert job.bundle_ref == bundle_ref and job.metadata == {"owner": "me"}
    assert list(job.tasks) == tasks
    groups = job.get_task_groups()
    assert list(groups) == [t.param_id for t in tasks[::2]]
    assert all([t.seed for t in group] == [0, 1] for group in groups.values())
    rows = list(job.task_rows())
    assert [(r.task_id, r.replicate, r.seed) for r in rows] == [
        (t.task_id, i % 2, t.seed) for i, t in enumerate(tasks)
    ]


@pytest.mark.parametrize("job_id", ["", ".hidden", "a/b", "a b", "x" * 129, "é"])
def test_bad_job_ids(bundle_ref: str, job_id: str) -> None:
    with pytest.raises(ContractViolationError, match="job_id"):
        SimJob(job_id, _tasks(bundle_ref))


def test_validate_rejects_empty_mixed_bundles_and_duplicates(
    bundle_ref: str, other_bundle_ref: str
) -> None:
    with pytest.raises(ContractViolationError, match="no tasks"):
        SimJob("j", [])
    mixed = [*_tasks(bundle_ref, 1, 1), *_tasks(other_bundle_ref, 1, 1)]
    with pytest.raises(ContractViolationError, match="bundle"):
        SimJob("j", mixed)
    twice = _tasks(bundle_ref, 1, 1) * 2
    with pytest.raises(ContractViolationError, match="twice"):
        SimJob("j", twice)
    with pytest.raises(ContractViolationError, match="bundle"):
        SimJob("j", _tasks(bundle_ref, 1, 1), bundle_ref=other_bundle_ref)
    with pytest.raises(ContractViolationError, match="SimTask"):
        SimJob("j", [{"seed": 1}])  # type: ignore[list-item]


@pytest.mark.parametrize("encoding", ["tasks", "grouped", "auto"])
def test_json_round_trip_both_encodings(bundle_ref: str, encoding: str) -> None:
    job = SimJob("j-1", _tasks(bundle_ref), {"k": [1, 2]}, target_spec={"data": "x.csv"})
    text = job.to_json(encoding=encoding)  # type: ignore[arg-type]
    back = SimJob.from_json(text)
    assert back == job
    assert back.to_json(encoding=encoding) == text  # type: ignore[arg-type]
    assert [t.seed for t in back.tasks] == [t.seed for t in job.tasks]
    assert '"format_version":2' in text


def test_auto_encoding_switches_to_grouped_for_big_jobs(bundle_ref: str) -> None:
    study = SimulationStudy("m.M", "baseline", [{"x": i} for i in range(2001)], "grid", 5)
    job = study.to_simjob(bundle_ref)
    doc = job.to_dict()
    assert "groups" in doc and "tasks" not in doc
    assert len(doc["groups"]) == 2001 and doc["template"]["entrypoint"] == "m.M/baseline"
    assert "tasks" in SimJob("small", _tasks(bundle_ref)).to_dict()


def test_grouped_encoding_refused_when_tasks_interleave_or_differ(bundle_ref: str) -> None:
    a, b = _tasks(bundle_ref, 2, 1)
    a2 = SimTask.from_components("sir.SIR", "baseline", bundle_ref, a.params, 99)
    job = SimJob("j", [a, b, a2])
    with pytest.raises(ContractViolationError, match="grouped"):
        job.to_dict(encoding="grouped")
    assert SimJob.from_json(job.to_json()) == job  # auto falls back to the tasks form
    other = SimTask.from_components("sir.SIR", "lockdown", bundle_ref, {"beta": 1.0}, 1)
    assert "tasks" in SimJob("j", [a, other]).to_dict(encoding="auto")


def test_grouped_file_with_wrong_param_id_or_repeated_seed_fails(bundle_ref: str) -> None:
    job = SimJob("j", _tasks(bundle_ref))
    doc = job.to_dict(encoding="grouped")
    doc["groups"][1]["param_id"] = "f" * 64
    with pytest.raises(ContractViolationError, match="does not match"):
        SimJob.from_dict(doc)
    doc = job.to_dict(encoding="grouped")
    doc["groups"][0]["seeds"] = [5, 5]
    with pytest.raises(ContractViolationError, match="repeats a seed"):
        SimJob.from_dict(doc)


def test_newer_format_version_is_refused(bundle_ref: str) -> None:
    doc = SimJob("j", _tasks(bundle_ref)).to_dict()
    doc["format_version"] = 99
    with pytest.raises(ContractViolationError, match="newer"):
        SimJob.from_dict(doc)


@pytest.mark.parametrize("text", ["{", "[]", '{"job_id": "j"}', '{"job_id": "j", "tasks": 3}'])
def test_bad_job_documents(text: str) -> None:
    with pytest.raises(ContractViolationError):
        SimJob.from_json(text)


def test_grouped_tasks_sequence_behaviour(bundle_ref: str) -> None:
    job = SimulationStudy("m.M", "baseline", [{"x": 1}, {"x": 2}], "grid", 3).to_simjob(bundle_ref)
    tasks = job.tasks
    assert isinstance(tasks, GroupedTasks)
    as_list = list(tasks)
    assert len(tasks) == 6
    assert [tasks[i] for i in range(6)] == as_list
    assert tasks[-1] == as_list[-1] and tasks[1:4] == as_list[1:4]
    with pytest.raises(IndexError):
        tasks[6]
    assert [r.task_id for r in job.task_rows()] == [t.task_id for t in as_list]


def test_pickle_and_immutability(bundle_ref: str) -> None:
    job = SimJob("j", _tasks(bundle_ref))
    assert pickle.loads(pickle.dumps(job)) == job
    with pytest.raises(AttributeError):
        job.job_id = "k"  # type: ignore[misc]


def test_batches_keyword_still_works_with_a_warning(bundle_ref: str) -> None:
    tasks = _tasks(bundle_ref)
    with pytest.warns(DeprecationWarning, match="SimJob\\(batches=...\\)") as record:
        job = SimJob("j", batches=[{"batch_id": "b0", "tasks": tasks[:2]}, {"tasks": tasks[2:]}])
    assert len(record) == 1
    assert list(job.tasks) == tasks
    with warnings.catch_warnings(), pytest.raises(ContractViolationError, match="not both"):
        warnings.simplefilter("ignore", DeprecationWarning)
        SimJob("j", tasks, batches=[])
