"""Sensitivity analysis: which parameters drive an output, from a design job's own results.

::

    from modelops.sensitivity import analyze, saltelli

    study = saltelli(space, 1024, seed=1, replicates=4)  # run it like any study
    analyze(job_id, "summary", value="attack_rate")      # S1, ST with intervals, per parameter

A design (:func:`saltelli`, :func:`morris`) is an ordinary study whose metadata records each
row's param_id; :func:`analyze` and :func:`compute_indices` read the job's results only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelops_contracts._lazy import lazy_getattr

if TYPE_CHECKING:
    from modelops.sensitivity._analyze import METHODS, analyze, compute_indices
    from modelops.sensitivity._design import (
        DESIGN_METHODS,
        Design,
        RepeatedDesignWarning,
        morris,
        read_design,
        saltelli,
    )
    from modelops.sensitivity._report import report_section
    from modelops.sensitivity._result import INDEX_COLUMNS, GroupIndices, SensitivityResult

_EXPORTS = {
    "DESIGN_METHODS": "modelops.sensitivity._design",
    "Design": "modelops.sensitivity._design",
    "GroupIndices": "modelops.sensitivity._result",
    "INDEX_COLUMNS": "modelops.sensitivity._result",
    "METHODS": "modelops.sensitivity._analyze",
    "RepeatedDesignWarning": "modelops.sensitivity._design",
    "SensitivityResult": "modelops.sensitivity._result",
    "analyze": "modelops.sensitivity._analyze",
    "compute_indices": "modelops.sensitivity._analyze",
    "morris": "modelops.sensitivity._design",
    "read_design": "modelops.sensitivity._design",
    "report_section": "modelops.sensitivity._report",
    "saltelli": "modelops.sensitivity._design",
}

__all__ = [
    "DESIGN_METHODS",
    "INDEX_COLUMNS",
    "METHODS",
    "Design",
    "GroupIndices",
    "RepeatedDesignWarning",
    "SensitivityResult",
    "analyze",
    "compute_indices",
    "morris",
    "read_design",
    "report_section",
    "saltelli",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
