"""The samplers: grid, random, Latin hypercube and scrambled Sobol designs as studies.

Every sampler takes a :class:`ParameterSpace` (or a Model class), a size ``n`` and a ``seed`` and
returns a :class:`~modelops_contracts.SimulationStudy`; the same arguments give the same study.
``random``, ``lhs`` and ``sobol`` draw ``n`` points in the unit cube (numpy's Generator or
:mod:`scipy.stats.qmc`) and drop repeated parameter sets, which int parameters can produce;
``grid`` takes ``n`` points per parameter and never repeats one.
"""

from __future__ import annotations

import itertools
import math
import secrets
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from modelops.model import Model, Parameter
from modelops.sampling._space import ParameterSpace, Value
from modelops_contracts.entrypoint import DEFAULT_SCENARIO
from modelops_contracts.errors import ContractViolationError
from modelops_contracts.study import SimulationStudy

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["MAX_SETS", "SAMPLERS", "SobolSampleSizeWarning", "grid", "lhs", "random", "sobol"]

MAX_SETS = 1_000_000
"""The largest design a sampler builds (a grid grows as ``n ** parameters``)."""

SpaceLike = ParameterSpace | type[Model]


class SobolSampleSizeWarning(UserWarning):
    """A Sobol design of ``n`` points, ``n`` not a power of two, loses its balance properties."""


def grid(
    space: SpaceLike,
    n: int,
    *,
    seed: int | None = None,
    replicates: int = 1,
    scenario: str = DEFAULT_SCENARIO,
    model: str | None = None,
) -> SimulationStudy:
    """A full factorial grid of ``n`` points per parameter (evenly spaced, on its scale).

    Int parameters take distinct integers only, so they may have fewer than ``n`` points; with
    ``n == 1`` every parameter sits at the middle of its range. ``seed`` is only recorded.

    Raises:
        ContractViolationError: for a bad argument or a grid larger than :data:`MAX_SETS`.
    """
    space = as_space(space)
    check_n(n)
    size = math.prod(_axis_length(p, n) for p in space.parameters)
    if size > MAX_SETS:
        raise ContractViolationError(
            f"n: a grid of {n} points over {len(space.parameters)} parameters has {size} sets "
            f"(more than {MAX_SETS}); lower n or fix parameters",
            field="n",
            value=n,
        )
    axes = [_axis(p, n) for p in space.parameters]
    sets = [space.point(values) for values in itertools.product(*axes)]
    return design_study("grid", space, n, seed, sets, replicates, scenario, model)


def random(
    space: SpaceLike,
    n: int,
    *,
    seed: int | None = None,
    replicates: int = 1,
    scenario: str = DEFAULT_SCENARIO,
    model: str | None = None,
) -> SimulationStudy:
    """``n`` independent uniform draws (uniform in log space for log-scale parameters)."""
    return _sampled("random", _uniform, space, n, seed, replicates, scenario, model)


def lhs(
    space: SpaceLike,
    n: int,
    *,
    seed: int | None = None,
    replicates: int = 1,
    scenario: str = DEFAULT_SCENARIO,
    model: str | None = None,
) -> SimulationStudy:
    """A Latin hypercube of ``n`` points: one point in each of ``n`` strata of every parameter."""
    return _sampled("lhs", _latin_hypercube, space, n, seed, replicates, scenario, model)


def sobol(
    space: SpaceLike,
    n: int,
    *,
    seed: int | None = None,
    replicates: int = 1,
    scenario: str = DEFAULT_SCENARIO,
    model: str | None = None,
) -> SimulationStudy:
    """The first ``n`` points of a scrambled Sobol sequence.

    Warns:
        SobolSampleSizeWarning: if ``n`` is not a power of two (the design is then unbalanced).
    """
    return _sampled("sobol", _sobol, space, n, seed, replicates, scenario, model)


SAMPLERS: dict[str, Callable[..., SimulationStudy]] = {
    "grid": grid,
    "random": random,
    "lhs": lhs,
    "sobol": sobol,
}
"""Samplers by method name, as ``mops sample METHOD`` takes them."""


# -- unit-cube designs ---------------------------------------------------------------------------

UnitDesign = Callable[[int, int, np.random.Generator], "NDArray[np.float64]"]


def _uniform(n: int, d: int, rng: np.random.Generator) -> NDArray[np.float64]:
    return np.asarray(rng.random((n, d)), dtype=np.float64)


def _latin_hypercube(n: int, d: int, rng: np.random.Generator) -> NDArray[np.float64]:
    from scipy.stats import qmc

    return np.asarray(qmc.LatinHypercube(d, rng=rng).random(n), dtype=np.float64)


def _sobol(n: int, d: int, rng: np.random.Generator) -> NDArray[np.float64]:
    from scipy.stats import qmc

    engine = qmc.Sobol(d, scramble=True, rng=rng)
    if n & (n - 1) == 0:
        return np.asarray(engine.random_base2(n.bit_length() - 1), dtype=np.float64)
    warn_not_power_of_two("sobol: n", n, stacklevel=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy's own version of the warning above
        return np.asarray(engine.random(n), dtype=np.float64)


# -- shared --------------------------------------------------------------------------------------


def warn_not_power_of_two(what: str, n: int, *, stacklevel: int) -> None:
    """Warn that a Sobol' design of ``n`` points loses its balance; name the nearest powers."""
    lower, upper = 1 << (n.bit_length() - 1), 1 << n.bit_length()
    name = what.rpartition(" ")[2]
    warnings.warn(
        f"{what}={n} is not a power of two; the design loses the balance of the Sobol' "
        f"sequence (use {name}={lower} or {name}={upper})",
        SobolSampleSizeWarning,
        stacklevel=stacklevel + 1,
    )


def _sampled(
    method: str,
    design: UnitDesign,
    space: SpaceLike,
    n: int,
    seed: int | None,
    replicates: int,
    scenario: str,
    model: str | None,
) -> SimulationStudy:
    space = as_space(space)
    check_n(n)
    if n > MAX_SETS:
        raise ContractViolationError(f"n must be at most {MAX_SETS}, got {n}", field="n", value=n)
    seed = pick_seed(seed)
    unit = design(n, len(space.parameters), np.random.default_rng(seed))
    sets = _distinct(space.scale(unit))
    return design_study(method, space, n, seed, sets, replicates, scenario, model)


def _axis_length(parameter: Parameter, n: int) -> int:
    if parameter.kind == "int":
        return min(n, int(parameter.upper) - int(parameter.lower) + 1)
    return n


def _axis(parameter: Parameter, n: int) -> list[Value]:
    low, high = float(parameter.lower), float(parameter.upper)
    if parameter.log:
        points = np.geomspace(low, high, n) if n > 1 else np.array([math.sqrt(low * high)])
    else:
        points = np.linspace(low, high, n) if n > 1 else np.array([(low + high) / 2])
    if parameter.kind == "int":
        return sorted({int(v) for v in np.clip(np.rint(points), low, high)})
    return [float(v) for v in np.clip(points, low, high)]


def _distinct(sets: list[dict[str, Value]]) -> list[dict[str, Value]]:
    seen: set[tuple[Value, ...]] = set()
    out = []
    for params in sets:
        key = tuple(params.values())
        if key not in seen:
            seen.add(key)
            out.append(params)
    return out


def design_study(
    method: str,
    space: ParameterSpace,
    n: int,
    seed: int | None,
    sets: list[dict[str, Value]],
    replicates: int,
    scenario: str,
    model: str | None,
    extra: dict[str, Any] | None = None,
) -> SimulationStudy:
    """The study of ``sets``; its metadata records the design (plus ``extra``, if given)."""
    path = model or space.model
    if path is None:
        raise ContractViolationError(
            "model: give the model's import path (the space does not come from a Model class)",
            field="model",
        )
    metadata: dict[str, Any] = {
        "sampler": method,
        "n": n,
        "seed": seed,
        "n_sets": len(sets),
        "space": space.to_dict(),
        **(extra or {}),
    }
    return SimulationStudy(
        model=path,
        scenario=scenario,
        parameter_sets=sets,
        sampling_method=method,
        n_replicates=replicates,
        metadata=metadata,
    )


def as_space(space: SpaceLike) -> ParameterSpace:
    """The space a sampler varies: a ParameterSpace as is, or a Model class's parameters."""
    if isinstance(space, ParameterSpace):
        result = space
    elif isinstance(space, type) and issubclass(space, Model):
        result = ParameterSpace.from_model(space)
    else:
        raise ContractViolationError(
            f"space must be a ParameterSpace or a Model class, got {type(space).__name__}",
            field="space",
        )
    if not result.parameters:
        raise ContractViolationError("space: no free parameters to sample", field="space")
    return result


def check_n(n: int) -> None:
    """Refuse a sample size that is not a positive int."""
    if type(n) is not int or n < 1:
        raise ContractViolationError(f"n must be a positive integer, got {n!r}", field="n", value=n)


def pick_seed(seed: int | None) -> int:
    """``seed`` checked, or a fresh random one (recorded in the study) when None."""
    if seed is None:
        return secrets.randbits(32)
    if type(seed) is not int or seed < 0:
        raise ContractViolationError(
            f"seed must be a non-negative integer, got {seed!r}", field="seed", value=seed
        )
    return seed
