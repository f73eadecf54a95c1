"""The calibration algorithms: bounds, kinds, determinism, replay, convergence, bad input."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import hypothesis.strategies as st
import numpy as np
import optuna
import pytest
from hypothesis import given, settings

from modelops.calibration._algorithms import (
    ALGORITHMS,
    AbcSmc,
    Algorithm,
    Point,
    make_algorithm,
)
from modelops.model import Parameter
from modelops.sampling import ParameterSpace, random, sobol
from modelops_contracts import ContractViolationError
from tests.strategies import spaces as shared_spaces

NAMES = tuple(ALGORITHMS)
FEW = settings(max_examples=15, deadline=None)
SOME = settings(max_examples=25, deadline=None)
Loss = Callable[[Point], float | None]


def spaces(max_dims: int = 3) -> st.SearchStrategy[ParameterSpace]:
    return shared_spaces(max_dims=max_dims, max_width=200)


def _space(*params: Parameter, fixed: dict[str, Any] | None = None) -> ParameterSpace:
    space = ParameterSpace.from_parameters(params, model="pkg.mod.Model")
    return space.with_fixed(fixed) if fixed else space


def _unit_loss(space: ParameterSpace) -> Loss:
    """A smooth loss with some failures (None) and infinities mixed in, keyed on the values."""

    def loss(point: Point) -> float | None:
        total = 0.0
        for p in space.parameters:
            low, high, x = float(p.lower), float(p.upper), float(point[p.name])
            if p.log:
                low, high, x = math.log(low), math.log(high), math.log(x)
            total += ((x - low) / (high - low) - 0.3) ** 2
        bucket = int(total * 1000) % 11
        return None if bucket == 0 else math.inf if bucket == 1 else total

    return loss


def _drive(algo: Algorithm, sizes: Sequence[int], loss: Loss) -> list[list[Point]]:
    """Run ask/tell rounds; return each round's points."""
    rounds = []
    for n in sizes:
        points = algo.ask(n)
        rounds.append(points)
        algo.tell(points, [loss(p) for p in points])
    return rounds


def _make(
    name: str, space: ParameterSpace, seed: int, budget: int = 40, batch: int = 4
) -> Algorithm:
    extra = {"population": 4} if name == "abc-smc" else {}
    return make_algorithm(name, space, seed=seed, budget=budget, batch=batch, **extra)


def _check_inside(space: ParameterSpace, points: list[Point]) -> None:
    for point in points:
        assert list(point) == list(space.names)
        for p in space.parameters:
            value = point[p.name]
            assert type(value) is (int if p.kind == "int" else float)
            assert p.lower <= value <= p.upper


def _text(rounds: list[list[Point]]) -> str:
    return json.dumps(rounds)  # exact: reprs of floats, int vs float kept


# -- properties of every algorithm ---------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(
    space=spaces(),
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4),
)
def test_points_in_bounds_of_their_kind_and_reproducible(
    name: str, space: ParameterSpace, seed: int, sizes: list[int]
) -> None:
    loss = _unit_loss(space)
    first = _drive(_make(name, space, seed), sizes, loss)
    assert [len(r) for r in first] == sizes
    for points in first:
        _check_inside(space, points)
    assert _text(_drive(_make(name, space, seed), sizes, loss)) == _text(first)


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(space=spaces(), seed=st.integers(0, 2**32 - 1), k=st.integers(1, 4))
def test_replay_after_a_crash_asks_the_same_next_points(
    name: str, space: ParameterSpace, seed: int, k: int
) -> None:
    loss = _unit_loss(space)
    sizes = [3, 5, 2, 4, 3][:k]
    original = _make(name, space, seed)
    journal = _drive(original, sizes, loss)
    replayed = _make(name, space, seed)
    for points in journal:  # the loop re-tells the journaled points (as JSON) and losses
        assert replayed.ask(len(points)) == points
        told = json.loads(json.dumps(points))
        replayed.tell(told, [loss(p) for p in told])
    assert _text([replayed.ask(4)]) == _text([original.ask(4)])


@pytest.mark.parametrize("name", NAMES)
def test_different_seeds_give_different_points(name: str) -> None:
    space = _space(Parameter("a", 0.0, 1.0), Parameter("b", 1e-3, 1.0, log=True))
    loss = _unit_loss(space)
    one = _drive(_make(name, space, 1), [4, 4, 4], loss)
    two = _drive(_make(name, space, 2), [4, 4, 4], loss)
    assert one[0] != two[0] and one[-1] != two[-1]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "params",
    [
        (Parameter("n", 1, 6, kind="int"), Parameter("m", -3, 3, kind="int")),
        (Parameter("x", 1e-4, 1.0, log=True), Parameter("k", 1, 1000, kind="int", log=True)),
        (Parameter("only", 0, 1, kind="int"),),
    ],
    ids=["int-only", "log-only", "one-binary-int"],
)
def test_int_only_and_log_only_spaces(name: str, params: tuple[Parameter, ...]) -> None:
    space = _space(*params)
    rounds = _drive(_make(name, space, 7), [4] * 6, _unit_loss(space))
    for points in rounds:
        _check_inside(space, points)


@pytest.mark.parametrize("name", NAMES)
def test_fixed_parameters_never_appear(name: str) -> None:
    space = _space(Parameter("a", 0.0, 1.0), Parameter("b", 0.0, 1.0), fixed={"b": 0.5})
    rounds = _drive(_make(name, space, 3), [4, 4], _unit_loss(space))
    assert all(list(p) == ["a"] for points in rounds for p in points)


@pytest.mark.parametrize("name", NAMES)
def test_settings_are_json_and_complete(name: str) -> None:
    algo = _make(name, _space(Parameter("a", 0.0, 1.0)), 0, budget=40, batch=4)
    filled = algo.settings()
    assert json.loads(json.dumps(filled)) == filled
    rebuilt = make_algorithm(name, algo.space, seed=0, budget=40, batch=4, **filled)
    assert rebuilt.settings() == filled
    assert not algo.finished()


_SCRIPT = """
import json, math
from modelops.model import Parameter
from modelops.sampling import ParameterSpace
from modelops.calibration._algorithms import ALGORITHMS, make_algorithm
space = ParameterSpace.from_parameters([
    Parameter("a", -1.0, 2.0), Parameter("b", 1e-3, 1.0, log=True),
    Parameter("n", 0, 9, kind="int"), Parameter("m", 1, 500, kind="int", log=True)])
out = {}
for name in ALGORITHMS:
    extra = {"population": 6} if name == "abc-smc" else {}
    algo = make_algorithm(name, space, seed=12345, budget=60, batch=6, **extra)
    rounds = []
    for _ in range(6):
        points = algo.ask(6)
        rounds.append(points)
        algo.tell(points, [abs(p["a"] - 0.5) + p["b"] + p["n"] / 9 + math.log(p["m"]) / 7
                           for p in points])
    out[name] = rounds
print(json.dumps(out))
"""


def test_a_fresh_interpreter_asks_the_same_points() -> None:
    """No dependence on hash seeds or process state: two interpreters agree byte for byte."""
    runs = [
        subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        ).stdout
        for hash_seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    assert set(json.loads(runs[0])) == set(ALGORITHMS)


# -- optimizers find a minimum -------------------------------------------------------------------


def _best(algo: Algorithm, rounds: int, batch: int, f: Callable[[Point], float]) -> float:
    best = math.inf
    for _ in range(rounds):
        points = algo.ask(batch)
        losses = [f(p) for p in points]
        algo.tell(points, losses)
        best = min(best, *losses)
    return best


@pytest.mark.parametrize("name", ["tpe", "cmaes"])
@pytest.mark.parametrize("seed", [0, 1])
def test_optimizers_find_the_minimum_of_a_quadratic(name: str, seed: int) -> None:
    space = _space(
        Parameter("x", -5.0, 5.0),
        Parameter("y", 1e-3, 10.0, log=True),
        Parameter("k", 0, 20, kind="int"),
    )

    def f(p: Point) -> float:
        return (p["x"] - 1.0) ** 2 + math.log10(p["y"] / 0.1) ** 2 + ((p["k"] - 12) / 4) ** 2

    algo = make_algorithm(name, space, seed=seed, budget=96, batch=8)
    assert _best(algo, 12, 8, f) < 0.1
    assert _best(make_algorithm("random", space, seed=seed, budget=96, batch=8), 12, 8, f) > 0.01


def test_cmaes_searches_one_dimension_itself() -> None:
    space = _space(Parameter("x", 0.0, 10.0))
    algo = make_algorithm("cmaes", space, seed=5, budget=60, batch=6)
    assert _best(algo, 10, 6, lambda p: (p["x"] - 3.7) ** 2) < 1e-4  # random search: ~1e-2


def test_failures_never_win_and_do_not_stop_the_search() -> None:
    space = _space(Parameter("x", 0.0, 1.0), Parameter("y", 0.0, 1.0))
    algo = make_algorithm("tpe", space, seed=2, budget=60, batch=6)

    def f(p: Point) -> float | None:
        if p["x"] < 0.2:
            return None
        return math.inf if p["y"] < 0.2 else (p["x"] - 0.6) ** 2 + (p["y"] - 0.6) ** 2

    best = math.inf
    for _ in range(10):
        points = algo.ask(6)
        losses = [f(p) for p in points]
        algo.tell(points, losses)
        best = min([best, *(v for v in losses if v is not None)])
    assert best < 0.02
    study = algo._study  # type: ignore[attr-defined]
    assert study.best_trial.value == pytest.approx(best)


def test_cmaes_generations_follow_the_batch() -> None:
    space = _space(Parameter("x", 0.0, 1.0), Parameter("y", 0.0, 1.0))
    assert make_algorithm("cmaes", space, seed=0, budget=50, batch=5).settings()["popsize"] == 10
    assert make_algorithm("cmaes", space, seed=0, budget=50, batch=32).settings()["popsize"] == 32
    assert make_algorithm("cmaes", space, seed=0, budget=50, batch=1).settings()["popsize"] == 6
    ints = _space(Parameter("n", 0, 9, kind="int"), Parameter("y", 0.0, 1.0))
    assert make_algorithm("cmaes", ints, seed=0, budget=50, batch=4).settings()["with_margin"]
    assert not make_algorithm("cmaes", space, seed=0, budget=50, batch=4).settings()["with_margin"]
    tuned = make_algorithm("cmaes", space, seed=0, budget=50, batch=4, sigma0=0.3)
    assert _best(tuned, 4, 4, lambda p: p["x"] + p["y"]) < 1.0


def test_optuna_log_level_is_left_as_it_was() -> None:
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        space = _space(Parameter("x", 0.0, 1.0))
        for name in ("tpe", "cmaes"):
            _drive(
                make_algorithm(name, space, seed=0, budget=8, batch=4), [4, 4], _unit_loss(space)
            )
            assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


# -- space-filling baselines ---------------------------------------------------------------------


def test_sobol_first_power_of_two_points_hit_every_bin() -> None:
    space = _space(Parameter("x", 2.0, 4.0))
    algo = make_algorithm("sobol", space, seed=11, budget=64, batch=5)
    points = [p for r in _drive(algo, [5, 5, 5, 1], lambda p: 0.0) for p in r]  # asks continue
    assert sorted(int((p["x"] - 2.0) / 2.0 * 16) for p in points) == list(range(16))


def test_random_covers_the_space() -> None:
    space = _space(Parameter("x", 0.0, 1.0), Parameter("k", 0, 3, kind="int"))
    algo = make_algorithm("random", space, seed=4, budget=200, batch=50)
    points = _drive(algo, [50] * 4, lambda p: 0.0)
    cells = {(int(p["x"] * 4), p["k"]) for r in points for p in r}
    assert cells == {(i, k) for i in range(4) for k in range(4)}


@pytest.mark.parametrize("name,sampler", [("random", random), ("sobol", sobol)])
@SOME
@given(space=spaces(), seed=st.integers(0, 2**32 - 1))
def test_baselines_map_the_unit_cube_like_mops_sample(
    name: str, sampler: Callable[..., Any], space: ParameterSpace, seed: int
) -> None:
    algo = make_algorithm(name, space, seed=seed, budget=16, batch=4)
    asked = [p for points in _drive(algo, [4, 4, 8], lambda p: 0.0) for p in points]
    study = sampler(space, 16, seed=seed)
    distinct = list({json.dumps(p): p for p in asked}.values())
    assert distinct == study.parameter_sets


# -- ABC-SMC -------------------------------------------------------------------------------------


def _abc_run(
    algo: AbcSmc, distance: Callable[[Point], float | None], batch: int, budget: int
) -> int:
    spent = 0
    while spent < budget and not algo.finished():
        points = algo.ask(batch)
        algo.tell(points, [distance(p) for p in points])
        spent += batch
    return spent


def _mean(population: Any, name: str) -> float:
    return float(
        sum(w * p[name] for w, p in zip(population.weights, population.points, strict=True))
    )


def test_abc_smc_posterior_concentrates_on_the_truth() -> None:
    space = _space(Parameter("theta", 0.0, 1.0))
    algo = make_algorithm("abc-smc", space, seed=3, budget=800, batch=20, population=40)
    assert isinstance(algo, AbcSmc) and algo.posterior() is None
    _abc_run(algo, lambda p: abs(p["theta"] - 0.3), 20, 800)
    pops = algo.populations()
    assert len(pops) >= 4
    epsilons = [p.epsilon for p in pops]
    assert epsilons[0] == math.inf and all(a > b for a, b in itertools.pairwise(epsilons))
    assert pops[0].kernel_cov == () and all(len(p.kernel_cov) == 1 for p in pops[1:])
    for index, pop in enumerate(pops):
        assert pop.index == index and len(pop.points) == 40
        assert math.fsum(pop.weights) == pytest.approx(1.0)
        assert max(pop.distances) <= pop.epsilon
    posterior = algo.posterior()
    assert posterior is pops[-1]
    assert abs(_mean(posterior, "theta") - 0.3) < 0.02
    assert max(abs(p["theta"] - 0.3) for p in posterior.points) < epsilons[-1] + 1e-12 < 0.05


def test_abc_smc_keeps_the_prior_when_every_distance_ties() -> None:
    """With one distance for all, every population should still be a sample of the prior."""
    space = _space(
        Parameter("a", 0.01, 100.0, log=True), Parameter("k", 1, 8, kind="int", log=True)
    )
    algo = make_algorithm("abc-smc", space, seed=8, budget=1600, batch=400, population=400)
    assert isinstance(algo, AbcSmc)
    _abc_run(algo, lambda p: 1.0, 400, 1600)
    assert algo.finished()  # epsilon cannot shrink below the one distance
    posterior = algo.posterior()
    assert posterior is not None and posterior.index == 1 and posterior.epsilon == 1.0
    weights = np.array(posterior.weights)
    log_a = np.array([math.log10(p["a"]) for p in posterior.points])
    assert abs(float(weights @ log_a)) < 0.2  # prior: uniform on [-2, 2]
    k = np.array([p["k"] for p in posterior.points])
    for value in range(1, 9):
        prior = math.log((value + 1) / value) / math.log(9)
        assert abs(float(weights[k == value].sum()) - prior) < 0.06


def test_abc_smc_rejects_failures_and_fills_population_in_ask_order() -> None:
    space = _space(Parameter("x", 0.0, 1.0))
    algo = make_algorithm("abc-smc", space, seed=0, budget=20, batch=6, population=3)
    assert isinstance(algo, AbcSmc)
    points = algo.ask(6)
    algo.tell(points, [None, math.inf, 0.5, 0.1, 0.2, 0.05])
    (pop,) = algo.populations()
    assert pop.points == tuple(points[2:5]) and pop.distances == (0.5, 0.1, 0.2)
    assert pop.weights == pytest.approx((1 / 3,) * 3)
    points = algo.ask(4)
    algo.tell(points, [0.3, 0.2, 0.1, 0.25])  # epsilon 0.2: the first and last are rejected
    assert len(algo.populations()) == 1
    points = algo.ask(1)
    algo.tell(points, [0.2])
    second = algo.populations()[1]
    assert second.epsilon == 0.2 and second.distances == (0.2, 0.1, 0.2)


def test_abc_smc_survives_a_collapsed_int_population() -> None:
    space = _space(Parameter("n", 0, 4, kind="int"), Parameter("m", 0, 1, kind="int"))
    algo = make_algorithm("abc-smc", space, seed=1, budget=400, batch=20, population=20)
    assert isinstance(algo, AbcSmc)
    _abc_run(algo, lambda p: abs(p["n"] - 3) + p["m"], 20, 400)
    assert algo.finished()
    posterior = algo.posterior()
    assert posterior is not None and posterior.epsilon == 0.0
    assert {(p["n"], p["m"]) for p in posterior.points} == {(3, 0)}
    assert [p.epsilon for p in algo.populations()][-2:] == [1.0, 0.0]  # ties: the next below


def test_abc_smc_finishes_at_max_populations_or_min_epsilon() -> None:
    space = _space(Parameter("x", 0.0, 1.0))
    capped = make_algorithm(
        "abc-smc", space, seed=0, budget=400, batch=10, population=10, max_populations=3
    )
    assert isinstance(capped, AbcSmc)
    _abc_run(capped, lambda p: abs(p["x"] - 0.5), 10, 400)
    assert capped.finished() and len(capped.populations()) == 3
    floor = make_algorithm(
        "abc-smc", space, seed=0, budget=4000, batch=10, population=10, min_epsilon=0.05
    )
    assert isinstance(floor, AbcSmc)
    _abc_run(floor, lambda p: abs(p["x"] - 0.5), 10, 4000)
    assert floor.finished()
    epsilons = [p.epsilon for p in floor.populations()]
    assert epsilons[-1] <= 0.05 < epsilons[-2]


def test_abc_smc_defaults() -> None:
    space = _space(Parameter("x", 0.0, 1.0))
    assert make_algorithm("abc-smc", space, seed=0, budget=200, batch=10).settings() == {
        "population": 50,
        "quantile": 0.5,
        "min_epsilon": None,
        "max_populations": None,
    }
    assert (
        make_algorithm("abc-smc", space, seed=0, budget=10_000, batch=10).settings()["population"]
        == 100
    )
    with pytest.raises(ContractViolationError, match="budget 3 is below two populations of 2"):
        make_algorithm("abc-smc", space, seed=0, budget=3, batch=1)
    with pytest.raises(ContractViolationError, match="below two populations of 50"):
        make_algorithm("abc-smc", space, seed=0, budget=99, batch=1, population=50)


# -- bad input -----------------------------------------------------------------------------------

SPACE = _space(Parameter("x", 0.0, 1.0), Parameter("y", 0.0, 1.0))


def test_unknown_algorithm() -> None:
    with pytest.raises(ContractViolationError) as err:
        make_algorithm("x", SPACE, seed=0, budget=10, batch=2)
    assert str(err.value) == "unknown algorithm 'x': use one of tpe, cmaes, random, sobol, abc-smc"


@pytest.mark.parametrize(
    "name,setting,message",
    [
        ("tpe", {"sigma0": 0.2}, "unknown setting 'sigma0' for algorithm 'tpe': use one of"),
        (
            "random",
            {"popsize": 4},
            "unknown setting 'popsize' for algorithm 'random': use one of none",
        ),
        (
            "tpe",
            {"n_startup_trials": -1},
            "'n_startup_trials' of algorithm 'tpe' must be an integer >= 0",
        ),
        ("tpe", {"multivariate": "yes"}, "'multivariate' of algorithm 'tpe' must be true or false"),
        ("tpe", {"n_ei_candidates": 2.0}, "must be an integer >= 1, got 2.0"),
        ("cmaes", {"popsize": 1}, "'popsize' of algorithm 'cmaes' must be an integer >= 2, got 1"),
        ("cmaes", {"sigma0": 0}, "'sigma0' of algorithm 'cmaes' must be a number > 0.0 and <= 1.0"),
        ("cmaes", {"sigma0": math.nan}, "must be a number > 0.0 and <= 1.0, got nan"),
        ("cmaes", {"with_margin": 1}, "'with_margin' of algorithm 'cmaes' must be true or false"),
        (
            "abc-smc",
            {"quantile": 1.0},
            "'quantile' of algorithm 'abc-smc' must be a number > 0.0 and < 1.0",
        ),
        (
            "abc-smc",
            {"population": 1},
            "'population' of algorithm 'abc-smc' must be an integer >= 2",
        ),
        ("abc-smc", {"min_epsilon": math.inf}, "must be a finite number or null, got inf"),
        ("abc-smc", {"max_populations": 0}, "must be an integer >= 1 or null, got 0"),
    ],
)
def test_bad_settings(name: str, setting: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractViolationError, match=message.replace("(", r"\(")):
        make_algorithm(name, SPACE, seed=0, budget=40, batch=4, **setting)


@pytest.mark.parametrize("name", NAMES)
def test_a_space_with_no_free_parameter_is_refused(name: str) -> None:
    space = SPACE.with_fixed({"x": 0.5, "y": 0.5})
    with pytest.raises(ContractViolationError, match="no free parameter"):
        make_algorithm(name, space, seed=0, budget=40, batch=4)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"seed": -1}, "seed must be 0..4294967295, got -1"),
        ({"seed": 2**32}, "seed must be 0..4294967295"),
        ({"budget": 0}, "budget must be an integer >= 1, got 0"),
        ({"batch": True}, "batch must be an integer >= 1, got True"),
    ],
)
def test_bad_seed_budget_batch(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"seed": 0, "budget": 10, "batch": 2, **kwargs}
    with pytest.raises(ContractViolationError, match=message):
        make_algorithm("random", SPACE, **arguments)


def test_ask_and_tell_out_of_turn() -> None:
    algo = make_algorithm("random", SPACE, seed=0, budget=10, batch=2)
    with pytest.raises(ContractViolationError, match="tell without an ask"):
        algo.tell([], [])
    with pytest.raises(ContractViolationError, match="n must be an integer >= 1, got 0"):
        algo.ask(0)
    points = algo.ask(2)
    with pytest.raises(ContractViolationError, match="ask before the 2 points of the last ask"):
        algo.ask(1)
    with pytest.raises(ContractViolationError, match="tell got 1 points and 1 losses"):
        algo.tell(points[:1], [0.0])
    with pytest.raises(ContractViolationError, match=r"told point 1 .* is not the point asked"):
        algo.tell([points[0], points[0]], [0.0, 0.0])
    with pytest.raises(ContractViolationError, match="loss 0 must be a number or None, got 'x'"):
        algo.tell(points, ["x", 0.0])  # type: ignore[list-item]
    algo.tell([{**p, "fixed": 1} for p in points], [np.float64(1.0), 2])
    assert len(algo.ask(1)) == 1
