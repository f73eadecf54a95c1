"""Sensitivity designs: Saltelli and Morris studies, the design record, and reading it back."""

from __future__ import annotations

import itertools
import re
import warnings
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from SALib.sample import sobol as salib_sobol

from modelops.model import Parameter
from modelops.sampling import MAX_SETS, ParameterSpace, SobolSampleSizeWarning, lhs
from modelops.sensitivity import Design, RepeatedDesignWarning, morris, read_design, saltelli
from modelops_contracts import ContractViolationError, SimJob, SimulationStudy
from modelops_contracts.params import make_param_id
from tests.strategies import spaces

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)
FIXED = {"fixed_f": 0.25, "fixed_i": 3}

# spaces with narrow int ranges too, so that distinct design rows can land on one parameter set
any_spaces = st.sampled_from([2, 1000]).flatmap(lambda width: spaces(max_width=width))
float_spaces = spaces().filter(lambda s: any(p.kind == "float" for p in s.parameters))


def _with_fixed(space: ParameterSpace) -> ParameterSpace:
    """``space`` plus two fixed values outside its sampled parameters."""
    return ParameterSpace(space.parameters, FIXED, space.model)


def _design(study: SimulationStudy) -> dict[str, Any]:
    meta = study.metadata or {}
    design: dict[str, Any] = meta["design"]
    return design


def _check_sets(space: ParameterSpace, study: SimulationStudy) -> None:
    """Rows name the study's sets, every set is some row's, no set twice, values in range."""
    rows = _design(study)["rows"]
    ids = [make_param_id(params) for params in study.parameter_sets]
    assert len(set(ids)) == len(ids)
    assert set(rows) == set(ids)
    assert (study.metadata or {})["n_sets"] == len(ids)
    for params in study.parameter_sets:
        assert set(params) == {*space.names, *space.fixed}
        for name, value in space.fixed.items():
            assert params[name] == value and type(params[name]) is type(value)
        for p in space.parameters:
            value = params[p.name]
            assert type(value) is (int if p.kind == "int" else float)
            assert p.lower <= value <= p.upper


def _unit_ids(space: ParameterSpace, unit: np.ndarray) -> list[str]:
    return [make_param_id(params) for params in space.scale(unit)]


# -- saltelli ------------------------------------------------------------------------------------


@FAST
@given(
    space=any_spaces,
    n=st.sampled_from([4, 8, 16]),
    second_order=st.booleans(),
    seed=SEEDS,
)
def test_saltelli_rows_name_the_studys_sets(
    space: ParameterSpace, n: int, second_order: bool, seed: int
) -> None:
    space = _with_fixed(space)
    study = saltelli(space, n, second_order=second_order, seed=seed)
    d = len(space.parameters)
    design = _design(study)
    assert len(design["rows"]) == n * (2 * d + 2 if second_order else d + 2)
    assert design["method"] == "saltelli" and design["n"] == n
    assert design["second_order"] is second_order
    assert design["parameters"] == list(space.names)
    assert study.sampling_method == "saltelli" and (study.metadata or {})["seed"] == seed
    _check_sets(space, study)


@FAST
@given(space=any_spaces, n=st.sampled_from([4, 8]), second_order=st.booleans(), seed=SEEDS)
def test_saltelli_same_seed_same_study(
    space: ParameterSpace, n: int, second_order: bool, seed: int
) -> None:
    first = saltelli(space, n, second_order=second_order, seed=seed)
    again = saltelli(space, n, second_order=second_order, seed=seed)
    assert again.to_json() == first.to_json()


@FAST
@given(space=float_spaces, seed=SEEDS, other=SEEDS)
def test_saltelli_different_seed_different_rows(
    space: ParameterSpace, seed: int, other: int
) -> None:
    if seed == other:
        other = seed + 1
    first, second = saltelli(space, 4, seed=seed), saltelli(space, 4, seed=other)
    assert _design(first)["rows"] != _design(second)["rows"]


@FAST
@given(space=any_spaces, n=st.sampled_from([4, 8]), second_order=st.booleans(), seed=SEEDS)
def test_saltelli_design_is_salibs_own(
    space: ParameterSpace, n: int, second_order: bool, seed: int
) -> None:
    d = len(space.parameters)
    problem = {"num_vars": d, "names": list(space.names), "bounds": [[0.0, 1.0]] * d}
    unit = salib_sobol.sample(problem, n, calc_second_order=second_order, seed=seed)
    study = saltelli(space, n, second_order=second_order, seed=seed)
    assert _design(study)["rows"] == _unit_ids(space, unit)


def test_saltelli_replicates_scenario_and_model_reach_the_study() -> None:
    space = ParameterSpace.from_dict({"x": {"lower": 0, "upper": 1}, "y": {"lower": 1, "upper": 2}})
    study = saltelli(space, 4, seed=5, replicates=3, scenario="lockdown", model="pkg.M")
    assert study.model == "pkg.M" and study.scenario == "lockdown"
    assert study.n_replicates == 3
    assert study.total_simulation_count() == 3 * 4 * 4
    assert SimulationStudy.from_json(study.to_json()).to_json() == study.to_json()


# -- morris --------------------------------------------------------------------------------------


@FAST
@given(
    space=any_spaces,
    trajectories=st.integers(4, 6),
    levels=st.sampled_from([2, 4, 6]),
    seed=SEEDS,
)
def test_morris_trajectories_step_one_parameter_at_a_time_on_the_grid(
    space: ParameterSpace, trajectories: int, levels: int, seed: int
) -> None:
    space = _with_fixed(space)
    study = _quiet_morris(space, trajectories, levels=levels, seed=seed)
    d = len(space.parameters)
    design = _design(study)
    assert design["method"] == "morris"
    assert design["trajectories"] == trajectories and design["levels"] == levels
    assert design["parameters"] == list(space.names)
    assert len(design["rows"]) == trajectories * (d + 1)
    unit = np.asarray(design["unit"], dtype=np.float64)
    assert unit.shape == (trajectories * (d + 1), d)
    on_grid = unit * (levels - 1)
    np.testing.assert_allclose(on_grid, np.rint(on_grid), atol=1e-9)
    assert unit.min() >= 0.0 and unit.max() <= 1.0
    delta = levels / (2 * (levels - 1))  # SALib's step on the grid
    for t in range(trajectories):
        path = unit[t * (d + 1) : (t + 1) * (d + 1)]
        moved = []
        for before, after in itertools.pairwise(path):
            changed = np.flatnonzero(~np.isclose(before, after))
            assert len(changed) == 1
            assert abs(after[changed[0]] - before[changed[0]]) == pytest.approx(delta)
            moved.append(int(changed[0]))
        assert sorted(moved) == list(range(d))  # each parameter moves once per trajectory
    assert design["rows"] == _unit_ids(space, unit)
    _check_sets(space, study)


@FAST
@given(space=any_spaces, trajectories=st.integers(4, 6), seed=SEEDS)
def test_morris_same_seed_same_study(space: ParameterSpace, trajectories: int, seed: int) -> None:
    first = _quiet_morris(space, trajectories, seed=seed)
    assert _quiet_morris(space, trajectories, seed=seed).to_json() == first.to_json()


def test_morris_different_seed_different_trajectories() -> None:
    params = [Parameter(name, 0.0, 1.0) for name in "abc"]
    space = ParameterSpace.from_parameters(params, model="m.M")
    first, second = morris(space, 4, seed=1), morris(space, 4, seed=2)
    assert _design(first)["unit"] != _design(second)["unit"]
    assert _design(first)["rows"] != _design(second)["rows"]


# -- read_design ---------------------------------------------------------------------------------

SPACE = ParameterSpace.from_parameters(
    [
        Parameter("a", 0.0, 1.0),
        Parameter("b", 1.0, 100.0, log=True),
        Parameter("k", 0, 9, kind="int"),
    ],
    model="pkg.mod.Model",
)


def _quiet_morris(space: ParameterSpace, trajectories: int, **kwargs: Any) -> SimulationStudy:
    """morris() on a drawn space, whose coarse grids may repeat rows (a warning, tested below)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepeatedDesignWarning)
        return morris(space, trajectories, **kwargs)


def test_a_morris_design_that_repeats_itself_warns() -> None:
    two = ParameterSpace.from_parameters(
        [Parameter("a", 0.0, 1.0), Parameter("b", 0.0, 1.0)], model="m.M"
    )
    with pytest.warns(RepeatedDesignWarning, match=r"give only 8 distinct elementary effects"):
        study = morris(two, 9, seed=1)
    assert study.parameter_count() <= 16  # the 4 x 4 grid
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        morris(two, 8, seed=1)
        morris(two, 32, levels=8, seed=1)


def _job_with(job: SimJob, **design: Any) -> SimJob:
    """``job`` with its design record changed (``None`` drops a key)."""
    record = {**job.metadata["design"], **design}
    record = {k: v for k, v in record.items() if v is not None}
    return SimJob(job.job_id, job.tasks, {**job.metadata, "design": record})


@pytest.mark.parametrize("second_order", [False, True])
def test_read_design_of_a_saltelli_job(bundle_ref: str, second_order: bool) -> None:
    study = saltelli(SPACE, 8, second_order=second_order, seed=9, replicates=2)
    job = study.to_simjob(bundle_ref)
    design = read_design(job)
    assert isinstance(design, Design)
    assert design.method == "saltelli" and design.n == 8 and design.seed == 9
    assert design.second_order is second_order
    assert design.parameters == ("a", "b", "k")
    assert design.rows == tuple(_design(study)["rows"])
    assert design.step == (8 if second_order else 5)
    assert len(design.rows) == 8 * design.step
    assert set(design.rows) == set(job.get_task_groups())
    assert design.problem() == {
        "num_vars": 3,
        "names": ["a", "b", "k"],
        "bounds": [[0.0, 1.0]] * 3,
    }


def test_read_design_of_a_morris_job(bundle_ref: str) -> None:
    study = morris(SPACE, 5, levels=6, seed=4)
    job = study.to_simjob(bundle_ref)
    design = read_design(job)
    assert design.method == "morris" and design.n == 5 and design.levels == 6
    assert design.parameters == ("a", "b", "k") and design.seed == 4
    assert design.step == 4 and len(design.rows) == 20
    assert design.rows == tuple(_design(study)["rows"])
    assert set(design.rows) == set(job.get_task_groups())
    np.testing.assert_array_equal(design.unit_matrix(), np.asarray(_design(study)["unit"]))
    assert design.unit_matrix().shape == (20, 3)


def test_read_design_refuses_a_job_without_one(bundle_ref: str) -> None:
    job = lhs(SPACE, 4, seed=1).to_simjob(bundle_ref)
    with pytest.raises(ContractViolationError, match=re.escape("mops sample saltelli|morris")):
        read_design(job)
    designed = saltelli(SPACE, 4, seed=1).to_simjob(bundle_ref)
    with pytest.raises(ContractViolationError, match=re.escape("mops sample saltelli|morris")):
        read_design(_job_with(designed, method="sobol"))


@pytest.mark.parametrize(
    ("sampler", "change", "words"),
    [
        ("saltelli", "truncate rows", "19 rows, expected 20"),
        ("saltelli", "drop parameters", "damaged"),
        ("saltelli", "drop n", "damaged"),
        ("saltelli", "second order without its rows", "20 rows, expected 32"),
        ("morris", "truncate rows", "15 rows, expected 16"),
        ("saltelli", "rows as a string", "damaged .expected a list"),
        ("morris", "foreign rows", "parameter sets the job does not have"),
    ],
)
def test_read_design_refuses_a_damaged_record(
    bundle_ref: str, sampler: str, change: str, words: str
) -> None:
    study = saltelli(SPACE, 4, seed=2) if sampler == "saltelli" else morris(SPACE, 4, seed=2)
    job = study.to_simjob(bundle_ref)
    record = job.metadata["design"]
    read_design(job)  # intact, it reads
    damage: dict[str, Any] = {
        "truncate rows": {"rows": record["rows"][:-1]},
        "drop parameters": {"parameters": None},
        "drop n": {"n": None},
        "second order without its rows": {"second_order": True},
        "rows as a string": {"rows": "x" * len(record["rows"])},
        "foreign rows": {"rows": ["0" * 64, *record["rows"][1:]]},
    }[change]
    with pytest.raises(ContractViolationError, match=words):
        read_design(_job_with(job, **damage))


def test_read_design_names_a_truncated_unit_matrix(bundle_ref: str) -> None:
    job = morris(SPACE, 4, seed=2).to_simjob(bundle_ref)
    damaged = _job_with(job, unit=job.metadata["design"]["unit"][:-1])
    with pytest.raises(ContractViolationError, match="15 unit rows for 16 design rows"):
        read_design(damaged)


# -- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n": 3}, "n must be an integer of at least 4, got 3"),
        ({"n": 0}, "n must be an integer of at least 4, got 0"),
        ({"n": 8.0}, "n must be an integer of at least 4, got 8.0"),
        ({"n": True}, "n must be an integer of at least 4, got True"),
        ({"n": 4, "seed": -1}, "seed must be a non-negative integer"),
        ({"n": 4, "replicates": 0}, "n_replicates"),
    ],
)
def test_saltelli_bad_arguments(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ContractViolationError, match=words):
        saltelli(SPACE, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"trajectories": 3}, "trajectories must be an integer of at least 4, got 3"),
        ({"trajectories": 4.0}, "trajectories must be an integer of at least 4, got 4.0"),
        ({"trajectories": 4, "levels": 3}, "levels must be an even integer of at least 2, got 3"),
        ({"trajectories": 4, "levels": 5}, "levels must be an even integer of at least 2, got 5"),
        ({"trajectories": 4, "levels": 0}, "levels must be an even integer of at least 2, got 0"),
        ({"trajectories": 4, "levels": 4.0}, "levels must be an even integer"),
        ({"trajectories": 4, "seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_morris_bad_arguments(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ContractViolationError, match=words):
        morris(SPACE, **kwargs)


def test_too_many_rows_are_refused_before_sampling() -> None:
    one = ParameterSpace.from_parameters([Parameter("x", 0.0, 1.0)], model="m.M")
    n = 1 << 19  # 3 * 2**19 rows
    with pytest.raises(ContractViolationError, match=f"{3 * n} rows \\(more than {MAX_SETS}\\)"):
        saltelli(one, n, seed=0)
    with pytest.raises(ContractViolationError, match=f"more than {MAX_SETS}"):
        saltelli(SPACE, 1 << 17, second_order=True, seed=0)  # 8 * 2**17 rows
    with pytest.raises(ContractViolationError, match=f"{MAX_SETS + 2} rows \\(more than"):
        morris(one, MAX_SETS // 2 + 1, seed=0)


def test_a_space_without_a_model_path_needs_one() -> None:
    space = ParameterSpace.from_dict({"x": {"lower": 0, "upper": 1}})
    with pytest.raises(ContractViolationError, match="model: give the model's import path"):
        saltelli(space, 4, seed=0)
    with pytest.raises(ContractViolationError, match="model: give the model's import path"):
        morris(space, 4, seed=0)
    assert saltelli(space, 4, seed=0, model="pkg.M").model == "pkg.M"


def test_a_space_without_free_parameters_is_refused() -> None:
    empty = SPACE.with_fixed({"a": 0.5, "b": 2.0, "k": 1})
    with pytest.raises(ContractViolationError, match="no free parameters"):
        saltelli(empty, 8, seed=0)
    with pytest.raises(ContractViolationError, match="no free parameters"):
        morris(empty, 4, seed=0)


@pytest.mark.parametrize(("n", "lower", "upper"), [(1000, 512, 1024), (12, 8, 16), (5, 4, 8)])
def test_n_not_a_power_of_two_warns_naming_the_nearest(n: int, lower: int, upper: int) -> None:
    one = ParameterSpace.from_parameters([Parameter("x", 0.0, 1.0)], model="m.M")
    with pytest.warns(SobolSampleSizeWarning) as caught:
        study = saltelli(one, n, seed=0)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"N={n} is not a power of two" in message
    assert f"N={lower}" in message and f"N={upper}" in message
    assert caught[0].filename == __file__  # points at the caller
    assert len(_design(study)["rows"]) == 3 * n


def test_a_power_of_two_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (4, 8, 64):
            saltelli(SPACE, n, seed=0)


@pytest.mark.parametrize("second_order", [False, True])
def test_each_row_plays_its_recorded_role(second_order: bool) -> None:
    study = saltelli(SPACE, 8, second_order=second_order, seed=4)
    record = study.metadata["design"]  # type: ignore[index]
    by_id = {make_param_id(s): s for s in study.parameter_sets}
    roles, names = record["roles"], record["parameters"]
    assert roles[0] == "A" and roles[-1] == "B" and len(roles) == len(record["rows"]) // 8
    for base in range(8):
        block = [by_id[pid] for pid in record["rows"][base * len(roles) : (base + 1) * len(roles)]]
        a, b = block[0], block[-1]
        for role, params in zip(roles[1:-1], block[1:-1], strict=True):
            kind, _, name = role.partition(":")
            source, other = (a, b) if kind == "AB" else (b, a)
            assert params == {**source, name: other[name]}, (role, params)
        assert {r.partition(":")[2] for r in roles[1:-1]} == set(names)
