"""One self-contained HTML page per job: summary, task counts, failures, loss table, plots.

Callers above this layer add their own ``sections`` (``mops report`` adds the sensitivity
analyses of a design job: :func:`modelops.sensitivity.report_section`). Plots are embedded as
base64 PNG data URIs, so the page opens in a browser with no server and no other files.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops._output import write_output
from modelops.analysis._plots import plot_loss, plot_output
from modelops.analysis._score import load_scored_targets, load_scores
from modelops.store import job_status, resolve_job

if TYPE_CHECKING:
    from modelops.store import JobLike, ResultStore

__all__ = ["image_tag", "write_report"]

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1100px}"
    "table{border-collapse:collapse;font-size:0.9em}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#eee}img{max-width:100%}.bad{color:#b00}"
)


def write_report(
    job: JobLike | str,
    path: Path | str | None = None,
    *,
    store: ResultStore | Path | str | None = None,
    rows: int = 20,
    sections: Sequence[str] = (),
) -> Path:
    """Write the job's HTML report (default ``<job dir>/report.html``) and return its path.

    The loss table and plots appear when the job has been scored (see :func:`score`);
    ``sections`` (HTML fragments) follow them.
    """
    result_store, job_id = resolve_job(job, store)
    status = job_status(result_store, job_id)
    scores = load_scores(result_store, job_id)
    parts = [f"<h1>Job {html.escape(job_id)}</h1>", _summary(status)]
    parts.append("<h2>Task counts</h2>" + _table([status["counts"]]))
    failures = result_store.ledger.failures(job_id)
    parts.append(f"<h2>Failures ({len(failures)})</h2>")
    if failures:
        parts.append(
            _table(
                [
                    {
                        "param": f.param_id[:12],
                        "replicate": f.replicate,
                        "status": f.status,
                        "error": f"{f.error_type}: {f.message}",
                    }
                    for f in failures[:rows]
                ]
            )
        )
    if scores is not None:
        shown = scores.drop("param_id").head(rows)
        parts.append(f"<h2>Loss table (best {shown.height} of {scores.height})</h2>")
        parts.append(_table(shown.to_dicts()))
    parts.append(_plots(result_store, job_id, scores is not None))
    parts.extend(sections)
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>ModelOps job {html.escape(job_id)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )
    dest = Path(path) if path is not None else result_store.job_dir(job_id) / "report.html"
    return write_output(dest, lambda target: target.write_text(page, encoding="utf-8"))


def _summary(status: dict[str, Any]) -> str:
    keys = ("state", "total", "entrypoint", "bundle_ref", "started_at", "finished_at")
    rows = [{"field": k, "value": status.get(k)} for k in keys]
    rows += [{"field": f"output {k}", "value": f"{v} rows"} for k, v in status["outputs"].items()]
    return "<h2>Summary</h2>" + _table(rows)


def _plots(store: ResultStore, job_id: str, scored: bool) -> str:
    """The loss plot and one plot per scored target, as embedded images."""
    if not scored:
        return "<p>Not scored yet: run <code>mops score</code> for a loss table and plots.</p>"
    with tempfile.TemporaryDirectory() as tmp:
        files = [plot_loss(job_id, Path(tmp) / "loss.png", store=store)]
        for index, target in enumerate(load_scored_targets(store, job_id)):
            if len(target.on) == 1:
                files.append(
                    plot_output(
                        job_id,
                        target.output,
                        target.on[0],
                        target.value,
                        Path(tmp) / f"target-{index}.png",
                        store=store,
                    )
                )
        images = [image_tag(file, file.stem) for file in files]
    return "<h2>Plots</h2>" + "".join(images)


def image_tag(path: Path, alt: str) -> str:
    """A paragraph holding the PNG at ``path`` as a data URI (read now; the file may go).

    Raises:
        OSError: the file cannot be read.
    """
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<p><img alt='{html.escape(alt, quote=True)}' src='data:image/png;base64,{data}'></p>"


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)
