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
    UniqueParameterSet,
    make_param_id,
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


# -- the parameter view: the same whatever the encoding ------------------------------------------

_SETS = [{"beta": 0.1}, {"beta": 0.2, "gamma": 0.3}, {"gamma": 0.5, "alpha": 1}]


def _parameter_study(n_sets: int = 0, reps: int = 3) -> SimulationStudy:
    sets: list[dict[str, object]] = [dict(s) for s in _SETS]
    sets += [{"x": i} for i in range(n_sets)]
    # an explicit seed for the first set adds one replicate to it
    sets.append({"params": _SETS[0], "seed": 12345})
    return SimulationStudy("m.M", "baseline", sets, "grid", reps)


def _held_as(job: SimJob, encoding: str) -> SimJob:
    back = SimJob.from_json(job.to_json(encoding=encoding))  # type: ignore[arg-type]
    assert isinstance(back.tasks, GroupedTasks) == (encoding == "grouped")
    assert back == job
    return back


@pytest.mark.parametrize("encoding", ["grouped", "tasks"])
def test_parameter_view_of_both_encodings(bundle_ref: str, encoding: str) -> None:
    job = _held_as(_parameter_study().to_simjob(bundle_ref), encoding)
    pids = [make_param_id(s) for s in _SETS]
    sets = job.parameter_sets()
    assert list(sets) == pids
    assert [dict(p) for p in sets.values()] == _SETS
    assert all(isinstance(p, UniqueParameterSet) for p in sets.values())
    assert job.replicate_counts() == {pids[0]: 4, pids[1]: 3, pids[2]: 3}
    assert job.parameter_names() == ["beta", "gamma", "alpha"]
    assert job.parameter_count() == 3


def test_parameter_view_of_interleaved_tasks(bundle_ref: str) -> None:
    a0, b0 = _tasks(bundle_ref, 2, 1)
    a1 = SimTask.from_components("sir.SIR", "baseline", bundle_ref, a0.params, 7)
    job = SimJob("j", [a0, b0, a1])
    assert list(job.parameter_sets()) == [a0.param_id, b0.param_id]
    assert job.replicate_counts() == {a0.param_id: 2, b0.param_id: 1}
    assert job.parameter_names() == ["beta"]


def test_big_grouped_job_round_trips_with_its_parameter_view(bundle_ref: str) -> None:
    job = _parameter_study(n_sets=2500, reps=4).to_simjob(bundle_ref)
    assert job.task_count() == 4 * 2503 + 1 > 10_000
    text = job.to_json()
    assert '"groups"' in text and '"tasks"' not in text
    back = SimJob.from_json(text)
    assert isinstance(back.tasks, GroupedTasks) and back == job
    counts = back.replicate_counts()
    assert len(counts) == 2503 and sum(counts.values()) == job.task_count()
    assert counts[make_param_id(_SETS[0])] == 5
    assert counts[make_param_id({"x": 2499})] == 4
    assert back.parameter_sets() == job.parameter_sets()
    assert list(back.parameter_sets())[-1] == make_param_id({"x": 2499})
    assert back.parameter_names() == ["beta", "gamma", "alpha", "x"]


# -- content digest ------------------------------------------------------------------------------


def test_default_job_id_is_taken_from_the_content_digest(bundle_ref: str) -> None:
    job = _parameter_study().to_simjob(bundle_ref)
    digest = job.content_digest()
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert job.job_id == "job-" + digest[:16]
    # the same content held as every task (the small-job file form) keeps its digest
    for encoding in ("tasks", "grouped"):
        assert _held_as(job, encoding).content_digest() == digest


def test_content_digest_is_content_only(bundle_ref: str) -> None:
    study = _parameter_study()
    job = study.to_simjob(bundle_ref)
    named = study.to_simjob(bundle_ref, job_id="named")
    assert named.content_digest() == job.content_digest()
    relabelled = SimJob("other", list(job.tasks), {"note": "x"}, target_spec={"t": 1})
    assert relabelled.content_digest() == job.content_digest()


def test_content_digest_changes_with_a_seed_a_param_or_the_bundle(
    bundle_ref: str, other_bundle_ref: str
) -> None:
    def digest(sets: list[dict[str, object]], ref: str = bundle_ref) -> str:
        return SimulationStudy("m.M", "baseline", sets, "grid", 2).to_simjob(ref).content_digest()

    base = digest([{"params": {"x": 1}, "seed": 1}, {"x": 2}])
    assert base == digest([{"params": {"x": 1}, "seed": 1}, {"x": 2}])
    changed = [
        digest([{"params": {"x": 1}, "seed": 2}, {"x": 2}]),
        digest([{"params": {"x": 1}, "seed": 1}, {"x": 3}]),
        digest([{"params": {"x": 1}, "seed": 1}, {"x": 2}], other_bundle_ref),
        digest([{"x": 2}, {"params": {"x": 1}, "seed": 1}]),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_content_digest_of_tasks_that_cannot_be_grouped(bundle_ref: str) -> None:
    a0, b0 = _tasks(bundle_ref, 2, 1)
    a1 = SimTask.from_components("sir.SIR", "baseline", bundle_ref, a0.params, 7)
    a2 = SimTask.from_components("sir.SIR", "baseline", bundle_ref, a0.params, 8)
    job = SimJob("j", [a0, b0, a1])
    assert job.content_digest() == SimJob("k", [a0, b0, a1]).content_digest()
    others = {SimJob("j", t).content_digest() for t in ([a0, b0, a2], [a1, b0, a0], [a0, b0])}
    assert job.content_digest() not in others and len(others) == 3
