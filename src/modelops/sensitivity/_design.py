"""Sensitivity designs as ordinary studies: Saltelli's scheme (Sobol' indices) and Morris
trajectories (elementary effects).

SALib draws the design in the unit cube; the space maps it onto the parameters' ranges (log
scale and ints included), so indices are those of the inputs as a modeller samples them. The
study's metadata keeps the design under ``"design"``: its method and size, the parameters in
SALib's order, and ``rows``, the param_id of every design row in SALib's layout: row k belongs
to base sample k // step, in the role ``roles[k % step]`` (``A``, ``AB:<param>`` ... ``B``; A with
that parameter's column from B, and ``BA:<param>`` for second order). Analysis rebuilds SALib's
output vector from ``rows``, so it never depends on the order, caching or
merging of tasks. A Morris design also keeps its ``unit`` matrix, which SALib's analysis reads
to find each step's parameter and size.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from modelops.sampling._samplers import (
    MAX_SETS,
    SpaceLike,
    as_space,
    design_study,
    pick_seed,
    warn_not_power_of_two,
)
from modelops_contracts.entrypoint import DEFAULT_SCENARIO
from modelops_contracts.errors import ContractViolationError
from modelops_contracts.params import make_param_id

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    from numpy.typing import NDArray

    from modelops.sampling import ParameterSpace
    from modelops_contracts import SimJob, SimulationStudy

__all__ = [
    "DESIGN_METHODS",
    "Design",
    "RepeatedDesignWarning",
    "morris",
    "read_design",
    "saltelli",
]

DESIGN_METHODS = ("saltelli", "morris")
"""The samplers whose studies `mops sensitivity` analyses."""

DESIGN_VERSION = 1
_MIN_N = 4  # the convergence check analyses the first N/4 base samples
_MIN_TRAJECTORIES = 4


def saltelli(
    space: SpaceLike,
    n: int,
    *,
    second_order: bool = False,
    seed: int | None = None,
    replicates: int = 1,
    scenario: str = DEFAULT_SCENARIO,
    model: str | None = None,
) -> SimulationStudy:
    """Saltelli's design for first-order and total Sobol' indices over ``n`` base samples.

    It has ``n * (D + 2)`` rows for D free parameters, ``n * (2D + 2)`` with ``second_order``
    (which adds the pairwise indices S2). Rows that land on the same parameter set (ints can
    do that) share one set, and so its tasks.

    Warns:
        SobolSampleSizeWarning: ``n`` is not a power of two (the estimates lose the balance
            of the Sobol' sequence); the message names the nearest powers.

    Raises:
        ContractViolationError: for a bad argument or a design of more than MAX_SETS rows.
    """
    from SALib.sample import sobol as salib_sobol

    space = as_space(space)
    _check_size("n", n, _MIN_N)
    d = len(space.parameters)
    rows = n * (2 * d + 2 if second_order else d + 2)
    _check_rows(rows, f"n={n} over {d} parameters")
    seed = pick_seed(seed)
    if n & (n - 1):
        warn_not_power_of_two("saltelli: N", n, stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy's own power-of-two warning
        unit = salib_sobol.sample(
            _unit_problem(space.names), n, calc_second_order=second_order, scramble=True, seed=seed
        )
    roles = ["A", *(f"AB:{p}" for p in space.names)]
    roles += [f"BA:{p}" for p in space.names] if second_order else []
    design = {"method": "saltelli", "n": n, "second_order": second_order, "roles": [*roles, "B"]}
    return _design_study("saltelli", space, n, seed, unit, design, replicates, scenario, model)


def morris(
    space: SpaceLike,
    trajectories: int,
    *,
    levels: int = 4,
    seed: int | None = None,
    replicates: int = 1,
    scenario: str = DEFAULT_SCENARIO,
    model: str | None = None,
) -> SimulationStudy:
    """Morris's elementary-effects design: ``trajectories`` one-at-a-time paths on a grid of
    ``levels`` values per parameter, ``trajectories * (D + 1)`` rows.

    Raises:
        ContractViolationError: for a bad argument or a design of more than MAX_SETS rows.
    """
    from SALib.sample import morris as salib_morris

    space = as_space(space)
    _check_size("trajectories", trajectories, _MIN_TRAJECTORIES)
    if type(levels) is not int or levels < 2 or levels % 2:
        raise ContractViolationError(
            f"levels must be an even integer of at least 2, got {levels!r}",
            field="levels",
            value=levels,
        )
    d = len(space.parameters)
    _check_rows(trajectories * (d + 1), f"{trajectories} trajectories over {d} parameters")
    seed = pick_seed(seed)
    unit = salib_morris.sample(
        _unit_problem(space.names), trajectories, num_levels=levels, seed=seed
    )
    design = {
        "method": "morris",
        "trajectories": trajectories,
        "levels": levels,
        "unit": [[float(v) for v in row] for row in unit],
    }
    study = _design_study(
        "morris", space, trajectories, seed, unit, design, replicates, scenario, model
    )
    effects = levels ** (d - 1) * (levels // 2)  # grid steps of Morris's size per parameter
    if trajectories > effects:
        warnings.warn(
            f"morris: {trajectories} trajectories, but {levels} levels over {d} parameters give "
            f"only {effects} distinct elementary effects per parameter; more trajectories add "
            "none (raise --levels)",
            RepeatedDesignWarning,
            stacklevel=2,
        )
    return study


class RepeatedDesignWarning(UserWarning):
    """A Morris design with more trajectories than its grid has distinct elementary effects."""


@dataclass(frozen=True)
class Design:
    """A job's sensitivity design, as its metadata records it.

    ``n`` is the base sample size (Saltelli) or the number of trajectories (Morris); ``rows``
    the param_id of each design row in SALib's layout; ``unit`` the Morris design matrix.
    """

    method: str
    n: int
    parameters: tuple[str, ...]
    rows: tuple[str, ...]
    seed: int
    second_order: bool = False
    levels: int = 4
    unit: tuple[tuple[float, ...], ...] = ()

    @property
    def step(self) -> int:
        """Rows per base sample (Saltelli) or per trajectory (Morris)."""
        d = len(self.parameters)
        if self.method == "morris":
            return d + 1
        return 2 * d + 2 if self.second_order else d + 2

    def problem(self) -> dict[str, Any]:
        """SALib's problem: the design's parameters over the unit interval."""
        return _unit_problem(self.parameters)

    @cached_property
    def row_codes(self) -> NDArray[np.int64]:
        """Each design row's parameter set as a small int: rows that share a set share it."""
        import numpy as np

        _, codes = np.unique(np.asarray(self.rows), return_inverse=True)
        return np.asarray(codes, dtype=np.int64)

    def by_row(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` (one row per ``param_id``) laid out by design row; null where missing."""
        import polars as pl

        rows = pl.DataFrame({"param_id": list(self.rows)})
        return rows.join(frame, on="param_id", how="left", maintain_order="left")

    def unit_matrix(self) -> NDArray[np.float64]:
        """The Morris design matrix (one row per design row)."""
        import numpy as np

        return np.asarray(self.unit, dtype=np.float64)


def read_design(job: SimJob) -> Design:
    """The sensitivity design recorded in ``job``'s metadata.

    Raises:
        ContractViolationError: the job was not made from a Saltelli or Morris design (the
            message names the commands that make one), or its design record is damaged.
    """
    design = job.metadata.get("design")
    if not isinstance(design, Mapping) or design.get("method") not in DESIGN_METHODS:
        raise ContractViolationError(
            f"job {job.job_id} was not run from a sensitivity design: make one with "
            "'mops sample saltelli|morris', then run it",
            field="design",
        )
    try:
        method = str(design["method"])
        parameters = tuple(str(p) for p in _listed(design["parameters"]))
        rows = tuple(str(r) for r in _listed(design["rows"]))
        size = int(design["n"] if method == "saltelli" else design["trajectories"])
        unit = tuple(
            tuple(float(v) for v in _listed(row)) for row in _listed(design.get("unit", []))
        )
        result = Design(
            method=method,
            n=size,
            parameters=parameters,
            rows=rows,
            seed=int(job.metadata.get("seed", 0)),
            second_order=bool(design.get("second_order", False)),
            levels=int(design.get("levels", 4)),
            unit=unit,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ContractViolationError(
            f"job {job.job_id}: its sensitivity design record is damaged ({err})", field="design"
        ) from None
    expected = result.n * result.step
    problem = None
    if len(rows) != expected:
        problem = f"{len(rows)} rows, expected {expected}"
    elif method == "morris" and len(unit) != len(rows):
        problem = f"{len(unit)} unit rows for {len(rows)} design rows"
    elif not set(rows) <= job.parameter_sets().keys():
        problem = "rows naming parameter sets the job does not have"
    if problem is not None:
        raise ContractViolationError(
            f"job {job.job_id}: its sensitivity design is damaged ({problem})", field="design"
        )
    return result


def _listed(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _design_study(
    sampler: str,
    space: ParameterSpace,
    n: int,
    seed: int,
    unit: NDArray[np.float64],
    design: dict[str, Any],
    replicates: int,
    scenario: str,
    model: str | None,
) -> SimulationStudy:
    """The study of a unit-cube design: one set per distinct row, every row's param_id kept."""
    rows = space.scale(unit)
    ids = [make_param_id(params) for params in rows]
    sets, seen = [], set()
    for pid, params in zip(ids, rows, strict=True):
        if pid not in seen:
            seen.add(pid)
            sets.append(params)
    record = {"version": DESIGN_VERSION, **design, "parameters": list(space.names), "rows": ids}
    return design_study(
        sampler, space, n, seed, sets, replicates, scenario, model, extra={"design": record}
    )


def _unit_problem(parameters: tuple[str, ...]) -> dict[str, Any]:
    names = list(parameters)
    return {"num_vars": len(names), "names": names, "bounds": [[0.0, 1.0]] * len(names)}


def _check_size(name: str, value: int, least: int) -> None:
    if type(value) is not int or value < least:
        raise ContractViolationError(
            f"{name} must be an integer of at least {least}, got {value!r}",
            field=name,
            value=value,
        )


def _check_rows(rows: int, what: str) -> None:
    if rows > MAX_SETS:
        raise ContractViolationError(
            f"a design of {what} has {rows} rows (more than {MAX_SETS}); lower it or fix "
            "parameters",
            field="n",
            value=rows,
        )
