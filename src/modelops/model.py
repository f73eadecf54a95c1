"""How a modeller writes a model: declared parameters, named scenarios, one ``simulate`` method.

::

    class SIR(Model):
        parameters = (Parameter("beta", 0.05, 1.0), Parameter("gamma", 0.02, 0.5))
        scenarios = (Scenario("lockdown", config={"contact_reduction": 0.5}),)
        outputs = ("incidence", "summary")

        def simulate(self, params, seed):
            days = self.config.get("days", 100)
            ...
            return {"incidence": {...}, "summary": {...}}

``simulate(params, seed)`` receives checked, coerced parameters (every declared parameter present,
``int`` parameters as ``int``, ``float`` parameters as ``float``) with the scenario's patch applied,
and returns a mapping of output name to table (see :mod:`modelops.runtime.tables`). The run's
configuration (the job's ``config`` with the scenario's config patch on top) is ``self.config``, a
read-only mapping, and the scenario name is ``self.scenario``; both are set before every run.

A worker creates one instance per process and reuses it for every task, so ``__init__`` takes no
arguments and is the place for expensive one-off setup (reading data files next to the model).
The scenario ``baseline`` always exists and patches nothing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from modelops_contracts.entrypoint import DEFAULT_SCENARIO, validate_scenario
from modelops_contracts.errors import ContractViolationError, ModelError

__all__ = ["KEY_COLUMNS", "Model", "Parameter", "Scenario"]

KEY_COLUMNS: tuple[str, ...] = ("task_id", "param_id", "replicate", "seed")
"""Columns the runtime puts in front of every output table; no parameter or column may use them."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_MISSING = object()
# Sampling in log space may land a rounding error outside a bound; tolerate that much.
_BOUND_TOLERANCE = 1e-9


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Parameter:
    """A model parameter: a name, inclusive bounds, a kind, an optional default.

    Bounds describe the values the model accepts and the space samplers and calibrators search;
    ``log=True`` asks them to search it on a log scale. A parameter without a default must be given
    by every task.

    Raises:
        ModelError: if the name is not an identifier, ``lower >= upper``, ``log`` with
            ``lower <= 0``, non-integral bounds for an ``int`` parameter, or a default outside
            the bounds.
    """

    name: str
    lower: float
    upper: float
    kind: Literal["float", "int"] = "float"
    default: float | int | None = None
    log: bool = False
    _low: float = field(init=False, repr=False, compare=False)
    _high: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ModelError(f"parameter name must be a Python identifier, got {self.name!r}")
        if self.name in KEY_COLUMNS:
            raise ModelError(
                f"parameter {self.name!r} collides with a key column of the output tables",
                hint=f"rename it; reserved: {', '.join(KEY_COLUMNS)}",
            )
        if self.kind not in ("float", "int"):
            raise ModelError(f"parameter {self.name!r}: kind must be 'float' or 'int'")
        for bound in (self.lower, self.upper):
            if not _is_number(bound) or not math.isfinite(bound):
                raise ModelError(
                    f"parameter {self.name!r}: bounds must be finite numbers, got {bound!r}"
                )
        if not self.lower < self.upper:
            raise ModelError(
                f"parameter {self.name!r}: lower ({self.lower}) must be below upper ({self.upper})"
            )
        if self.log and self.lower <= 0:
            raise ModelError(
                f"parameter {self.name!r}: log scale needs lower > 0, got {self.lower}"
            )
        if self.kind == "int":
            if self.lower != int(self.lower) or self.upper != int(self.upper):
                raise ModelError(
                    f"parameter {self.name!r}: int bounds must be whole numbers, "
                    f"got [{self.lower}, {self.upper}]"
                )
            object.__setattr__(self, "lower", int(self.lower))
            object.__setattr__(self, "upper", int(self.upper))
        else:
            object.__setattr__(self, "lower", float(self.lower))
            object.__setattr__(self, "upper", float(self.upper))
        slack = _BOUND_TOLERANCE * max(1.0, abs(self.lower), abs(self.upper))
        object.__setattr__(self, "_low", self.lower - slack)
        object.__setattr__(self, "_high", self.upper + slack)
        if self.default is not None:
            try:
                object.__setattr__(self, "default", self.coerce(self.default))
            except ContractViolationError as err:
                raise ModelError(f"parameter {self.name!r}: bad default: {err}") from None

    def coerce(self, value: object) -> int | float:
        """Return ``value`` as this parameter's kind, checked against the bounds.

        Raises:
            ContractViolationError: if the value is not a number, not whole for an ``int``
                parameter, not finite, or outside the bounds.
        """
        number: Any = value
        if type(number) is not float and type(number) is not int:
            if not _is_number(number):
                raise self._reject(value, "must be a number, got " + type(value).__name__)
            number = int(number) if isinstance(number, numbers.Integral) else float(number)
        if type(number) is float and not math.isfinite(number):
            raise self._reject(value, "must be finite, got")
        if self.kind == "int":
            if type(number) is float:
                if not number.is_integer():
                    raise self._reject(value, "is an int parameter, got")
                number = int(number)
        elif type(number) is int:
            number = float(number) if abs(number) < 2**1023 else math.inf
        if not self._low <= number <= self._high:
            raise self._reject(value, f"is outside [{self.lower}, {self.upper}]:")
        result: int | float = number
        return result

    def _reject(self, value: object, problem: str) -> ContractViolationError:
        return ContractViolationError(
            f"parameter {self.name!r} {problem} {value!r}", field=self.name, value=value
        )


@dataclass(frozen=True)
class Scenario:
    """A named variant of a model: parameter values and config entries patched over a task's.

    ``params`` overrides the task's parameters (and must name declared parameters); ``config`` is
    laid over the job's config. The name is a lowercase slug, as in ``model.SIR/lockdown``.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            validate_scenario(self.name)
        except ContractViolationError as err:
            raise ModelError(f"bad scenario name: {err}") from None
        for label, patch in (("params", self.params), ("config", self.config)):
            if not isinstance(patch, Mapping) or not all(isinstance(k, str) for k in patch):
                raise ModelError(
                    f"scenario {self.name!r}: {label} must be a mapping with string keys"
                )
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "config", dict(self.config))


class Model:
    """Base class of user models; see the module docstring for a complete example.

    Subclasses set ``parameters`` (a sequence of :class:`Parameter`), optionally ``scenarios``
    (a sequence of :class:`Scenario`; ``baseline`` is implicit) and ``outputs`` (the names of the
    outputs ``simulate`` returns, if you want them checked), and implement ``simulate``. The
    declaration is checked when the class is created, so mistakes surface at import time.

    Raises:
        ModelError: at class creation, for a malformed declaration: duplicate parameter or
            scenario names, a scenario patching an undeclared parameter or with a value the
            parameter rejects, a ``baseline`` scenario that patches something, bad output names.
    """

    parameters: ClassVar[Sequence[Parameter]] = ()
    scenarios: ClassVar[Sequence[Scenario]] = ()
    outputs: ClassVar[Sequence[str] | None] = None

    _parameter_map: ClassVar[dict[str, Parameter]] = {}
    _scenario_map: ClassVar[dict[str, Scenario]] = {DEFAULT_SCENARIO: Scenario(DEFAULT_SCENARIO)}

    config: Mapping[str, Any] = _EMPTY
    """The current run's configuration (read-only); set before each ``simulate`` call."""
    scenario: str = DEFAULT_SCENARIO
    """The current run's scenario name; set before each ``simulate`` call."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        where = f"{cls.__module__}.{cls.__qualname__}"
        cls.parameters = tuple(cls.parameters)
        parameter_map: dict[str, Parameter] = {}
        for parameter in cls.parameters:
            if not isinstance(parameter, Parameter):
                raise ModelError(
                    f"{where}.parameters must hold Parameter objects, got {parameter!r}"
                )
            if parameter.name in parameter_map:
                raise ModelError(f"{where}: parameter {parameter.name!r} is declared twice")
            parameter_map[parameter.name] = parameter
        cls._parameter_map = parameter_map

        cls.scenarios = tuple(cls.scenarios)
        scenario_map: dict[str, Scenario] = {DEFAULT_SCENARIO: Scenario(DEFAULT_SCENARIO)}
        for scenario in cls.scenarios:
            if not isinstance(scenario, Scenario):
                raise ModelError(f"{where}.scenarios must hold Scenario objects, got {scenario!r}")
            if scenario.name == DEFAULT_SCENARIO:
                if scenario.params or scenario.config:
                    raise ModelError(
                        f"{where}: scenario {DEFAULT_SCENARIO!r} must not patch anything",
                        hint="put baseline values in Parameter defaults or the job config",
                    )
                continue
            if scenario.name in scenario_map:
                raise ModelError(f"{where}: scenario {scenario.name!r} is declared twice")
            scenario_map[scenario.name] = _checked_scenario(where, scenario, parameter_map)
        cls._scenario_map = scenario_map

        if cls.outputs is not None:
            if isinstance(cls.outputs, str):
                raise ModelError(f"{where}.outputs must be a sequence of names, not a string")
            outputs = tuple(cls.outputs)
            for name in outputs:
                if not isinstance(name, str) or not name:
                    raise ModelError(f"{where}.outputs must hold non-empty strings, got {name!r}")
            if len(set(outputs)) != len(outputs):
                raise ModelError(f"{where}.outputs lists a name twice: {list(outputs)}")
            cls.outputs = outputs

    def simulate(self, params: dict[str, Any], seed: int) -> Mapping[str, Any]:
        """Run the model once; return ``{output name: table}``. Override this."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement simulate()")

    @classmethod
    def parameter_space(cls) -> tuple[Parameter, ...]:
        """The declared parameters, in declaration order."""
        return tuple(cls.parameters)

    @classmethod
    def scenario_names(cls) -> tuple[str, ...]:
        """``baseline`` followed by the declared scenarios, in declaration order."""
        return tuple(cls._scenario_map)

    @classmethod
    def get_scenario(cls, name: str) -> Scenario:
        """The scenario called ``name`` (``baseline`` patches nothing).

        Raises:
            ModelError: if the model has no such scenario; the message lists the known ones.
        """
        try:
            return cls._scenario_map[name]
        except KeyError:
            raise ModelError(
                f"{cls.__qualname__} has no scenario {name!r}",
                hint=f"known scenarios: {', '.join(cls._scenario_map)}",
            ) from None

    @classmethod
    def prepare_params(
        cls, params: Mapping[str, Any], scenario: str = DEFAULT_SCENARIO
    ) -> dict[str, Any]:
        """Check and coerce a task's parameters and apply the scenario's patch.

        Missing parameters take their default; ``int`` parameters come back as ``int`` and
        ``float`` parameters as ``float``. A task's value for a patched parameter is still checked,
        then replaced by the patch.

        Raises:
            ModelError: for an unknown scenario, unknown parameter names, a missing parameter
                without default, or a value the parameter rejects.
        """
        patch = cls.get_scenario(scenario).params
        declared = cls._parameter_map
        prepared: dict[str, Any] = {}
        found = 0
        for name, parameter in declared.items():
            value = params.get(name, _MISSING)
            if value is not _MISSING:
                found += 1
                try:
                    prepared[name] = parameter.coerce(value)
                except ContractViolationError as err:
                    raise ModelError(f"{cls.__qualname__}: {err}") from None
            elif name in patch:
                continue
            elif parameter.default is None:
                raise ModelError(
                    f"{cls.__qualname__}: parameter {name!r} is missing and has no default"
                )
            else:
                prepared[name] = parameter.default
        if found != len(params):
            unknown = sorted(params.keys() - declared.keys())
            raise ModelError(
                f"{cls.__qualname__} has no parameter(s) {', '.join(map(repr, unknown))}",
                hint=f"declared: {', '.join(declared) or 'none'}",
            )
        if patch:
            prepared.update(patch)
        return prepared

    def run(
        self,
        params: Mapping[str, Any],
        seed: int,
        *,
        scenario: str = DEFAULT_SCENARIO,
        config: Mapping[str, Any] | None = None,
    ) -> Mapping[str, Any]:
        """Prepare parameters and config for ``scenario``, then call ``simulate`` (for notebooks).

        Raises:
            ModelError: as :meth:`prepare_params`.
        """
        prepared = self.prepare_params(params, scenario)
        patch = self.get_scenario(scenario).config
        self.config = MappingProxyType({**(config or {}), **patch})
        self.scenario = scenario
        return self.simulate(prepared, seed)


def _checked_scenario(where: str, scenario: Scenario, declared: dict[str, Parameter]) -> Scenario:
    unknown = sorted(set(scenario.params) - declared.keys())
    if unknown:
        raise ModelError(
            f"{where}: scenario {scenario.name!r} patches undeclared parameter(s) "
            f"{', '.join(map(repr, unknown))}",
            hint=f"declared: {', '.join(declared) or 'none'}",
        )
    coerced: dict[str, Any] = {}
    for name, value in scenario.params.items():
        try:
            coerced[name] = declared[name].coerce(value)
        except ContractViolationError as err:
            raise ModelError(f"{where}: scenario {scenario.name!r}: {err}") from None
    return Scenario(scenario.name, coerced, scenario.config)
