"""Analyses kept beside their job, so that ``mops report`` can show them.

``mops sensitivity`` saves each analysis it computes as two files in the job's
``sensitivity/`` directory, named by :func:`analysis_name`: ``<name>.json`` (what was asked and
the ``--json`` answer) and ``<name>.png`` (its picture). Computing the same analysis again
replaces both; each file is replaced atomically, so a reader sees an old or a new file whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelops._output import write_output
from modelops.sensitivity._plots import _METHODS, _noise_percent, plot_sensitivity
from modelops.sensitivity._result import summarise_warnings
from modelops.store._fs import TEMP_PREFIX, atomic_write_bytes

if TYPE_CHECKING:
    from pathlib import Path

    from modelops.sensitivity._result import SensitivityResult
    from modelops.store import ResultStore

__all__ = ["SavedAnalysis", "analysis_name", "save_analysis", "saved_analyses"]

SENSITIVITY_DIR = "sensitivity"
"""The directory under a job's directory that holds its saved analyses."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class SavedAnalysis:
    """One saved analysis: its name, the saved JSON object, and its picture (if present)."""

    name: str
    meta: Mapping[str, Any]
    png: Path | None

    @property
    def groups(self) -> list[Mapping[str, Any]]:
        """The ``--json`` object of each group (one without ``by``)."""
        result = self.meta.get("result")
        items = result if isinstance(result, list) else [result]
        return [item for item in items if isinstance(item, Mapping)]

    @property
    def warnings(self) -> list[str]:
        """The groups' warnings, one line per kind, as ``SensitivityResult.warnings`` words them."""
        by = self._by()
        return summarise_warnings(
            [
                ({c: group.get(c) for c in by}, [str(w) for w in _listed(group.get("warnings"))])
                for group in self.groups
            ]
        )

    def caption(self) -> str:
        """One line: method, value and output, ``by``, size and noise fraction."""
        method = str(self.meta.get("method"))
        output = self.meta.get("output")
        value = self.meta.get("value")
        subject = f"{value}" if output is None else f"{value} ({output})"
        by = self._by()
        if by:
            subject += f" by {', '.join(by)}"
        n = self.meta.get("n")
        size = f"N={n}" if method == "sobol" else f"{n} trajectories"
        parts = [f"{_METHODS.get(method, method)} of {subject}", size]
        noise = _noise_percent([g.get("noise_fraction") for g in self.groups])
        if noise:
            parts.append(f"noise fraction {noise}")
        return ", ".join(parts)

    def _by(self) -> list[str]:
        return [str(column) for column in _listed(self.meta.get("by"))]


def analysis_name(result: SensitivityResult) -> str:
    """The files' name: ``<method>-<output or loss>-<value>[-by-<col>-...]``, made path-safe.

    Characters outside ``[A-Za-z0-9_.-]`` become ``_``.
    """
    name = f"{result.method}-{result.output or 'loss'}-{result.value}"
    if result.by:
        name += f"-by-{'-'.join(result.by)}"
    return _UNSAFE.sub("_", name)


def save_analysis(result: SensitivityResult, store: ResultStore) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.png`` in the job's ``sensitivity/`` directory.

    Returns the two paths (JSON, PNG).

    Raises:
        ContractViolationError: the result cannot be drawn (see
            :func:`~modelops.sensitivity._plots.draw_sensitivity`).
        ModelOpsError: a file cannot be written.
    """
    directory = store.job_dir(result.job_id) / SENSITIVITY_DIR
    name = analysis_name(result)
    meta = {
        "job_id": result.job_id,
        "method": result.method,
        "output": result.output,
        "value": result.value,
        "by": list(result.by),
        "n": result.n,
        "result": result.to_json(),
    }
    data = (json.dumps(meta, sort_keys=True, indent=2) + "\n").encode("utf-8")
    png = plot_sensitivity(result, directory / f"{name}.png")
    saved = write_output(directory / f"{name}.json", lambda dest: atomic_write_bytes(dest, data))
    return saved, png


def saved_analyses(store: ResultStore, job_id: str) -> list[SavedAnalysis]:
    """The job's saved analyses, sorted by name.

    A JSON file that cannot be read or is not a JSON object is skipped, so that one damaged
    file never stops a report.
    """
    directory = store.job_dir(job_id) / SENSITIVITY_DIR
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith((TEMP_PREFIX, ".")):
            continue
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if not isinstance(meta, dict):
            continue
        png = path.with_suffix(".png")
        found.append(SavedAnalysis(path.stem, meta, png if png.is_file() else None))
    return found


def _listed(value: Any) -> list[Any]:
    """``value`` if it is a list, else nothing (a hand-edited file may hold anything)."""
    return value if isinstance(value, list) else []
