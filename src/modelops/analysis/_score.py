"""Scoring: each parameter set's loss against every target, and their weighted total.

The loss table has one row per ``param_id``: the parameter values, ``loss_<target>`` per
target, ``loss`` (the weighted total), ``n_replicates`` (replicates with results),
``n_tasks`` (replicates the job asked for) and ``failed`` (true when a replicate failed or
has no results: the losses then cover fewer replicates and should not be trusted as-is).
It is sorted best (lowest total) first and written to ``<job dir>/scores.parquet``, with the
targets used in ``scores_targets.json`` beside it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelops.analysis._aggregate import job_parameters, resolve_job
from modelops.analysis._losses import resolve_loss
from modelops.analysis._targets import Target, targets_from_dicts
from modelops_contracts import ContractViolationError

if TYPE_CHECKING:
    import polars as pl

    from modelops.api import JobHandle
    from modelops.store import ResultStore

__all__ = ["SCORES_FILE", "TARGETS_FILE", "load_scored_targets", "load_scores", "score"]

SCORES_FILE = "scores.parquet"
TARGETS_FILE = "scores_targets.json"


def score(
    job: JobHandle | str,
    targets: Sequence[Target],
    *,
    store: ResultStore | Path | str | None = None,
    write: bool = True,
) -> pl.DataFrame:
    """Score every parameter set of ``job`` against ``targets``; the loss table, best first.

    Raises:
        ContractViolationError: no targets, a target's column is missing, or a user loss
            does not return a number.
        StoreError: unknown job, or the job has no results for a target's output.
    """
    import polars as pl

    if not targets:
        raise ContractViolationError("scoring needs at least one target")
    result_store, job_id = resolve_job(job, store)
    sets = job_parameters(result_store, job_id)
    failed_sets = {f.param_id for f in result_store.ledger.failures(job_id)}
    losses: dict[str, dict[str, float]] = {pid: {} for pid in sets}
    replicates: dict[str, int] = dict.fromkeys(sets, 0)
    for target in targets:
        for pid, (value, n) in _target_losses(result_store, job_id, target).items():
            losses.setdefault(pid, {})[target.name] = value
            replicates[pid] = max(replicates.get(pid, 0), n)
    names = list(dict.fromkeys(k for v in sets.values() for k in v if k != "_tasks"))
    rows = []
    for pid, params in sets.items():
        per_target = {f"loss_{t.name}": losses[pid].get(t.name) for t in targets}
        parts = [losses[pid].get(t.name) for t in targets]
        total: float | None = None
        if all(p is not None and not np.isnan(p) for p in parts):
            total = sum(t.weight * float(p or 0.0) for t, p in zip(targets, parts, strict=True))
        n = replicates.get(pid, 0)
        rows.append(
            {
                "param_id": pid,
                **{name: params.get(name) for name in names},
                **per_target,
                "loss": total,
                "n_replicates": n,
                "n_tasks": params["_tasks"],
                "failed": pid in failed_sets or n < params["_tasks"],
            }
        )
    table = pl.DataFrame(rows, infer_schema_length=None).sort(["loss", "param_id"], nulls_last=True)
    if write:
        directory = result_store.job_dir(job_id)
        table.write_parquet(directory / SCORES_FILE)
        text = json.dumps([t.to_dict() for t in targets], indent=2)
        (directory / TARGETS_FILE).write_text(text, encoding="utf-8")
    return table


def load_scores(store: ResultStore, job_id: str) -> pl.DataFrame | None:
    """The loss table last written by :func:`score` for the job, or None."""
    import polars as pl

    path = store.job_dir(job_id) / SCORES_FILE
    return pl.read_parquet(path) if path.exists() else None


def load_scored_targets(store: ResultStore, job_id: str) -> list[Target]:
    """The targets the job was last scored against, else those its study declared, else []."""
    path = store.job_dir(job_id) / TARGETS_FILE
    if path.exists():
        return targets_from_dicts(json.loads(path.read_text(encoding="utf-8")))
    from modelops_contracts import SimJob

    spec = SimJob.from_json(store.read_job_file(job_id)).target_spec or {}
    declared = spec.get("targets") or []
    return targets_from_dicts(declared, base=Path(spec.get("base", ".")))


def _target_losses(store: ResultStore, job_id: str, target: Target) -> dict[str, tuple[float, int]]:
    """``{param_id: (loss, replicates)}`` for one target."""
    import polars as pl

    observed = target.read_observed().with_row_index("_point")
    lazy = store.scan_results(job_id, target.output)
    schema = lazy.collect_schema()
    missing = [c for c in (*target.on, target.value) if c not in schema]
    if missing:
        raise ContractViolationError(
            f"target {target.name!r}: output {target.output!r} has no column(s) "
            f"{', '.join(missing)}"
        )
    keys = observed.select([*target.on, "_point"]).lazy()
    keys = keys.with_columns([pl.col(c).cast(schema[c]) for c in target.on])
    columns = ["param_id", "task_id", *target.on, pl.col(target.value).cast(pl.Float64)]
    if target.on:
        joined_lazy = lazy.select(columns).join(keys, on=list(target.on), how="inner")
    else:  # a scalar target: one observed row against every simulated row
        joined_lazy = lazy.select(columns).join(keys, how="cross")
    joined = joined_lazy.select(["param_id", "task_id", "_point", target.value]).collect(
        engine="streaming"
    )
    y = observed[target.observed].cast(pl.Float64).to_numpy()
    trials = observed[target.trials].cast(pl.Float64).to_numpy() if target.trials else None
    fn = resolve_loss(target.loss)
    wants_trials = target.trials is not None and len(inspect.signature(fn).parameters) >= 3
    result: dict[str, tuple[float, int]] = {}
    for (pid,), group in joined.partition_by("param_id", as_dict=True).items():
        tasks = group["task_id"].unique(maintain_order=True).to_list()
        matrix = np.full((len(tasks), len(y)), np.nan)
        row = {task: i for i, task in enumerate(tasks)}
        rows = np.array([row[t] for t in group["task_id"].to_list()], dtype=np.int64)
        matrix[rows, group["_point"].to_numpy()] = group[target.value].to_numpy()
        keep = ~np.all(np.isnan(matrix), axis=0)  # points this parameter set simulated
        args = [y[keep], matrix[:, keep]]
        if wants_trials and trials is not None:
            args.append(trials[keep])
        value = fn(*args)
        try:
            result[str(pid)] = (float(value), len(tasks))
        except (TypeError, ValueError):
            raise ContractViolationError(
                f"loss {target.loss!r} returned {value!r}, not a number"
            ) from None
    return result
