"""What a sensitivity analysis answers: indices per parameter, per group, with their checks.

A :class:`SensitivityResult` holds one :class:`GroupIndices` per ``by`` group (one group, with
an empty key, without ``by``). :meth:`SensitivityResult.to_json` is the ``--json`` object and
:meth:`SensitivityResult.table` the polars frame :func:`modelops.sensitivity.analyze` returns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

__all__ = ["INDEX_COLUMNS", "GroupIndices", "SensitivityResult", "summarise_warnings"]

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
        """The groups' warnings, one line per kind (see :func:`summarise_warnings`)."""
        return summarise_warnings([(group.key, group.warnings) for group in self.groups])

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


_NUMBER = re.compile(r"(?<![A-Za-z_])[-+±]?\d+(?:\.\d+)?%?")
_KIND_END = re.compile(r" \(|: ")
_LISTED_KEYS = 5


def summarise_warnings(groups: Sequence[tuple[Mapping[str, Any], Sequence[str]]]) -> list[str]:
    """One line per kind of warning (its text up to the first ``(`` or ``:``, numbers left
    out), naming the groups it holds for: ``day=34-99 (66 groups), e.g. day=34: wide ...``.
    Without ``by`` (one group, empty key) the warnings as they are."""
    kinds: dict[str, list[tuple[Mapping[str, Any], str]]] = {}
    for key, texts in groups:
        for text in texts:
            kind = _KIND_END.split(_NUMBER.sub("#", text), maxsplit=1)[0]
            kinds.setdefault(kind, []).append((key, text))
    lines = []
    for found in kinds.values():
        key, text = found[0]
        if not key:
            lines.append(text)
        elif len(found) == 1:
            lines.append(f"{_key_text(key)}: {text}")
        else:
            span = _keys_span([k for k, _ in found])
            lines.append(f"{span} ({len(found)} groups), e.g. {_key_text(key)}: {text}")
    return lines


def _key_text(key: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items())


def _keys_span(keys: list[Mapping[str, Any]]) -> str:
    """The groups, briefly: ranges of consecutive ints for one int column, else the first few."""
    columns = list(keys[0])
    values = [k.get(columns[0]) for k in keys]
    numbers = [v for v in values if type(v) is int]
    if len(columns) == 1 and len(numbers) == len(values):
        runs: list[list[int]] = []
        for v in sorted(numbers):
            if runs and v == runs[-1][1] + 1:
                runs[-1][1] = v
            else:
                runs.append([v, v])
        text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs[:_LISTED_KEYS])
        more = ", ..." if len(runs) > _LISTED_KEYS else ""
        return f"{columns[0]}={text}{more}"
    shown = "; ".join(_key_text(k) for k in keys[:_LISTED_KEYS])
    return shown + ("; ..." if len(keys) > _LISTED_KEYS else "")


def _clean(value: Any) -> Any:
    """Floats as plain Python floats, NaN and infinities as None (JSON has neither)."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
