"""Targets: observed data a model output is scored against, declared in a YAML or JSON file.

A targets file looks like::

    targets:
      - name: cases              # unique, names the loss column
        output: incidence        # model output
        data: observed.csv       # CSV or Parquet, relative to the targets file
        on: [day]                # join columns in both; [] for a one-row scalar target
        value: new_cases         # simulated column
        observed: cases          # observed column [default: value]
        loss: poisson_nll        # built-in name or module:function [default: mse_of_mean]
        weight: 1.0              # weight in the total [default: 1]
        trials: tested           # observed column of trials (binomial_nll only)
        dispersion: 10           # negative binomial size k, > 0 (negbin_nll only, required)
        sigma: 2.5               # Gaussian standard deviation, > 0 (gaussian_nll only, required)

The loss receives ``(observed, simulated)`` and, for the losses that take one, a third argument:
``trials`` for ``binomial_nll`` (and for a user loss of three or more parameters when ``trials``
is set), ``dispersion`` for ``negbin_nll``, ``sigma`` for ``gaussian_nll``
(:meth:`Target.loss_arguments` decides, for every caller).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.analysis._losses import BUILTIN_LOSSES, resolve_loss
from modelops_contracts import ContractViolationError, bounded_repr, restore_on_key
from modelops_contracts._loading import read_document

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

__all__ = ["Target", "load_targets", "observed_numbers", "targets_from_dicts"]

_FIELDS = {
    "name", "output", "data", "on", "value", "observed", "loss", "weight", "trials",
    "dispersion", "sigma",
}  # fmt: skip

_LOSS_PARAMETERS = {"dispersion": "negbin_nll", "sigma": "gaussian_nll"}
"""Each target field that is a loss's parameter, and the one loss it belongs to."""


_OBSERVED: dict[tuple[Any, int, int], pl.DataFrame] = {}
_OBSERVED_KEPT = 16  # observed frames kept (polars frames are immutable: sharing one is safe)


@dataclass(frozen=True)
class Target:
    """One model output compared with one observed data file through one loss."""

    name: str
    output: str
    data: Path
    on: tuple[str, ...]
    value: str
    observed: str
    loss: str = "mse_of_mean"
    weight: float = 1.0
    trials: str | None = field(default=None)
    dispersion: float | None = None
    sigma: float | None = None

    def __post_init__(self) -> None:
        where = f"target {bounded_repr(self.name)}"
        for name in _LOSS_PARAMETERS:
            value = _loss_parameter(self.loss, name, getattr(self, name), where)
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict that :func:`targets_from_dicts` reads back."""
        return {**asdict(self), "data": str(self.data), "on": list(self.on)}

    def read_observed(self) -> pl.DataFrame:
        """The observed data: the join columns, the observed column and trials, if any.

        A file read before, unchanged since (same size and modification time), is not read
        and checked again: a calibration scores against the same data every round.

        Raises:
            ContractViolationError: the file cannot be read, lacks a column, or repeats a key.
        """
        try:
            stat = self.data.stat()
        except OSError:
            stat = None
        key = (self, stat.st_size, stat.st_mtime_ns) if stat is not None else None
        if key is not None and key in _OBSERVED:
            return _OBSERVED[key]
        frame = self._read_observed()
        if key is not None:
            if len(_OBSERVED) >= _OBSERVED_KEPT:
                _OBSERVED.pop(next(iter(_OBSERVED)))
            _OBSERVED[key] = frame
        return frame

    def _read_observed(self) -> pl.DataFrame:
        import polars as pl

        try:
            if self.data.suffix.lower() in {".parquet", ".pq"}:
                frame = pl.read_parquet(self.data)
            else:
                frame = pl.read_csv(self.data)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise ContractViolationError(
                f"target {self.name!r}: cannot read {self.data}: {exc}"
            ) from exc
        wanted = [*self.on, self.observed, *([self.trials] if self.trials else [])]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ContractViolationError(
                f"target {self.name!r}: {self.data.name} has no column(s) {', '.join(missing)}"
            )
        frame = frame.select(wanted)
        if not self.on and frame.height != 1:
            raise ContractViolationError(
                f"target {self.name!r}: without 'on' columns the data must have one row"
            )
        if self.on and frame.select(self.on).is_duplicated().any():
            raise ContractViolationError(
                f"target {self.name!r}: {self.data.name} repeats a key of {list(self.on)}"
            )
        return frame

    def loss_arguments(self, observed: pl.DataFrame) -> tuple[Any, ...]:
        """What the loss takes after ``(observed, simulated)``, from :meth:`read_observed`'s frame.

        ``(trials,)`` for ``binomial_nll``, ``(dispersion,)`` for ``negbin_nll``, ``(sigma,)``
        for ``gaussian_nll``, nothing for the other built-ins; a user loss gets ``(trials,)``
        when the target names a trials column and the function has three or more parameters.
        Every caller (:func:`~modelops.analysis.score`, the calibration objective) calls the
        loss as ``fn(observed, simulated, *target.loss_arguments(frame))``.

        Raises:
            ContractViolationError: the trials column holds something that is not a number.
        """
        if self.loss == "negbin_nll":
            return (self.dispersion,)
        if self.loss == "gaussian_nll":
            return (self.sigma,)
        if self.trials is None:
            return ()
        if self.loss == "binomial_nll" or (
            self.loss not in BUILTIN_LOSSES and _positional_count(resolve_loss(self.loss)) >= 3
        ):
            return (observed_numbers(observed, self.trials, self),)
        return ()


def observed_numbers(observed: pl.DataFrame, column: str, target: Target) -> np.ndarray:
    """An observed column as floats; a value that is not a number is the user's error.

    Raises:
        ContractViolationError: the column holds something that is not a number.
    """
    import polars as pl

    try:
        return observed[column].cast(pl.Float64).to_numpy()
    except pl.exceptions.PolarsError:
        bad = (
            observed[column].cast(pl.Float64, strict=False).is_null()
            & observed[column].is_not_null()
        )
        example = observed[column].filter(bad).head(1).to_list()
        shown = f": {str(example[0])[:40]!r}" if example else ""
        raise ContractViolationError(
            f"target {target.name!r}: column {column!r} of {target.data.name} must hold "
            f"numbers, found {observed[column].dtype}{shown}"
        ) from None


def _positional_count(fn: Any) -> int:
    """How many parameters a user loss declares (as the scoring has always counted them)."""
    return len(inspect.signature(fn).parameters)


def targets_from_dicts(items: Sequence[Mapping[str, Any]], base: Path = Path()) -> list[Target]:
    """Targets from plain dicts (a file's ``targets:`` list); ``data`` is relative to ``base``.

    Raises:
        ContractViolationError: a field is missing, unknown or of the wrong type, a weight is
            negative or not finite, a name repeats, the loss cannot be resolved, or a
            ``dispersion``/``sigma`` is missing for its loss, given for another, or not > 0.
    """
    targets: list[Target] = []
    for index, item in enumerate(items):
        where = (
            f"target {bounded_repr(item.get('name', index))}" if isinstance(item, Mapping) else ""
        )
        if not isinstance(item, Mapping):
            raise ContractViolationError(
                f"target {index} must be a mapping, got {bounded_repr(item)}"
            )
        item = restore_on_key(item)  # YAML 1.1 reads a bare ``on:`` key as true
        unknown = sorted(set(item) - _FIELDS)
        if unknown:
            raise ContractViolationError(f"{where}: unknown field(s) {', '.join(unknown)}")
        missing = [k for k in ("name", "output", "data", "on", "value") if k not in item]
        if missing:
            raise ContractViolationError(f"{where}: missing field(s) {', '.join(missing)}")
        on = _on_columns(item["on"], where)
        loss = str(item.get("loss", "mse_of_mean"))
        resolve_loss(loss)
        if loss == "binomial_nll" and not item.get("trials"):
            raise ContractViolationError(f"{where}: binomial_nll needs a 'trials' column")
        weight = _weight(item.get("weight", 1.0), where)
        dispersion = _loss_parameter(loss, "dispersion", item.get("dispersion"), where)
        sigma = _loss_parameter(loss, "sigma", item.get("sigma"), where)
        data = Path(str(item["data"]))
        targets.append(
            Target(
                name=str(item["name"]),
                output=str(item["output"]),
                data=data if data.is_absolute() else base / data,
                on=on,
                value=str(item["value"]),
                observed=str(item.get("observed", item["value"])),
                loss=loss,
                weight=weight,
                trials=str(item["trials"]) if item.get("trials") else None,
                dispersion=dispersion,
                sigma=sigma,
            )
        )
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ContractViolationError(f"target names must be unique, got {names}")
    return targets


def _on_columns(value: Any, where: str) -> tuple[str, ...]:
    """A target's join columns: one name or a list of names."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ContractViolationError(
            f"{where}: 'on' must be a column name or a list of them, got {bounded_repr(value)}",
            field="on",
        )
    return tuple(value)


def _weight(value: Any, where: str) -> float:
    """A target's weight: a finite number >= 0 (a bool is not a number here)."""
    try:
        weight = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        weight = math.nan
    if not math.isfinite(weight) or weight < 0:
        raise ContractViolationError(
            f"{where}: weight must be a finite number >= 0, got {bounded_repr(value)}",
            field="weight",
        )
    return weight


def _loss_parameter(loss: str, name: str, value: Any, where: str) -> float | None:
    """A ``dispersion`` or ``sigma``: required by its loss, refused on any other, > 0 and finite.

    None (the field absent) is what every other loss has.
    """
    owner = _LOSS_PARAMETERS[name]
    if value is None:
        if loss == owner:
            raise ContractViolationError(
                f"{where}: {owner} needs '{name}', a finite number > 0", field=name
            )
        return None
    if loss != owner:
        raise ContractViolationError(
            f"{where}: '{name}' is only for loss {owner}, not {bounded_repr(loss)}", field=name
        )
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ContractViolationError(
            f"{where}: {name} must be a finite number > 0, got {bounded_repr(value)}", field=name
        )
    return number


def load_targets(path: Path | str) -> list[Target]:
    """Read the ``targets:`` list of a YAML or JSON file.

    Raises:
        ContractViolationError: the file is unreadable, has no ``targets:`` list, or a target
            is invalid (see :func:`targets_from_dicts`).
    """
    path = Path(path)
    doc = read_document(path, what="targets file")
    items = doc.get("targets") if isinstance(doc, Mapping) else None
    if not isinstance(items, list) or not items:
        raise ContractViolationError(f"{path} needs a non-empty 'targets:' list")
    return targets_from_dicts(items, base=path.parent)
