"""The samplers: bounds, strata, distinct grids, determinism, coercion, metadata."""

from __future__ import annotations

import math
import warnings
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from modelops.model import Parameter
from modelops.sampling import (
    MAX_SETS,
    ParameterSpace,
    SobolSampleSizeWarning,
    grid,
    lhs,
    random,
    sobol,
)
from modelops_contracts import ContractViolationError, SimulationStudy
from modelops_contracts.params import make_param_id
from tests.strategies import spaces

SAMPLED = {"random": random, "lhs": lhs, "sobol": sobol}
FAST = settings(max_examples=40, deadline=None)


def _draw(method: str, space: ParameterSpace, n: int, seed: int) -> SimulationStudy:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SobolSampleSizeWarning)
        return SAMPLED[method](space, n, seed=seed)


def _inside(space: ParameterSpace, study: SimulationStudy) -> None:
    for params in study.parameter_sets:
        assert set(params) == set(space.names)
        for p in space.parameters:
            value = params[p.name]
            assert type(value) is (int if p.kind == "int" else float)
            assert p.lower <= value <= p.upper


@FAST
@given(
    space=spaces(),
    method=st.sampled_from(sorted(SAMPLED)),
    n=st.integers(1, 40),
    seed=st.integers(0, 2**32),
)
def test_every_sample_inside_its_bounds(
    space: ParameterSpace, method: str, n: int, seed: int
) -> None:
    study = _draw(method, space, n, seed)
    _inside(space, study)
    assert 1 <= len(study.parameter_sets) <= n


@FAST
@given(space=spaces(max_dims=3), n=st.integers(1, 6))
def test_grid_inside_bounds_without_duplicates(space: ParameterSpace, n: int) -> None:
    study = grid(space, n)
    _inside(space, study)
    keys = [tuple(sorted(s.items())) for s in study.parameter_sets]
    assert len(keys) == len(set(keys))
    expected = math.prod(
        min(n, int(p.upper - p.lower) + 1) if p.kind == "int" else n for p in space.parameters
    )
    assert len(keys) == expected


@FAST
@given(low=st.integers(-20, 20), width=st.integers(0, 12), n=st.integers(1, 30))
def test_int_grid_gives_distinct_integers_covering_the_ends(low: int, width: int, n: int) -> None:
    param = Parameter("k", low, low + width + 1, kind="int")
    study = grid(ParameterSpace.from_parameters([param], model="m.M"), n)
    values = [s["k"] for s in study.parameter_sets]
    assert len(values) == len(set(values)) == min(n, width + 2)
    if n > 1:
        assert min(values) == param.lower and max(values) == param.upper


@FAST
@given(n=st.integers(1, 60), dims=st.integers(1, 5), seed=st.integers(0, 2**32))
def test_lhs_has_one_point_per_stratum_per_dimension(n: int, dims: int, seed: int) -> None:
    params = [Parameter(f"p{i}", -1.0 - i, 2.0 + 3 * i) for i in range(dims)]
    study = lhs(ParameterSpace.from_parameters(params, model="m.M"), n, seed=seed)
    assert len(study.parameter_sets) == n
    for p in params:
        strata = sorted(
            int((s[p.name] - p.lower) / (p.upper - p.lower) * n) for s in study.parameter_sets
        )
        assert strata == list(range(n))


@FAST
@given(
    space=spaces(),
    method=st.sampled_from(sorted(SAMPLED)),
    n=st.integers(1, 20),
    seed=st.integers(0, 2**32),
)
def test_same_seed_same_study_byte_for_byte(
    space: ParameterSpace, method: str, n: int, seed: int
) -> None:
    first = _draw(method, space, n, seed)
    assert _draw(method, space, n, seed).to_yaml() == first.to_yaml()


def test_different_seeds_give_different_designs() -> None:
    space = ParameterSpace.from_parameters([Parameter("x", 0.0, 1.0)], model="m.M")
    for sampler in (random, lhs, sobol):
        a, b = sampler(space, 8, seed=1), sampler(space, 8, seed=2)
        assert a.parameter_sets != b.parameter_sets


def test_sobol_warns_when_n_is_not_a_power_of_two() -> None:
    space = ParameterSpace.from_parameters([Parameter("x", 0.0, 1.0)], model="m.M")
    with pytest.warns(SobolSampleSizeWarning, match="n=12 is not a power of two.*n=8 or n=16"):
        study = sobol(space, 12, seed=0)
    assert len(study.parameter_sets) == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(sobol(space, 16, seed=0).parameter_sets) == 16


def test_log_scale_is_uniform_in_log_space() -> None:
    space = ParameterSpace.from_parameters([Parameter("x", 1e-3, 1e3, log=True)], model="m.M")
    values = [s["x"] for s in lhs(space, 600, seed=5).parameter_sets]
    below_one = sum(v < 1.0 for v in values)
    assert below_one == 300  # LHS: exactly half the strata lie below the geometric middle
    axis = [s["x"] for s in grid(space, 3).parameter_sets]
    assert axis == pytest.approx([1e-3, 1.0, 1e3])


def test_int_values_coerced_before_hashing() -> None:
    param = Parameter("k", 0, 3, kind="int")
    space = ParameterSpace.from_parameters([param], model="m.M").with_fixed({})
    as_float = space.point([1.0])
    as_int = space.point([1])
    assert as_float == as_int and type(as_float["k"]) is int
    assert make_param_id(as_float) == make_param_id(as_int)
    assert make_param_id({"k": 1.0}) != make_param_id({"k": 1})  # why coercion matters
    study = grid(ParameterSpace.from_parameters([param], model="m.M"), 4)
    assert all(type(s["k"]) is int for s in study.parameter_sets)


def test_int_only_space_drops_repeated_sets() -> None:
    space = ParameterSpace.from_parameters([Parameter("k", 0, 2, kind="int")], model="m.M")
    study = random(space, 50, seed=3)
    values = [s["k"] for s in study.parameter_sets]
    assert sorted(values) == [0, 1, 2]
    assert study.metadata is not None and study.metadata["n_sets"] == 3


def test_study_records_design_and_fixed_values() -> None:
    space = ParameterSpace.from_dict({"x": {"lower": 0, "upper": 1}, "fixed": {"y": 7}}).with_fixed(
        {"z": 0.5}
    )
    study = lhs(space, 4, seed=11, replicates=3, scenario="lockdown", model="pkg.M")
    assert study.model == "pkg.M" and study.scenario == "lockdown"
    assert study.sampling_method == "lhs" and study.n_replicates == 3
    assert study.total_simulation_count() == 12
    assert all(s["y"] == 7 and s["z"] == 0.5 for s in study.parameter_sets)
    meta: dict[str, Any] = study.metadata or {}
    assert meta["sampler"] == "lhs" and meta["n"] == 4 and meta["seed"] == 11
    assert ParameterSpace.from_dict(meta["space"]) == ParameterSpace.from_dict(space.to_dict())
    assert SimulationStudy.from_yaml(study.to_yaml()).to_yaml() == study.to_yaml()


def test_seed_is_drawn_and_recorded_when_not_given() -> None:
    space = ParameterSpace.from_parameters([Parameter("x", 0.0, 1.0)], model="m.M")
    study = random(space, 3)
    seed = (study.metadata or {})["seed"]
    assert random(space, 3, seed=seed).parameter_sets == study.parameter_sets


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n": 0}, "n must be a positive integer"),
        ({"n": 2.0}, "n must be a positive integer"),
        ({"n": 4, "seed": -1}, "seed must be"),
        ({"n": 4, "model": None}, "model:"),
    ],
)
def test_bad_arguments_raise_one_line(kwargs: dict[str, Any], words: str) -> None:
    space = ParameterSpace.from_dict({"x": {"lower": 0, "upper": 1}})
    args = {"seed": 0, "model": "m.M", **kwargs}
    with pytest.raises(ContractViolationError, match=words):
        lhs(space, **args)


def test_grid_too_large_and_empty_space_are_rejected() -> None:
    params = [Parameter(f"p{i}", 0.0, 1.0) for i in range(7)]
    space = ParameterSpace.from_parameters(params, model="m.M")
    with pytest.raises(ContractViolationError, match=f"more than {MAX_SETS}"):
        grid(space, 10)
    with pytest.raises(ContractViolationError, match="no free parameters"):
        grid(space.with_fixed({p.name: 0.5 for p in params}), 2)
