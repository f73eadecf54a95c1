"""One self-contained HTML page per calibration: its inputs, its answer, its posterior, its figures.

The figures of :mod:`modelops.calibration._plots` are embedded as base64 PNG data URIs, so the
page opens in a browser with no server and no other files.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops._output import write_output
from modelops.calibration._plots import draw_losses, draw_posterior, draw_predictive, draw_trace
from modelops_contracts import ContractViolationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from modelops.calibration._handle import Calibration
    from modelops.calibration._spec import CalibrationSpec

__all__ = ["REPORT_FILE", "write_calibration_report"]

REPORT_FILE = "report.html"
"""The report's name in the calibration's directory when no path is given."""

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1100px}"
    "table{border-collapse:collapse;font-size:0.9em;margin-bottom:1em}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#eee}img{max-width:100%}.note{color:#555}.bad{color:#b00}"
)


def write_calibration_report(cal: Calibration, path: Path | str | None = None) -> Path:
    """Write the calibration's HTML report (default ``<calibration dir>/report.html``).

    The page holds the id, algorithm, settings, budget and status; the inputs (free and fixed
    parameters, targets); the answer (``best.json``) and the re-evaluated candidates; for
    ABC-SMC the posterior summary and populations; and the figures: the loss trace, the loss
    against each parameter, the posterior (ABC-SMC) and the predictive check. Parts that need
    a finished calibration say so instead while it is not.

    Raises:
        StoreError: the journal or the predictive job's results cannot be read.
        ModelOpsError: the file cannot be written.
    """
    spec = cal.spec
    record = cal.journal.record()
    result = record.get("result") if isinstance(record.get("result"), dict) else None
    best = cal.best
    title = f"Calibration {cal.calibration_id}"
    parts = [f"<h1>{_text(title)}</h1>", _summary(cal, spec, record, result)]
    parts.append(
        "<h2>Settings</h2>" + _table([{"setting": k, "value": v} for k, v in _settings(spec)])
    )
    parts.append("<h2>Parameters</h2>" + _table(_parameters(spec)))
    parts.append("<h2>Targets</h2>" + _table([_target(t.to_dict()) for t in spec.targets]))
    if best is None:
        parts.append(
            "<h2>Answer</h2><p class='note'>Not finished yet: the answer comes from the final "
            "re-evaluation; run the same command again to resume the calibration.</p>"
        )
    else:
        parts.append(_answer(best, spec))
    if spec.algorithm == "abc-smc":
        parts.append(_posterior(cal))
    parts.append(_figures(cal, spec, finished=best is not None and result is not None))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>ModelOps {_text(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )
    dest = Path(path) if path is not None else cal.directory / REPORT_FILE
    return write_output(dest, lambda target: target.write_text(page, encoding="utf-8"))


def _summary(
    cal: Calibration,
    spec: CalibrationSpec,
    record: Mapping[str, Any],
    result: Mapping[str, Any] | None,
) -> str:
    rows: list[tuple[str, Any]] = [
        ("calibration id", cal.calibration_id),
        ("status", record.get("status", "running")),
        ("algorithm", spec.algorithm),
        ("model", spec.entrypoint),
        ("bundle", spec.bundle_ref),
        ("seed", spec.seed),
        ("budget", f"{spec.budget} points"),
        ("evaluations", cal.evaluations().height),
        ("replicates per point", spec.replicates),
        ("batch", f"{spec.batch} points per round"),
        ("re-evaluation", f"top {spec.top_k} on {spec.reeval_replicates} new replicates"),
    ]
    if result is not None:
        rows += [
            ("rounds", result.get("generations")),
            ("tasks run", result.get("tasks_run")),
            ("tasks cached", result.get("tasks_cached")),
            ("re-evaluation job", result.get("reeval_job_id")),
            ("predictive job", result.get("predictive_job_id")),
        ]
    rows.append(("store", str(cal.store)))
    return "<h2>Summary</h2>" + _table([{"field": k, "value": v} for k, v in rows])


def _settings(spec: CalibrationSpec) -> list[tuple[str, Any]]:
    """The algorithm's settings, with every default filled in, and the config if any."""
    found = [(str(k), v) for k, v in spec.settings.items()]
    found += [(f"config {k}", v) for k, v in (spec.config or {}).items()]
    return found


def _parameters(spec: CalibrationSpec) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "parameter": p.name,
            "lower": p.lower,
            "upper": p.upper,
            "kind": p.kind,
            "scale": "log" if p.log else "linear",
            "fixed": "",
        }
        for p in spec.space.parameters
    ]
    rows += [
        {"parameter": name, "lower": "", "upper": "", "kind": "", "scale": "", "fixed": value}
        for name, value in spec.space.fixed.items()
    ]
    return rows


def _target(item: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("name", "output", "on", "value", "observed", "loss", "weight", "data")
    return {k: ", ".join(item[k]) if k == "on" else item.get(k) for k in keys}


def _answer(best: Mapping[str, Any], spec: CalibrationSpec) -> str:
    """The answer (best re-evaluated point) and every re-evaluated candidate."""
    first, stop = best.get(
        "replicates", [spec.replicates, spec.replicates + spec.reeval_replicates]
    )
    answer = {
        **{name: best["params"][name] for name in spec.space.names},
        "loss": best["loss"],
        "loss_se": best["loss_se"],
        "loss ± 2 SE": _interval(best["loss"], best["loss_se"]),
        "n_replicates": best["n_replicates"],
        "search_loss": best.get("search_loss"),
        "search_loss_se": best.get("search_loss_se"),
    }
    candidates = [
        {
            "rank": rank + 1,
            **{name: c["params"][name] for name in spec.space.names},
            "loss": c.get("loss"),
            "loss_se": c.get("loss_se"),
            "n_replicates": c.get("n_replicates"),
            "search_loss": c.get("search_loss"),
            "search_loss_se": c.get("search_loss_se"),
            "round": c.get("generation"),
            "point": c.get("point"),
        }
        for rank, c in enumerate(best.get("candidates", []))
    ]
    note = (
        f"<p class='note'>The best of the top {len(candidates)} search points re-run on "
        f"replicates {first} to {stop - 1} (new seeds); the search loss is the same point's loss "
        "during the search, biased low by the luck that ranked it high.</p>"
    )
    return (
        "<h2>Answer</h2>"
        + note
        + _table([answer])
        + f"<h2>Re-evaluated candidates ({len(candidates)})</h2>"
        + _table(candidates)
    )


def _posterior(cal: Calibration) -> str:
    """The posterior summary of the last population, and each population's epsilon."""
    import polars as pl

    summary = cal.posterior_summary()
    table = cal.posterior()
    if summary is None or table is None:
        return "<h2>Posterior</h2><p class='note'>No population is complete yet.</p>"
    rows = [{"parameter": name, **values} for name, values in summary.items()]
    populations = (
        table.group_by("population")
        .agg(
            pl.len().alias("particles"),
            pl.col("epsilon").first(),
            (1.0 / (pl.col("weight") / pl.col("weight").sum()).pow(2).sum()).alias(
                "effective size"
            ),
        )
        .sort("population")
    )
    last = populations["population"].to_list()[-1]
    return (
        f"<h2>Posterior (population {last}: weighted mean and quantiles)</h2>"
        + _table(rows)
        + "<h2>Populations</h2>"
        + _table(populations.to_dicts())
    )


def _figures(cal: Calibration, spec: CalibrationSpec, *, finished: bool) -> str:
    """The figures as embedded images; one that cannot be drawn is a line saying why."""
    figures: list[tuple[str, Callable[[Calibration], Figure]]] = [
        ("loss trace", draw_trace),
        ("loss against each parameter", draw_losses),
    ]
    if spec.algorithm == "abc-smc":
        figures.append(("posterior", draw_posterior))
    if finished:
        figures.append(("predictive check", draw_predictive))
    parts = []
    for name, draw in figures:
        try:
            figure = draw(cal)
        except ContractViolationError as err:  # no evaluations yet, unreadable observed data
            parts.append(f"<p class='bad'>{_text(name)} not drawn: {_text(str(err))}</p>")
            continue
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        parts.append(f"<p><img alt='{_text(name)}' src='data:image/png;base64,{data}'></p>")
    if not finished:
        parts.append(
            "<p class='note'>The predictive check is drawn once the calibration has finished.</p>"
        )
    return "<h2>Figures</h2>" + "".join(parts)


def _interval(loss: float | None, se: float | None) -> str:
    if loss is None:
        return ""
    if se is None:
        return f"{loss:.6g} (no SE)"
    return f"{loss - 2 * se:.6g} to {loss + 2 * se:.6g}"


def _table(rows: list[dict[str, Any]]) -> str:
    """An HTML table of ``rows`` (columns: the first row's keys), every cell escaped."""
    if not rows:
        return "<p class='note'>none</p>"
    head = "".join(f"<th>{_text(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_text(_cell(row.get(k)))}</td>" for k in rows[0]) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return "" if value is None else str(value)


def _text(value: str) -> str:
    return html.escape(value, quote=True)
