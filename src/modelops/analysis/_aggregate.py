"""Replicate aggregation: one row per parameter set (and grouping columns) with summary stats.

The aggregation is a polars lazy query over the job's Parquet shards, collected with the
streaming engine, so a job larger than memory still aggregates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from modelops.model import KEY_COLUMNS
from modelops.store import read_job, resolve_job
from modelops_contracts import ContractViolationError
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    import polars as pl

    from modelops.store import JobLike, ResultStore

__all__ = ["DEFAULT_QUANTILES", "aggregate", "quantile_name", "reading_results"]

DEFAULT_QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)


def quantile_name(q: float) -> str:
    """Column suffix for a quantile: 0.05 -> ``q05``, 0.5 -> ``q50``, 0.975 -> ``q97.5``."""
    return f"q{q * 100:02g}"


@contextmanager
def reading_results(job_id: str, output: str) -> Iterator[None]:
    """Turn a failure to read the job's shards (a file deleted or corrupted) into StoreError.

    Raises:
        StoreError: a shard of ``output`` could not be read inside the block.
    """
    import polars as pl

    try:
        yield
    except (OSError, pl.exceptions.PolarsError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise StoreError(
            f"cannot read results of job {job_id}, output {output!r}: {detail}",
            hint="if a shard file was deleted or damaged, run the job again to recompute it",
        ) from exc


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
    contributing; ``n_replicates`` when a parameter or ``by`` column is named ``n``), then
    ``{col}_mean``, ``{col}_std`` and ``{col}_q05`` ... for each numeric value
    column (``columns``, default every numeric model column not in ``by``).

    Raises:
        ContractViolationError: an unknown, repeated, key or parameter ``by`` column (rows are
            already one per parameter set), an unknown value column, or a quantile outside
            [0, 1].
        StoreError: unknown job or output, or a shard cannot be read.
    """
    import polars as pl

    result_store, job_id = resolve_job(job, store)
    lazy = result_store.scan_results(job_id, output)
    with reading_results(job_id, output):
        schema = lazy.collect_schema()
    declared = set(read_job(result_store, job_id).parameter_names())
    params = [name for name in schema.names() if name in declared]  # result-column order
    by = list(by)
    check_by(by, schema.names(), declared, output)
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
    count = "n" if "n" not in (*params, *by) else "n_replicates"  # a parameter may be "n"
    stats: list[pl.Expr] = [pl.col("task_id").n_unique().alias(count)]
    for col in values:
        value = pl.col(col).cast(pl.Float64)
        stats += [value.mean().alias(f"{col}_mean"), value.std().alias(f"{col}_std")]
        stats += [
            value.quantile(q, interpolation="linear").alias(f"{col}_{quantile_name(q)}")
            for q in quantiles
        ]
    keys = ["param_id", *params, *by]
    query = lazy.group_by(keys).agg(stats).sort([*params, "param_id", *by], nulls_last=True)
    with reading_results(job_id, output):
        return query.collect(engine="streaming")


def check_by(by: list[str], columns: Sequence[str], params: set[str], output: str) -> None:
    """Refuse grouping columns that are unknown, repeated, or already part of every group."""
    for index, name in enumerate(by):
        if name not in columns:
            raise ContractViolationError(f"no column {name!r} in output {output!r}")
        if name in KEY_COLUMNS or name in params:
            kind = "a key column" if name in KEY_COLUMNS else "a parameter"
            raise ContractViolationError(
                f"cannot group by {name!r}: it is {kind}, and rows are already one per "
                "parameter set; group by a column of the output such as a time column"
            )
        if name in by[:index]:
            raise ContractViolationError(f"column {name!r} is given twice to group by")
