"""Rewrite old job and study documents in the current format (``mops migrate``)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from modelops_contracts._loading import read_document
from modelops_contracts.errors import ContractViolationError
from modelops_contracts.job import SimJob
from modelops_contracts.study import SimulationStudy

__all__ = ["migrate_document", "migrate_file"]


def migrate_document(data: Any) -> tuple[Literal["job", "study"], dict[str, Any], bool]:
    """Rewrite a job or study document in the current format.

    Returns ``(kind, new_document, was_legacy)``; the DeprecationWarnings that loading an old
    document emits are recorded into ``was_legacy`` instead of being let out.

    Raises:
        ContractViolationError: the document is neither a job nor a study, or is invalid.
    """
    if isinstance(data, Mapping) and ("batches" in data or "tasks" in data or "groups" in data):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", DeprecationWarning)
            job = SimJob.from_dict(data)
        return "job", job.to_dict(), _any_deprecation(seen)
    if isinstance(data, Mapping) and "parameter_sets" in data:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", DeprecationWarning)
            study = SimulationStudy.from_dict(dict(data))
        return "study", study.to_dict(), _any_deprecation(seen)
    raise ContractViolationError(
        "not a ModelOps job (no 'tasks' or 'batches') or study (no 'parameter_sets') document",
        field="document",
        value=None,
    )


def _any_deprecation(seen: list[warnings.WarningMessage]) -> bool:
    return any(issubclass(w.category, DeprecationWarning) for w in seen)


def migrate_file(path: str | Path) -> tuple[Literal["job", "study"], dict[str, Any], bool]:
    """Read a job or study file (within the parsing limits) and rewrite it as
    :func:`migrate_document` does.

    Raises:
        ContractViolationError: the file cannot be read or parsed (duplicate keys included), or
            its document is neither a valid job nor a valid study.
    """
    return migrate_document(read_document(path, what="job or study file"))
