"""Parquet shards: many tasks' rows of one output per file, tagged with the commit that wrote them.

Every shard carries a constant ``_commit`` column (:data:`COMMIT_COLUMN`). Reading joins the
rows against the ledger's ``(task_id, commit_id)`` pairs, so rows of an unrecorded or
superseded commit are dropped by one hash join instead of a per-row Python loop.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelops.store._fs import temp_path
from modelops.store._records import RowCounts
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import polars as pl

__all__ = [
    "COMMIT_COLUMN",
    "TASK_COLUMN",
    "scan_shards",
    "shard_commit",
    "shard_name",
    "task_row_counts",
    "write_shard",
]

COMMIT_COLUMN = "_commit"
COMMIT_METADATA = b"modelops.commit"
TASK_COLUMN = "task_id"
_COMPRESSION = "zstd"


def shard_name(commit_id: int) -> str:
    """File name of the shard written by commit ``commit_id`` (zero-padded so names sort)."""
    return f"part-{commit_id:06d}.parquet"


def task_row_counts(tables: Mapping[str, pa.Table], done: Sequence[str]) -> RowCounts:
    """Rows per output of each done task, as the commit's usual counts plus the exceptions.

    Every output is listed (0 when a task had none). When each output has exactly one row per
    done task (the common case) this is a few vectorized checks, with no per-task work.

    Raises:
        StoreError: a table lacks ``task_id``, has null task ids or rows of a task not in
            ``done``, or already has the reserved ``_commit`` column.
    """
    done_set = set(done)  # a Python set: building an Arrow array from a list imports pandas
    per_output: dict[str, tuple[list[str], pa.Array]] = {}
    for output, table in tables.items():
        names = table.column_names
        if TASK_COLUMN not in names:
            raise StoreError(f"output {output!r} has no {TASK_COLUMN!r} column")
        if COMMIT_COLUMN in names:
            raise StoreError(f"output {output!r} uses the reserved column {COMMIT_COLUMN!r}")
        column = table.column(TASK_COLUMN)
        if column.null_count:
            raise StoreError(f"output {output!r} has rows with a null {TASK_COLUMN}")
        counted = pc.value_counts(column)
        ids = counted.field("values").to_pylist()
        stray = [task_id for task_id in ids if task_id not in done_set]
        if stray:
            raise StoreError(
                f"output {output!r} has rows of {len(stray)} task(s) not committed as done",
                hint=f"e.g. {min(stray)}",
            )
        per_output[output] = (ids, counted.field("counts"))
    outputs = sorted(per_output)
    # Output names are checked path components (no quotes or backslashes), so a %-template
    # builds the JSON far faster than json.dumps per task.
    template = "{" + ",".join(f"{json.dumps(output)}:%d" for output in outputs) + "}"
    if all(_one_row_each(per_output[o][1], len(done_set)) for o in outputs):
        return RowCounts(template % ((1,) * len(outputs)))
    counts = [
        dict(zip(per_output[o][0], per_output[o][1].to_pylist(), strict=True)) for o in outputs
    ]
    vectors = {task_id: tuple(c.get(task_id, 0) for c in counts) for task_id in done}
    usual = Counter(vectors.values()).most_common(1)[0][0] if vectors else (1,) * len(outputs)
    special = {t: template % v for t, v in vectors.items() if v != usual}
    return RowCounts(template % usual, special)


def _one_row_each(counts: pa.Array, n_done: int) -> bool:
    """True if every done task has exactly one row (the ids were checked to be done ones)."""
    return len(counts) == n_done and (n_done == 0 or pc.max(counts).as_py() == 1)


def shard_commit(path: Path) -> int:
    """The commit id a shard belongs to, from its name (see :func:`shard_name`)."""
    return int(path.stem.removeprefix("part-"))


def write_shard(directory: Path, table: pa.Table, commit_id: int) -> tuple[Path, int]:
    """Write ``table`` as ``directory/part-<commit>.parquet``.

    The commit id lives in the file name (and the schema metadata) rather than in a column, so
    writing builds no new Arrow arrays in the driver (pyarrow would import pandas to do that).

    The file is written under a temporary name, fsynced, then renamed into place; the caller
    fsyncs ``directory`` once all shards of the commit are in place. Returns the final path
    and its size in bytes.

    Raises:
        StoreError: the file cannot be written; the temporary file is removed.
    """
    final = directory / shard_name(commit_id)
    tmp = temp_path(directory, final.name)
    metadata = dict(table.schema.metadata or {})
    metadata[COMMIT_METADATA] = str(commit_id).encode()
    tagged = table.replace_schema_metadata(metadata)
    try:
        with tmp.open("wb") as fh:
            pq.write_table(tagged, fh, compression=_COMPRESSION)
            fh.flush()
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
        tmp.replace(final)
    except (OSError, pa.ArrowException) as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write shard {final}: {exc}") from exc
    return final, size


def scan_shards(paths: Sequence[Path], keys: Sequence[tuple[str, int]]) -> pl.LazyFrame:
    """Lazily read ``paths`` keeping only rows whose ``(task_id, commit)`` is in ``keys``.

    Shards may differ slightly in schema (a missing column, int vs float): they are combined
    with polars' diagonal-relaxed concat, which fills missing columns with nulls and widens
    types. The commit column is dropped from the result.
    """
    import polars as pl

    if not paths:
        raise StoreError("no shards to read")
    frames = [
        pl.scan_parquet(path).with_columns(
            pl.lit(shard_commit(path), pl.Int64).alias(COMMIT_COLUMN)
        )
        for path in paths
    ]
    rows = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    wanted = pl.LazyFrame(
        {
            TASK_COLUMN: [task_id for task_id, _ in keys],
            COMMIT_COLUMN: [commit for _, commit in keys],
        },
        schema={TASK_COLUMN: pl.String, COMMIT_COLUMN: pl.Int64},
    )
    return (
        rows.with_columns(pl.col(TASK_COLUMN).cast(pl.String))
        .join(wanted, on=[TASK_COLUMN, COMMIT_COLUMN], how="semi", maintain_order="left")
        .drop(COMMIT_COLUMN)
    )
