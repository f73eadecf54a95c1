"""Replicate aggregation: one row per parameter set (and grouping columns) with summary stats.

The aggregation is a polars lazy query over the job's Parquet shards, collected with the
streaming engine, so a job larger than memory still aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelops.model import KEY_COLUMNS
from modelops.store import read_job, resolve_job
from modelops_contracts import ContractViolationError

if TYPE_CHECKING:
    import polars as pl

    from modelops.store import JobLike, ResultStore

__all__ = ["DEFAULT_QUANTILES", "aggregate", "quantile_name"]

DEFAULT_QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)


def quantile_name(q: float) -> str:
    """Column suffix for a quantile: 0.05 -> ``q05``, 0.5 -> ``q50``, 0.975 -> ``q97.5``."""
    return f"q{q * 100:02g}"


def aggregate(
    job: JobLike | str,
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
    declared = set(read_job(result_store, job_id).parameter_names())
    params = [name for name in schema.names() if name in declared]  # result-column order
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
