"""Parquet shards: tagging with the commit, per-task row counts, and filtered reading."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelops.store.shards import (
    COMMIT_COLUMN,
    COMMIT_METADATA,
    scan_shards,
    shard_commit,
    shard_name,
    task_row_counts,
    write_shard,
)
from modelops_contracts.errors import StoreError


def test_write_shard_records_its_commit_and_uses_zstd(tmp_path: Path) -> None:
    table = pa.table({"task_id": ["a", "a", "b"], "x": [1, 2, 3]})
    path, size = write_shard(tmp_path, table, 7)
    assert path == tmp_path / shard_name(7) == tmp_path / "part-000007.parquet"
    assert size == path.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    back = pq.read_table(path)
    assert shard_commit(path) == 7
    assert back.schema.metadata[COMMIT_METADATA] == b"7"
    assert COMMIT_COLUMN not in back.column_names
    assert back.column("x").to_pylist() == [1, 2, 3]
    meta = pq.ParquetFile(path).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_task_row_counts_lists_every_output() -> None:
    tables = {
        "ts": pa.table({"task_id": ["a", "a", "b", "c", "c", "d", "d"], "v": range(7)}),
        "summary": pa.table({"task_id": ["a", "c", "d"], "v": [1, 2, 3]}),
    }
    counts = task_row_counts(tables, ["a", "b", "c", "d"])
    assert json.loads(counts.usual) == {"summary": 1, "ts": 2}  # what most tasks have
    assert {k: json.loads(v) for k, v in counts.special.items()} == {"b": {"summary": 0, "ts": 1}}
    none = task_row_counts(tables, ["a", "b", "c", "d", "e"])
    assert json.loads(none.special["e"]) == {"summary": 0, "ts": 0}


def test_task_row_counts_one_row_each_has_no_exceptions() -> None:
    tables = {
        "y": pa.table({"task_id": ["b", "a", "c"]}),
        "z": pa.table({"task_id": ["c", "a", "b"]}),
    }
    counts = task_row_counts(tables, ["a", "b", "c"])
    assert (json.loads(counts.usual), counts.special) == ({"y": 1, "z": 1}, {})
    counts = task_row_counts({"y": pa.table({"task_id": ["a", "a"]})}, ["a", "b"])
    assert (json.loads(counts.usual), counts.special) == ({"y": 2}, {"b": '{"y":0}'}) or (
        json.loads(counts.usual),
        counts.special,
    ) == ({"y": 0}, {"a": '{"y":2}'})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"x": [1]}), "no 'task_id' column"),
        (pa.table({"task_id": ["a"], "_commit": [1]}), "reserved column"),
        (pa.table({"task_id": pa.array([None], pa.string())}), "null task_id"),
        (pa.table({"task_id": ["a", "zz"]}), "not committed as done"),
    ],
)
def test_task_row_counts_rejects_bad_tables(table: pa.Table, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        task_row_counts({"out": table}, ["a"])


def test_scan_keeps_only_matching_task_and_commit(tmp_path: Path) -> None:
    old, _ = write_shard(tmp_path, pa.table({"task_id": ["a", "b"], "v": [1, 2]}), 1)
    new, _ = write_shard(tmp_path, pa.table({"task_id": ["a", "c"], "v": [10, 30]}), 2)
    frame = scan_shards([old, new], [("a", 2), ("b", 1), ("c", 2)]).collect()
    assert frame.columns == ["task_id", "v"]
    assert sorted(frame.rows()) == [("a", 10), ("b", 2), ("c", 30)]


def test_scan_tolerates_schema_drift_between_shards(tmp_path: Path) -> None:
    first = pa.table({"task_id": ["a"], "beta": [0.5], "n": pa.array([1], pa.int64())})
    second = pa.table({"task_id": ["b"], "n": [2.5], "gamma": ["x"]})
    paths = [write_shard(tmp_path, first, 1)[0], write_shard(tmp_path, second, 2)[0]]
    frame = scan_shards(paths, [("a", 1), ("b", 2)]).collect().sort("task_id")
    assert frame.schema["n"] == pl.Float64
    assert frame["n"].to_list() == [1.0, 2.5]
    assert frame["beta"].to_list() == [0.5, None]
    assert frame["gamma"].to_list() == [None, "x"]


def test_scan_reads_dictionary_encoded_task_ids(tmp_path: Path) -> None:
    table = pa.table({"task_id": pa.array(["a", "b"]).dictionary_encode(), "v": [1, 2]})
    path, _ = write_shard(tmp_path, table, 3)
    frame = scan_shards([path], [("b", 3)]).collect()
    assert frame.rows() == [("b", 2)]
