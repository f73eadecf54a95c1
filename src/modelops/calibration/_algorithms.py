"""Calibration search algorithms behind one ask/tell interface.

The calibration loop drives an :class:`Algorithm` in rounds: ``points = algo.ask(n)``, evaluate
every point (replicates through the engine), then ``algo.tell(points, losses)`` with the same points
in the same order. Resume replays that conversation: a fresh algorithm built with the same
arguments and told the journaled losses asks the same points again. So every algorithm here is a
pure function of (space, seed, settings, the sizes asked, the losses told): it owns its random
generator, never reads the clock, and never iterates over anything whose order could vary.

- ``tpe`` and ``cmaes``: Optuna's ``TPESampler`` and ``CmaEsSampler`` (the ``cmaes`` package
  underneath) on an in-memory study, through ``study.ask`` / ``study.tell``.
- ``random`` and ``sobol``: space-filling baselines (numpy's PCG64, scipy's scrambled Sobol),
  mapped onto the space exactly as ``mops sample random|sobol`` maps them.
- ``abc-smc``: approximate Bayesian computation by sequential Monte Carlo, written here
  (see :class:`AbcSmc` for why).

Points hold the free parameters only, each as its kind (``int`` or ``float``); fixed values are the
loop's business. A failed point is told as ``None``; ``None`` and non-finite losses never count as
good ones (Optuna marks the trial failed, ABC rejects the particle).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelops.model import Parameter
from modelops.sampling._space import ParameterSpace, _scale_column
from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    import optuna
    from numpy.typing import NDArray

__all__ = [
    "ALGORITHMS",
    "AbcSmc",
    "Algorithm",
    "CmaEsSearch",
    "Point",
    "Population",
    "RandomSearch",
    "SobolSearch",
    "TpeSearch",
    "make_algorithm",
]

Point = dict[str, int | float]
"""Values of the free parameters, by name, each coerced to its parameter's kind."""

_MAX_SEED = 2**32 - 1  # Optuna's samplers seed numpy's RandomState, which takes uint32


class Algorithm(ABC):
    """A search over a :class:`ParameterSpace`, asked for points and told their losses.

    Contract: ``ask(n)`` returns exactly ``n`` points inside the bounds; the next call must be
    ``tell`` with those points (extra keys such as fixed values are ignored) and one loss each,
    smaller is better, ``None`` for a point that failed. Given the same constructor arguments and
    the same sequence of asks and tells, an algorithm returns the same points, bit for bit.

    Raises:
        ContractViolationError: for a space with no free parameter, a bad seed, budget or batch,
            an unknown setting or a bad setting value.
    """

    name: ClassVar[str]
    _SETTINGS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, space: ParameterSpace, *, seed: int, budget: int, batch: int, **settings: Any
    ) -> None:
        if not isinstance(space, ParameterSpace):
            raise ContractViolationError(
                f"{self.name}: space must be a ParameterSpace, got {type(space).__name__}",
                field="space",
            )
        if not space.parameters:
            raise ContractViolationError(
                f"{self.name}: the space has no free parameter to search (all are fixed)",
                field="space",
            )
        _check_integer("seed", seed, 0, _MAX_SEED)
        _check_integer("budget", budget, 1)
        _check_integer("batch", batch, 1)
        unknown = sorted(set(settings) - set(self._SETTINGS))
        if unknown:
            known = ", ".join(self._SETTINGS) or "none"
            raise ContractViolationError(
                f"unknown setting {unknown[0]!r} for algorithm {self.name!r}: use one of {known}",
                field=unknown[0],
            )
        self.space = space
        self.seed = seed
        self.budget = budget
        self.batch = batch
        self._pending: list[Point] | None = None
        self._settings = self._configure(_SettingsReader(self.name, settings))

    # -- what each algorithm implements ---------------------------------------------------------

    @abstractmethod
    def _configure(self, given: _SettingsReader) -> dict[str, Any]:
        """Read the settings (defaults filled in) and set up; return them for :meth:`settings`."""

    @abstractmethod
    def _ask(self, n: int) -> list[Point]:
        """``n`` new points."""

    @abstractmethod
    def _tell(self, points: list[Point], losses: list[float | None]) -> None:
        """The losses of the points last asked (``None``: failed or not finite)."""

    # -- the interface --------------------------------------------------------------------------

    def ask(self, n: int) -> list[Point]:
        """Exactly ``n`` new points (``n >= 1``), to be told before the next ask.

        Raises:
            ContractViolationError: for a bad ``n`` or if the previous points were not told.
        """
        _check_integer("n", n, 1)
        if self._pending is not None:
            raise ContractViolationError(
                f"{self.name}: ask before the {len(self._pending)} points of the last ask were told"
            )
        points = self._ask(n)
        self._pending = [dict(p) for p in points]
        return [dict(p) for p in points]

    def tell(self, points: Sequence[Mapping[str, object]], losses: Sequence[float | None]) -> None:
        """Report the loss of each point of the last ask, in ask order.

        Raises:
            ContractViolationError: if nothing was asked, the points are not those asked, or a
                loss is neither a number nor ``None``.
        """
        pending = self._pending
        if pending is None:
            raise ContractViolationError(f"{self.name}: tell without an ask")
        if len(points) != len(pending) or len(losses) != len(pending):
            raise ContractViolationError(
                f"{self.name}: tell got {len(points)} points and {len(losses)} losses for the "
                f"{len(pending)} points asked"
            )
        for i, (given, asked) in enumerate(zip(points, pending, strict=True)):
            if any(name not in given or given[name] != v for name, v in asked.items()):
                raise ContractViolationError(
                    f"{self.name}: told point {i} {dict(given)!r} is not the point asked {asked!r}"
                )
        clean = [_clean_loss(i, loss) for i, loss in enumerate(losses)]
        self._pending = None
        self._tell(pending, clean)

    def settings(self) -> dict[str, Any]:
        """Every setting that changes the results, defaults filled in (JSON-compatible)."""
        return dict(self._settings)

    def finished(self) -> bool:
        """True once the algorithm has nothing more to ask (the loop stops, budget or not)."""
        return False

    def _points(self, unit: NDArray[np.float64]) -> list[Point]:
        """Unit-cube rows onto the free parameters, as :meth:`ParameterSpace.scale` maps them."""
        columns = [_scale_column(p, unit[:, j]) for j, p in enumerate(self.space.parameters)]
        return [dict(zip(self.space.names, row, strict=True)) for row in zip(*columns, strict=True)]


# -- Optuna: TPE and CMA-ES ----------------------------------------------------------------------


class _OptunaSearch(Algorithm):
    """An Optuna sampler on an in-memory study; a failed or non-finite loss fails the trial.

    Optuna's INFO logging (one line per study and trial) and its experimental-feature warnings are
    silenced only while this class calls Optuna; the user's Optuna log level is restored after.
    """

    def __init__(
        self, space: ParameterSpace, *, seed: int, budget: int, batch: int, **settings: Any
    ) -> None:
        super().__init__(space, seed=seed, budget=budget, batch=batch, **settings)
        import optuna

        with _quiet_optuna():
            self._study = optuna.create_study(direction="minimize", sampler=self._sampler())
        self._distributions = {p.name: _distribution(p) for p in self.space.parameters}
        self._trials: list[optuna.Trial] = []

    @abstractmethod
    def _sampler(self) -> optuna.samplers.BaseSampler:
        """The sampler, built from the settings and the seed."""

    def _ask(self, n: int) -> list[Point]:
        with _quiet_optuna():
            self._trials = [self._study.ask(self._distributions) for _ in range(n)]
        return [
            {p.name: _clip(p, t.params[p.name]) for p in self.space.parameters}
            for t in self._trials
        ]

    def _tell(self, points: list[Point], losses: list[float | None]) -> None:
        from optuna.trial import TrialState

        with _quiet_optuna():
            for trial, loss in zip(self._trials, losses, strict=True):
                if loss is None:
                    self._study.tell(trial, state=TrialState.FAIL)
                else:
                    self._study.tell(trial, loss)
        self._trials = []


class TpeSearch(_OptunaSearch):
    """Tree-structured Parzen estimator (Optuna's ``TPESampler``).

    Settings: ``n_startup_trials`` (random trials before TPE; default ``max(10, batch)``, so at
    least the first round is random), ``multivariate`` (one joint density over all parameters,
    default true), ``constant_liar`` (points asked in the same round but not yet told count as
    bad, which spreads a batch; default true), ``n_ei_candidates`` (candidates scored per point,
    default 24). Failed trials do not count towards ``n_startup_trials``.
    """

    name = "tpe"
    _SETTINGS = ("n_startup_trials", "multivariate", "constant_liar", "n_ei_candidates")

    def _configure(self, given: _SettingsReader) -> dict[str, Any]:
        return {
            "n_startup_trials": given.integer("n_startup_trials", max(10, self.batch), minimum=0),
            "multivariate": given.flag("multivariate", True),
            "constant_liar": given.flag("constant_liar", True),
            "n_ei_candidates": given.integer("n_ei_candidates", 24, minimum=1),
        }

    def _sampler(self) -> optuna.samplers.BaseSampler:
        from optuna.samplers import TPESampler

        return TPESampler(seed=self.seed, **self._settings)


class CmaEsSearch(_OptunaSearch):
    """CMA-ES (Optuna's ``CmaEsSampler`` over the ``cmaes`` package).

    Optuna learns the search space from completed trials, so the first round is random; CMA-ES
    starts at the centre of the (normalised) box from the second round on. A generation needs
    ``popsize`` completed trials, and every point asked while one is incomplete joins it, so the
    default ``popsize`` is the smallest multiple of ``batch`` at least the usual
    ``4 + floor(3 ln d)``: one or more whole rounds per generation, no evaluation wasted.

    Settings: ``popsize`` (see above), ``sigma0`` (initial step as a fraction of each parameter's
    normalised range, default 1/6, Optuna's own default; Optuna deprecates passing it, so it is
    passed only when it differs), ``with_margin`` (CMA-ES with margin, which keeps linear int
    parameters from freezing on one value; default true when there is one). A single free
    parameter works (Optuna >= 4.5 runs CMA-ES in one dimension).
    """

    name = "cmaes"
    _SETTINGS = ("popsize", "sigma0", "with_margin")
    _DEFAULT_SIGMA0 = 1 / 6

    def _configure(self, given: _SettingsReader) -> dict[str, Any]:
        usual = 4 + math.floor(3 * math.log(len(self.space.parameters)))
        has_linear_int = any(p.kind == "int" and not p.log for p in self.space.parameters)
        return {
            "popsize": given.integer(
                "popsize", self.batch * math.ceil(usual / self.batch), minimum=2
            ),
            "sigma0": given.number("sigma0", self._DEFAULT_SIGMA0, above=0.0, at_most=1.0),
            "with_margin": given.flag("with_margin", has_linear_int),
        }

    def _sampler(self) -> optuna.samplers.BaseSampler:
        from optuna.samplers import CmaEsSampler

        sigma0 = self._settings["sigma0"]
        extra = {} if sigma0 == self._DEFAULT_SIGMA0 else {"sigma0": sigma0}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Optuna deprecates sigma0
            return CmaEsSampler(
                seed=self.seed,
                popsize=self._settings["popsize"],
                with_margin=self._settings["with_margin"],
                **extra,
            )


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _distribution(parameter: Parameter) -> optuna.distributions.BaseDistribution:
    from optuna.distributions import FloatDistribution, IntDistribution

    if parameter.kind == "int":
        return IntDistribution(int(parameter.lower), int(parameter.upper), log=parameter.log)
    return FloatDistribution(float(parameter.lower), float(parameter.upper), log=parameter.log)


def _clip(parameter: Parameter, value: Any) -> int | float:
    return parameter.coerce(min(max(value, parameter.lower), parameter.upper))


# -- space-filling baselines ---------------------------------------------------------------------


class RandomSearch(Algorithm):
    """Independent uniform draws (log-uniform on log scales), numpy's ``PCG64`` seeded once.

    The draws are one stream, so how it is cut into asks does not matter: the first ``n`` points
    are those of ``mops sample random`` with the same seed (before it drops repeats).
    """

    name = "random"

    def _configure(self, given: _SettingsReader) -> dict[str, Any]:
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        return {}

    def _ask(self, n: int) -> list[Point]:
        return self._points(self._rng.random((n, len(self.space.parameters))))

    def _tell(self, points: list[Point], losses: list[float | None]) -> None:
        return None


class SobolSearch(Algorithm):
    """A scrambled Sobol sequence, continued by every ask (scipy's ``qmc.Sobol``).

    Asks of powers of two keep the sequence's balance; other sizes are allowed and do not warn.
    The first ``n`` points are those of ``mops sample sobol`` with the same seed.
    """

    name = "sobol"

    def _configure(self, given: _SettingsReader) -> dict[str, Any]:
        from scipy.stats import qmc

        self._engine = qmc.Sobol(
            len(self.space.parameters), scramble=True, rng=np.random.default_rng(self.seed)
        )
        return {}

    def _ask(self, n: int) -> list[Point]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The balance properties", UserWarning)
            unit = np.asarray(self._engine.random(n), dtype=np.float64)
        return self._points(unit)

    def _tell(self, points: list[Point], losses: list[float | None]) -> None:
        return None


# -- ABC-SMC -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    """One complete ABC-SMC population: weighted particles accepted within ``epsilon``.

    ``kernel_cov`` is the perturbation covariance that proposed this population, in search
    coordinates (see :class:`AbcSmc`); it is empty for population 0, drawn from the prior.
    """

    index: int
    points: tuple[Point, ...]
    weights: tuple[float, ...]
    distances: tuple[float, ...]
    epsilon: float
    kernel_cov: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class _Kernel:
    """The previous population as a proposal: weighted centres and a Gaussian perturbation.

    Everything here is in unit-cube coordinates.
    """

    centers: NDArray[np.float64]
    log_weights: NDArray[np.float64]
    cdf: NDArray[np.float64]
    cov: NDArray[np.float64]
    chol: NDArray[np.float64]


class AbcSmc(Algorithm):
    """ABC-SMC with an adaptive quantile tolerance and Beaumont et al. (2009)'s weighted kernel.

    Written here with numpy because no library fits the loop: pyabc, the usual choice, is heavy
    and owns its evaluation loop and database, which the engine and the store's journal replace,
    and it cannot be driven batch by batch through ask/tell and replayed.

    Search coordinates are the log of the value for log-scale parameters and the value itself
    otherwise; an int parameter has a continuous coordinate over ``[lower, upper + 1)`` (log of
    it for log scale) whose floor is its value, the same equal-width bins as
    :meth:`ParameterSpace.scale`. The prior is uniform in these coordinates, so it is constant on
    the box, int parameters included, and perturbations never get stuck on one integer. Each
    particle keeps its continuous coordinates; its point is what the space maps them to.

    Population 0 is prior draws with a finite distance (the told loss), epsilon infinite.
    Population ``t >= 1`` uses epsilon = the ``quantile`` of population ``t-1``'s distances
    (unweighted); when ties would hold it at epsilon ``t-1`` (discrete distances), it is the
    largest distance below that instead, and when there is none, every particle sits exactly
    at epsilon and the algorithm is :meth:`finished`. A proposal is a particle of ``t-1`` drawn
    by weight and moved by a normal kernel with twice the population's weighted covariance (plus
    a jitter of 1e-6 of each range, so a collapsed population still has a positive definite
    kernel); a proposal outside the bounds is drawn again, particle and move both, which leaves
    the weights below exact. Tells accept, in
    ask order, finite distances ``<= epsilon`` until ``population`` particles are held (later
    acceptances in the same tell are not used). A particle's weight is prior(θ) /
    Σ_j w_j K(θ | θ_j), normalised over the population.

    Settings: ``population`` (particles per population, default ``max(2, min(100, budget //
    4))``; the budget must hold two populations), ``quantile`` (in (0, 1), default 0.5),
    ``min_epsilon`` (also finished once a complete population's epsilon is at most this;
    default ``None``: no floor), ``max_populations`` (also finished after this many complete
    populations, population 0 included; default ``None``: no cap).
    """

    name = "abc-smc"
    _SETTINGS = ("population", "quantile", "min_epsilon", "max_populations")
    _MAX_REDRAWS = 100_000
    _JITTER = 1e-6  # standard deviation added to every unit coordinate of the kernel

    def _configure(self, given: _SettingsReader) -> dict[str, Any]:
        size = given.integer("population", max(2, min(100, self.budget // 4)), minimum=2)
        if self.budget < 2 * size:
            raise ContractViolationError(
                f"abc-smc: budget {self.budget} is below two populations of {size} "
                f"({2 * size}); raise the budget or lower the population setting",
                field="budget",
                value=self.budget,
            )
        settings = {
            "population": size,
            "quantile": given.number("quantile", 0.5, above=0.0, below=1.0),
            "min_epsilon": given.optional_number("min_epsilon"),
            "max_populations": given.optional_integer("max_populations", minimum=1),
        }
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self._populations: list[Population] = []
        self._asked: NDArray[np.float64] = np.empty((0, len(self.space.parameters)))
        # accepted particles of the population being built: point, unit coordinates, distance,
        # log weight (unnormalised)
        self._accepted: list[tuple[Point, NDArray[np.float64], float, float]] = []
        self._epsilon = math.inf
        self._kernel: _Kernel | None = None
        self._ranges = np.array([_coordinate_range(p) for p in self.space.parameters])
        return settings

    def populations(self) -> tuple[Population, ...]:
        """The complete populations, in order."""
        return tuple(self._populations)

    def posterior(self) -> Population | None:
        """The last complete population (the current posterior sample), if any."""
        return self._populations[-1] if self._populations else None

    def finished(self) -> bool:
        if not self._populations:
            return False
        last = self._populations[-1].epsilon
        if self._epsilon == last:  # every distance equals epsilon: it cannot shrink any more
            return True
        limit, floor = self._settings["max_populations"], self._settings["min_epsilon"]
        if limit is not None and len(self._populations) >= limit:
            return True
        return floor is not None and last <= floor

    def _ask(self, n: int) -> list[Point]:
        d = len(self.space.parameters)
        if self._kernel is None:
            units = self._rng.random((n, d))
        else:
            units = np.array([self._propose(self._kernel) for _ in range(n)]).reshape(n, d)
        self._asked = units
        return self._points(units)

    def _tell(self, points: list[Point], losses: list[float | None]) -> None:
        size = self._settings["population"]
        for point, unit, distance in zip(points, self._asked, losses, strict=True):
            if len(self._accepted) >= size:
                break
            if distance is not None and distance <= self._epsilon:
                self._accepted.append((point, unit, distance, self._log_weight(unit)))
        if len(self._accepted) >= size:
            self._complete()

    def _propose(self, kernel: _Kernel) -> NDArray[np.float64]:
        d = len(self.space.parameters)
        for _ in range(self._MAX_REDRAWS):
            u = float(self._rng.random()) * float(kernel.cdf[-1])
            j = min(int(np.searchsorted(kernel.cdf, u, side="right")), len(kernel.cdf) - 1)
            unit = kernel.centers[j] + kernel.chol @ self._rng.standard_normal(d)
            if bool(np.all((unit >= 0.0) & (unit <= 1.0))):
                return np.asarray(unit, dtype=np.float64)
        raise RuntimeError(
            f"abc-smc: no proposal fell inside the bounds in {self._MAX_REDRAWS} draws"
        )

    def _log_weight(self, unit: NDArray[np.float64]) -> float:
        """Log of prior / proposal density, up to a constant (the prior is constant)."""
        kernel = self._kernel
        if kernel is None:
            return 0.0  # drawn from the prior itself
        from scipy.linalg import solve_triangular

        scaled = solve_triangular(kernel.chol, (unit - kernel.centers).T, lower=True)
        terms = kernel.log_weights - 0.5 * np.einsum("ij,ij->j", scaled, scaled)
        top = float(terms.max())
        return -(top + math.log(float(np.exp(terms - top).sum())))

    def _complete(self) -> None:
        points, units, distances, log_weights = zip(*self._accepted, strict=True)
        raw = np.array(log_weights)
        weights = np.exp(raw - raw.max())
        weights /= weights.sum()
        used: list[list[float]] = []
        if self._kernel is not None:
            width = self._ranges[:, 1] - self._ranges[:, 0]
            used = (self._kernel.cov * np.outer(width, width)).tolist()
        self._populations.append(
            Population(
                index=len(self._populations),
                points=tuple(dict(p) for p in points),
                weights=tuple(float(w) for w in weights),
                distances=tuple(float(x) for x in distances),
                epsilon=self._epsilon,
                kernel_cov=tuple(tuple(float(c) for c in row) for row in used),
            )
        )
        self._epsilon = self._next_epsilon(np.array(distances))
        self._kernel = self._next_kernel(np.array(units), weights)
        self._accepted = []

    def _next_epsilon(self, distances: NDArray[np.float64]) -> float:
        """The quantile of the distances, or, if ties hold it at epsilon, the next one below."""
        quantile = float(np.quantile(distances, self._settings["quantile"]))
        if quantile < self._epsilon:
            return quantile
        below = distances[distances < self._epsilon]
        return float(below.max()) if below.size else self._epsilon

    def _next_kernel(self, centers: NDArray[np.float64], weights: NDArray[np.float64]) -> _Kernel:
        mean = np.einsum("i,ij->j", weights, centers)
        diff = centers - mean
        cov = 2.0 * np.einsum("i,ij,ik->jk", weights, diff, diff)
        jitter = np.full(len(mean), self._JITTER**2)
        while True:
            regular = cov + np.diag(jitter)
            try:
                chol = np.linalg.cholesky(regular)
                break
            except np.linalg.LinAlgError:
                jitter = jitter * 100.0
        return _Kernel(centers, np.log(weights), np.cumsum(weights), regular, chol)


def _coordinate_range(parameter: Parameter) -> tuple[float, float]:
    """A parameter's search-coordinate interval (an int's reaches ``upper + 1``, floored)."""
    low = float(parameter.lower)
    high = float(parameter.upper) + (1.0 if parameter.kind == "int" else 0.0)
    return (math.log(low), math.log(high)) if parameter.log else (low, high)


# -- registry ------------------------------------------------------------------------------------

ALGORITHMS: dict[str, type[Algorithm]] = {
    "tpe": TpeSearch,
    "cmaes": CmaEsSearch,
    "random": RandomSearch,
    "sobol": SobolSearch,
    "abc-smc": AbcSmc,
}
"""Algorithms by name, as ``mops calibrate --algorithm`` takes them."""


def make_algorithm(
    name: str, space: ParameterSpace, *, seed: int, budget: int, batch: int, **settings: Any
) -> Algorithm:
    """The algorithm called ``name`` over ``space``.

    Raises:
        ContractViolationError: for an unknown name, an unknown setting, a bad setting value, a
            bad seed, budget or batch, or a space with no free parameter.
    """
    cls = ALGORITHMS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ContractViolationError(
            f"unknown algorithm {name!r}: use one of {', '.join(ALGORITHMS)}",
            field="algorithm",
            value=name,
        )
    return cls(space, seed=seed, budget=budget, batch=batch, **settings)


# -- checks --------------------------------------------------------------------------------------


class _SettingsReader:
    """Reads one algorithm's settings, each checked, with its default when not given."""

    def __init__(self, algorithm: str, given: Mapping[str, Any]) -> None:
        self._algorithm = algorithm
        self._given = given

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        value = self._given.get(name, default)
        if type(value) is not int or value < minimum:
            raise self._bad(name, f"an integer >= {minimum}", value)
        return value

    def optional_integer(self, name: str, *, minimum: int) -> int | None:
        value = self._given.get(name)
        if value is None:
            return None
        if type(value) is not int or value < minimum:
            raise self._bad(name, f"an integer >= {minimum} or null", value)
        return value

    def number(
        self,
        name: str,
        default: float,
        *,
        above: float,
        below: float | None = None,
        at_most: float | None = None,
    ) -> float:
        value = self._given.get(name, default)
        upper = "" if below is None else f" and < {below}"
        upper += "" if at_most is None else f" and <= {at_most}"
        if not _is_real(value) or not math.isfinite(value):
            raise self._bad(name, f"a number > {above}{upper}", value)
        number = float(value)
        if not (
            number > above
            and (below is None or number < below)
            and (at_most is None or number <= at_most)
        ):
            raise self._bad(name, f"a number > {above}{upper}", value)
        return number

    def optional_number(self, name: str) -> float | None:
        value = self._given.get(name)
        if value is None:
            return None
        if not _is_real(value) or not math.isfinite(value):
            raise self._bad(name, "a finite number or null", value)
        return float(value)

    def flag(self, name: str, default: bool) -> bool:
        value = self._given.get(name, default)
        if type(value) is not bool:
            raise self._bad(name, "true or false", value)
        return value

    def _bad(self, name: str, must: str, value: object) -> ContractViolationError:
        return ContractViolationError(
            f"setting {name!r} of algorithm {self._algorithm!r} must be {must}, got {value!r}",
            field=name,
            value=value,
        )


def _is_real(value: object) -> bool:
    return type(value) is int or type(value) is float


def _check_integer(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    if type(value) is not int or value < minimum or (maximum is not None and value > maximum):
        allowed = f"an integer >= {minimum}" if maximum is None else f"{minimum}..{maximum}"
        raise ContractViolationError(
            f"{name} must be {allowed}, got {value!r}", field=name, value=value
        )


def _clean_loss(index: int, loss: object) -> float | None:
    if loss is None:
        return None
    if isinstance(loss, bool) or not isinstance(loss, (int, float, np.integer, np.floating)):
        raise ContractViolationError(
            f"tell: loss {index} must be a number or None, got {loss!r}", field="losses"
        )
    value = float(loss)
    return value if math.isfinite(value) else None
