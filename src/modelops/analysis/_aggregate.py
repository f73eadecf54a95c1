"""Replicate aggregation: one row per parameter set (and grouping columns) with summary stats.

The aggregation is a polars lazy query over the job's Parquet shards, collected with the
streaming engine, so a job larger than memory still aggregates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops_contracts import ContractViolationError

if TYPE_CHECKING:
    import polars as pl

    from modelops.api import JobHandle
    from modelops.store import ResultStore

__all__ = [
    "DEFAULT_QUANTILES",
    "KEY_COLUMNS",
    "aggregate",
    "job_parameters",
    "quantile_name",
    "resolve_job",
]

DEFAULT_QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
KEY_COLUMNS: tuple[str, ...] = ("task_id", "param_id", "replicate", "seed")


def resolve_job(
    job: JobHandle | str, store: ResultStore | Path | str | None = None
) -> tuple[ResultStore, str]:
    """The store and job id for a job handle, or a job id plus a store (or its path)."""
    from modelops.api import JobHandle, job_status, open_existing_store
    from modelops.store import ResultStore

    if isinstance(job, JobHandle):
        return job.store, job.job_id
    result_store = store if isinstance(store, ResultStore) else open_existing_store(store)
    job_status(result_store, job)  # unknown job -> StoreError
    return result_store, job


def job_parameters(store: ResultStore, job_id: str) -> dict[str, dict[str, Any]]:
    """Parameter values and task count of each parameter set: ``{param_id: {..., "_tasks": n}}``."""
    spec = json.loads(store.read_job_file(job_id))
    sets: dict[str, dict[str, Any]] = {}
    for task in spec.get("tasks", []):
        params = task["params"]
        entry = sets.setdefault(params["param_id"], {**params["params"], "_tasks": 0})
        entry["_tasks"] += 1
    return sets


def quantile_name(q: float) -> str:
    """Column suffix for a quantile: 0.05 -> ``q05``, 0.5 -> ``q50``, 0.975 -> ``q97.5``."""
    return f"q{q * 100:02g}"


def aggregate(
    job: JobHandle | str,
    output: str,
    by: Sequence[str] = (),
    *,
    store: ResultStore | Path | str | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Summarise ``output`` over replicates per parameter set and ``by`` columns.

    Returns one row per ``param_id`` and ``by`` value: the parameter values, ``n`` (replicates
    contributing), then ``{col}_mean``, ``{col}_std`` and ``{col}_q05`` ... for each numeric value
    column (``columns``, default every numeric model column not in ``by``).

    Raises:
        ContractViolationError: an unknown ``by`` or value column, or a quantile outside [0, 1].
        StoreError: unknown job or output.
    """
    import polars as pl

    result_store, job_id = resolve_job(job, store)
    lazy = result_store.scan_results(job_id, output)
    schema = lazy.collect_schema()
    params = _parameter_columns(result_store, job_id, schema.names())
    by = list(by)
    for name in by:
        if name not in schema:
            raise ContractViolationError(f"no column {name!r} in output {output!r}")
    if any(not 0.0 <= q <= 1.0 for q in quantiles):
        raise ContractViolationError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    skip = {*KEY_COLUMNS, *params, *by}
    if columns is None:
        values = [c for c, t in schema.items() if c not in skip and t.is_numeric()]
    else:
        values = list(columns)
        for name in values:
            if name not in schema or not schema[name].is_numeric():
                raise ContractViolationError(f"no numeric column {name!r} in output {output!r}")
    stats: list[pl.Expr] = [pl.col("task_id").n_unique().alias("n")]
    for col in values:
        value = pl.col(col).cast(pl.Float64)
        stats += [value.mean().alias(f"{col}_mean"), value.std().alias(f"{col}_std")]
        stats += [
            value.quantile(q, interpolation="linear").alias(f"{col}_{quantile_name(q)}")
            for q in quantiles
        ]
    keys = ["param_id", *params, *by]
    query = lazy.group_by(keys).agg(stats).sort([*params, "param_id", *by], nulls_last=True)
    return query.collect(engine="streaming")


def _parameter_columns(store: ResultStore, job_id: str, names: Sequence[str]) -> list[str]:
    """The result columns that hold parameter values, in result-column order."""
    declared: set[str] = set()
    for values in job_parameters(store, job_id).values():
        declared.update(k for k in values if k != "_tasks")
    return [name for name in names if name in declared]
