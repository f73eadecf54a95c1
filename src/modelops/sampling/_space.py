"""ParameterSpace: the free parameters a sampler varies and the values it holds fixed.

A space comes from a :class:`~modelops.model.Model` class (its declared parameters) or from a
space file::

    beta: {lower: 0.05, upper: 1.0}
    gamma: {lower: 0.02, upper: 0.5, scale: log}
    population: {lower: 100, upper: 100000, kind: int, scale: log}
    fixed: {initial_infected: 10}

Samplers draw points in the unit cube; :meth:`ParameterSpace.scale` maps them onto the bounds
(uniformly in log space for ``scale: log``) and coerces each value to its parameter's kind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelops.model import Model, Parameter
from modelops_contracts._loading import read_document
from modelops_contracts.errors import ContractViolationError, ModelError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["ParameterSpace"]

_SPEC_KEYS = frozenset({"lower", "upper", "kind", "scale"})
_SCALES = ("linear", "log")
Value = int | float


@dataclass(frozen=True)
class ParameterSpace:
    """Free parameters (sampled) and fixed values (copied into every parameter set).

    ``model`` is the import path of the Model the space came from, if any; ``declared`` holds the
    model's parameter names, so :meth:`with_fixed` can reject unknown names (``None`` for a space
    file, whose ``fixed`` may name parameters outside the sampled ranges).

    Raises:
        ContractViolationError: if a free parameter is also fixed or declared twice.
    """

    parameters: tuple[Parameter, ...]
    fixed: Mapping[str, Value] = field(default_factory=dict)
    model: str | None = None
    declared: frozenset[str] | None = None

    def __post_init__(self) -> None:
        names = [p.name for p in self.parameters]
        for name in names:
            if names.count(name) > 1:
                raise ContractViolationError(
                    f"space: parameter {name!r} is declared twice", field=name
                )
            if name in self.fixed:
                raise ContractViolationError(
                    f"space: parameter {name!r} is both sampled and fixed", field=name
                )
        object.__setattr__(self, "parameters", tuple(self.parameters))
        object.__setattr__(self, "fixed", dict(self.fixed))

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def from_parameters(
        cls, parameters: Iterable[Parameter], *, model: str | None = None
    ) -> ParameterSpace:
        """A space over declared parameters; every name is known, so fixing others is an error."""
        params = tuple(parameters)
        return cls(params, {}, model, frozenset(p.name for p in params))

    @classmethod
    def from_model(cls, model: type[Model]) -> ParameterSpace:
        """The space of a Model class's declared parameters; ``model`` is its import path."""
        if not (isinstance(model, type) and issubclass(model, Model)):
            raise ContractViolationError(
                f"model must be a Model subclass, got {model!r}", field="model", value=model
            )
        path = f"{model.__module__}.{model.__qualname__}"
        return cls.from_parameters(model.parameter_space(), model=path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParameterSpace:
        """A space from a space file's content (see the module docstring).

        Raises:
            ContractViolationError: naming the parameter, for a malformed entry or bad bounds.
        """
        if not isinstance(data, Mapping):
            raise ContractViolationError(
                f"space must be a mapping of parameter name to range, got {type(data).__name__}",
                field="space",
            )
        fixed = data.get("fixed") or {}
        if not isinstance(fixed, Mapping):
            raise ContractViolationError("space: 'fixed' must be a mapping", field="fixed")
        parameters = tuple(_parse_spec(n, s) for n, s in data.items() if n != "fixed")
        return cls(parameters, {str(k): _fixed_value(str(k), v) for k, v in fixed.items()})

    @classmethod
    def from_file(cls, path: str | Path) -> ParameterSpace:
        """Read a YAML or JSON space file (``.json`` as JSON, anything else as YAML).

        Raises:
            ContractViolationError: the file cannot be read, breaks a parsing limit or repeats
                a key (see :mod:`modelops_contracts._loading`), or is not a valid space.
        """
        data = read_document(path, what="space file")
        return cls.from_dict(data)

    # -- derived spaces -------------------------------------------------------------------------

    def with_fixed(self, values: Mapping[str, object]) -> ParameterSpace:
        """A copy holding ``values`` fixed: sampled parameters named here stop being sampled.

        Raises:
            ContractViolationError: for a value its parameter rejects, or a name the model does
                not declare.
        """
        by_name = {p.name: p for p in self.parameters}
        fixed = dict(self.fixed)
        for name, value in values.items():
            if name in by_name:
                fixed[name] = by_name.pop(name).coerce(value)
            elif self.declared is not None and name not in self.declared:
                known = ", ".join(sorted(self.declared)) or "none"
                raise ContractViolationError(
                    f"fix: unknown parameter {name!r} (declared: {known})", field=name
                )
            else:
                fixed[name] = _fixed_value(name, value)
        return ParameterSpace(tuple(by_name.values()), fixed, self.model, self.declared)

    # -- use ------------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The sampled parameters' names, in order."""
        return tuple(p.name for p in self.parameters)

    def scale(self, unit: NDArray[np.float64]) -> list[dict[str, Value]]:
        """Map points of the unit cube (shape ``(n, d)``) onto the space; fixed values added."""
        columns = [_scale_column(p, unit[:, j]) for j, p in enumerate(self.parameters)]
        return [self.point(row) for row in zip(*columns, strict=True)] if columns else []

    def point(self, values: Sequence[object]) -> dict[str, Value]:
        """One parameter set: ``values`` (one per sampled parameter) coerced, then fixed values."""
        params = {p.name: p.coerce(v) for p, v in zip(self.parameters, values, strict=True)}
        params.update(self.fixed)
        return params

    def to_dict(self) -> dict[str, Any]:
        """The space in space-file form (``from_dict(s.to_dict())`` gives the same ranges)."""
        data: dict[str, Any] = {
            p.name: {
                "lower": p.lower,
                "upper": p.upper,
                "kind": p.kind,
                "scale": "log" if p.log else "linear",
            }
            for p in self.parameters
        }
        if self.fixed:
            data["fixed"] = dict(self.fixed)
        return data


def _scale_column(parameter: Parameter, u: NDArray[np.float64]) -> list[Value]:
    """Unit values onto one parameter's range; int parameters get equal-width integer bins."""
    integer = parameter.kind == "int"
    low, high = float(parameter.lower), float(parameter.upper) + (1.0 if integer else 0.0)
    if parameter.log:
        x = np.exp(np.log(low) + u * (np.log(high) - np.log(low)))
    else:
        x = low + u * (high - low)
    if integer:
        return [int(v) for v in np.clip(np.floor(x), parameter.lower, parameter.upper)]
    return [float(v) for v in np.clip(x, parameter.lower, parameter.upper)]


def _parse_spec(name: object, spec: object) -> Parameter:
    if not isinstance(name, str):
        raise ContractViolationError(f"space: parameter names must be strings, got {name!r}")
    if not isinstance(spec, Mapping) or not {"lower", "upper"} <= spec.keys():
        raise ContractViolationError(
            f"space: parameter {name!r} needs a mapping with 'lower' and 'upper'", field=name
        )
    extra = sorted(set(spec) - _SPEC_KEYS)
    if extra:
        raise ContractViolationError(
            f"space: parameter {name!r} has unknown key(s) {extra} "
            f"(allowed: {', '.join(sorted(_SPEC_KEYS))})",
            field=name,
        )
    scale = spec.get("scale", "linear")
    if scale not in _SCALES:
        raise ContractViolationError(
            f"space: parameter {name!r}: scale must be 'linear' or 'log', got {scale!r}",
            field=name,
        )
    try:
        return Parameter(
            name, spec["lower"], spec["upper"], kind=spec.get("kind", "float"), log=scale == "log"
        )
    except ModelError as err:
        raise ContractViolationError(f"space: {err}", field=name) from None


def _fixed_value(name: str, value: object) -> Value:
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return value
    raise ContractViolationError(
        f"fixed: parameter {name!r} must be a finite number, got {value!r}", field=name
    )
