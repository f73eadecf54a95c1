"""SimJob.task_block: the columnar view of task_rows(), for grouped and ungrouped jobs."""

from __future__ import annotations

import warnings
from bisect import bisect_right
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops_contracts import GroupedTasks, SimJob, SimTask, SimulationStudy, TaskBlock

BUNDLE = "sha256:" + "ab" * 32

_values = st.one_of(st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.5]), st.integers(-3, 3).map(float))
_plain_sets = st.lists(st.fixed_dictionaries({"a": _values}, optional={"b": _values}), min_size=1)
_explicit = st.fixed_dictionaries(
    {"params": st.fixed_dictionaries({"a": _values}), "seed": st.integers(0, 2**64 - 1)}
)
_outputs = st.one_of(st.none(), st.lists(st.sampled_from(["x", "y", "z"]), min_size=1))
_configs = st.one_of(st.none(), st.fixed_dictionaries({"k": st.integers(0, 2)}))


@st.composite
def _grouped_jobs(draw: st.DrawFn) -> SimJob:
    """A compiled study: duplicates (merged), explicit seeds, one or more replicates."""
    sets: list[Any] = draw(_plain_sets)
    sets += draw(st.lists(_explicit, max_size=3))
    order = draw(st.permutations(range(len(sets))))
    study = SimulationStudy(
        "pkg.Model",
        parameter_sets=[sets[i] for i in order],
        n_replicates=draw(st.integers(1, 4)),
        outputs=draw(_outputs),
        config=draw(_configs),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = study.to_simjob(BUNDLE)
    if draw(st.booleans()):  # the same job decoded from its grouped file
        job = SimJob.from_json(job.to_json(encoding="grouped"))
    return job


@st.composite
def _plain_jobs(draw: st.DrawFn) -> SimJob:
    """Tasks in any order: parameter sets interleave, entrypoint/outputs/config change."""
    specs = draw(
        st.lists(
            st.tuples(st.sampled_from(["baseline", "other"]), _outputs, _configs),
            min_size=1,
            max_size=3,
        )
    )
    n = draw(st.integers(1, 30))
    tasks = [
        SimTask.from_components(
            "pkg.Model",
            spec[0],
            BUNDLE,
            {"a": draw(_values)},
            i,  # distinct seeds: distinct task ids
            spec[1],
            spec[2],
        )
        for i in range(n)
        for spec in [draw(st.sampled_from(specs))]
    ]
    return SimJob("plain", tasks)


def _check_blocks(job: SimJob, cuts: list[int]) -> None:
    rows = list(job.task_rows())
    assert len(rows) == job.task_count() == cuts[-1]
    got: dict[str, list[Any]] = {
        "task_id": [],
        "param_id": [],
        "replicate": [],
        "seed": [],
        "params": [],
        "spec": [],
    }
    for start, stop in pairwise(cuts):
        block = job.task_block(start, stop)
        assert isinstance(block, TaskBlock) and len(block) == stop - start
        got["task_id"] += block.task_ids
        got["param_id"] += block.param_ids
        got["replicate"] += block.replicates
        got["seed"] += block.seeds
        got["params"] += [dict(p) for p in block.params]
        assert len(block.spec_breaks) == len(block.specs)
        if len(block):
            assert block.spec_breaks[0] == 0
            assert all(a != b for a, b in pairwise(block.specs))
            assert block.spec_breaks == sorted(set(block.spec_breaks))
        got["spec"] += [
            block.specs[bisect_right(block.spec_breaks, i) - 1] for i in range(len(block))
        ]
        if isinstance(job.tasks, GroupedTasks):  # replicates of a set share one mapping
            first: dict[str, object] = {}
            for pid, params in zip(block.param_ids, block.params, strict=True):
                assert first.setdefault(pid, params) is params
    assert got["task_id"] == [r.task_id for r in rows]
    assert got["param_id"] == [r.param_id for r in rows]
    assert got["replicate"] == [r.replicate for r in rows]
    assert got["seed"] == [r.seed for r in rows]
    assert got["params"] == [dict(r.params) for r in rows]
    assert got["spec"] == [(r.entrypoint, r.outputs, r.config) for r in rows]
    assert got["task_id"] == [t.task_id for t in job.tasks]


def _cuts(job: SimJob) -> st.SearchStrategy[list[int]]:
    """Block boundaries covering the job: 0, some cut points (empty blocks too), the end."""
    n = job.task_count()
    return st.lists(st.integers(0, n), max_size=6).map(lambda inner: [0, *sorted(inner), n])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_blocks_of_grouped_jobs_give_the_task_rows(data: st.DataObject) -> None:
    job = data.draw(_grouped_jobs())
    assert isinstance(job.tasks, GroupedTasks)
    _check_blocks(job, data.draw(_cuts(job)))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_blocks_of_ungrouped_jobs_give_the_task_rows(data: st.DataObject) -> None:
    job = data.draw(_plain_jobs())
    assert not isinstance(job.tasks, GroupedTasks)
    _check_blocks(job, data.draw(_cuts(job)))


def test_block_bounds_are_cut_to_the_job_and_checked() -> None:
    job = SimulationStudy("pkg.Model", parameter_sets=[{"a": 1.0}, {"a": 2.0}]).to_simjob(BUNDLE)
    assert job.task_block(1, 10).task_ids == [job.tasks[1].task_id]
    empty = job.task_block(5, 9)
    assert len(empty) == 0 and empty.specs == [] and empty.spec_breaks == []
    assert len(job.task_block(1, 1)) == 0
    with pytest.raises(ValueError, match="start <= stop"):
        job.task_block(2, 1)
    with pytest.raises(ValueError, match="0 <= start"):
        job.task_block(-1, 1)


def test_a_grouped_block_shares_the_parameter_mapping_of_its_replicates() -> None:
    study = SimulationStudy("pkg.Model", parameter_sets=[{"a": 1.0}, {"a": 2.0}], n_replicates=3)
    block = study.to_simjob(BUNDLE).task_block(1, 5)
    assert block.param_ids[0] == block.param_ids[1] != block.param_ids[2]
    assert block.params[0] is block.params[1] and block.params[2] is block.params[3]
    assert block.replicates == [1, 2, 0, 1]
    assert block.spec_breaks == [0] and block.specs == [("pkg.Model/baseline", None, None)]


def test_consecutive_blocks_cost_what_their_tasks_cost() -> None:
    """Walking a job block by block is linear: the late blocks cost what the early ones do."""
    import time

    study = SimulationStudy(
        "pkg.Model", parameter_sets=[{"a": float(i)} for i in range(40_000)], n_replicates=5
    )
    job = study.to_simjob(BUNDLE)

    def cost(start: int) -> float:
        t0 = time.perf_counter()
        for s in range(start, start + 10_000, 1_000):
            job.task_block(s, s + 1_000)
        return time.perf_counter() - t0

    early = min(cost(0) for _ in range(3))
    late = min(cost(job.task_count() - 10_000) for _ in range(3))
    assert late < 5 * early
