"""What a sensitivity analysis answers: indices per parameter, per group, with their checks.

A :class:`SensitivityResult` holds one :class:`GroupIndices` per ``by`` group (one group, with
an empty key, without ``by``). :meth:`SensitivityResult.to_json` is the ``--json`` object and
:meth:`SensitivityResult.table` the polars frame :func:`modelops.sensitivity.analyze` returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

__all__ = ["INDEX_COLUMNS", "GroupIndices", "SensitivityResult"]

INDEX_COLUMNS: dict[str, tuple[str, ...]] = {
    "sobol": ("S1", "S1_conf", "ST", "ST_conf"),
    "morris": ("mu_star", "mu_star_conf", "sigma", "mu"),
}
"""The per-parameter figures of each method, in the order tables and JSON show them."""


@dataclass(frozen=True)
class GroupIndices:
    """The indices of one group of rows (one day, say, with ``by=["day"]``).

    ``indices[param]`` maps each name of :data:`INDEX_COLUMNS` (and, for a second-order Sobol
    design, ``"S2"`` and ``"S2_conf"`` to ``{other parameter: value}``) to its value.
    ``convergence[n][param]`` holds the main indices (``S1``/``ST`` or ``mu_star``) computed on
    the first ``n`` base samples (or trajectories) of the design. ``noise_fraction`` is
    E[Var(Y|theta)] / Var(Y), ``None`` when every parameter set has a single replicate.
    """

    key: Mapping[str, Any]
    indices: Mapping[str, Mapping[str, Any]]
    noise_fraction: float | None
    convergence: Mapping[int, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SensitivityResult:
    """The indices of ``value`` (a column of ``output``, or the total loss) over a design.

    ``n`` is the design's base sample size (Sobol) or number of trajectories (Morris).
    """

    job_id: str
    method: str
    output: str | None
    value: str
    by: tuple[str, ...]
    n: int
    parameters: tuple[str, ...]
    second_order: bool
    groups: tuple[GroupIndices, ...]

    @property
    def warnings(self) -> list[str]:
        """Every group's warnings, each prefixed with its group when there is a ``by``."""
        out = []
        for group in self.groups:
            prefix = ", ".join(f"{k}={v}" for k, v in group.key.items())
            out += [f"{prefix}: {w}" if prefix else w for w in group.warnings]
        return out

    def to_json(self) -> dict[str, Any] | list[dict[str, Any]]:
        """The ``--json`` form: one object, or with ``by`` one object per group in a list."""
        objects = [self._group_json(group) for group in self.groups]
        return objects if self.by else objects[0]

    def _group_json(self, group: GroupIndices) -> dict[str, Any]:
        head: dict[str, Any] = dict(group.key)
        head.update(
            {
                "method": self.method,
                "output": self.output,
                "value": self.value,
                "n": self.n,
                "noise_fraction": _clean(group.noise_fraction),
                "indices": {
                    name: {k: _clean(v) for k, v in figures.items()}
                    for name, figures in group.indices.items()
                },
                "convergence": {
                    str(n): {p: {k: _clean(v) for k, v in f.items()} for p, f in by_param.items()}
                    for n, by_param in group.convergence.items()
                },
                "warnings": list(group.warnings),
            }
        )
        return head

    def table(self) -> pl.DataFrame:
        """One row per group and parameter: ``by`` columns, ``parameter``, the method's
        figures, ``S2_<other>``/``S2_<other>_conf`` for a second-order design, and the group's
        ``noise_fraction``."""
        import polars as pl

        rows = []
        for group in self.groups:
            for name in self.parameters:
                figures = group.indices[name]
                row: dict[str, Any] = dict(group.key)
                row["parameter"] = name
                for column in INDEX_COLUMNS[self.method]:
                    row[column] = _clean(figures[column])
                if self.second_order:
                    for other in self.parameters:
                        if other != name:
                            row[f"S2_{other}"] = _clean(figures["S2"][other])
                            row[f"S2_{other}_conf"] = _clean(figures["S2_conf"][other])
                row["noise_fraction"] = _clean(group.noise_fraction)
                rows.append(row)
        return pl.DataFrame(rows, infer_schema_length=None)


def _clean(value: Any) -> Any:
    """Floats as plain Python floats, NaN and infinities as None (JSON has neither)."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
