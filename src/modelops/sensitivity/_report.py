"""The sensitivity section of a design job's HTML report: the analyses kept beside it."""

from __future__ import annotations

import html
from contextlib import suppress
from typing import TYPE_CHECKING

from modelops.analysis._report import image_tag
from modelops.sensitivity._design import DESIGN_METHODS
from modelops.sensitivity._saved import saved_analyses
from modelops.store import read_job

if TYPE_CHECKING:
    from modelops.sensitivity._saved import SavedAnalysis
    from modelops.store import ResultStore

__all__ = ["report_section"]


def report_section(store: ResultStore, job_id: str) -> str:
    """The saved analyses of a design job as HTML (a hint when there is none yet); ``""`` for a
    job that was not run from a sensitivity design."""
    design = read_job(store, job_id).metadata.get("design")
    if not isinstance(design, dict) or design.get("method") not in DESIGN_METHODS:
        return ""
    saved = saved_analyses(store, job_id)
    if not saved:
        command = f"mops sensitivity {job_id} OUTPUT --value COLUMN"
        return (
            "<h2>Sensitivity</h2><p>No sensitivity analysis saved yet: run "
            f"<code>{html.escape(command)}</code> to add indices here.</p>"
        )
    return "<h2>Sensitivity</h2>" + "".join(_analysis(item) for item in saved)


def _analysis(saved: SavedAnalysis) -> str:
    """One saved analysis: its caption, its warnings and its picture."""
    parts = [f"<h3>{html.escape(saved.name)}</h3><p>{html.escape(saved.caption())}</p>"]
    warnings = saved.warnings
    if warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        parts.append(f"<ul class='bad'>{items}</ul>")
    if saved.png is not None:
        with suppress(OSError):  # removed or unreadable since it was listed: the caption stays
            parts.append(image_tag(saved.png, saved.name))
    return "".join(parts)
