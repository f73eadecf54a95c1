"""Normalising one model output into an Arrow table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from modelops.runtime.tables import (
    OutputTypeError,
    check_output_name,
    conform,
    merge_schemas,
    merge_types,
    scalar_row,
    to_table,
)
from modelops_contracts.errors import ModelError

EXPECTED = pa.table({"day": pa.array([0, 1, 2], pa.int64()), "cases": [1.5, 2.5, 3.5]})


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(pd.DataFrame({"day": [0, 1, 2], "cases": [1.5, 2.5, 3.5]}), id="pandas"),
        pytest.param(
            pd.DataFrame({"cases": [1.5, 2.5, 3.5]}, index=pd.Index([0, 1, 2], name="day")),
            id="pandas-named-index",
        ),
        pytest.param(pl.DataFrame({"day": [0, 1, 2], "cases": [1.5, 2.5, 3.5]}), id="polars"),
        pytest.param(EXPECTED, id="arrow-table"),
        pytest.param(EXPECTED.to_batches()[0], id="record-batch"),
        pytest.param({"day": [0, 1, 2], "cases": [1.5, 2.5, 3.5]}, id="dict-of-lists"),
        pytest.param({"day": range(3), "cases": (1.5, 2.5, 3.5)}, id="range-and-tuple"),
        pytest.param({"day": np.arange(3), "cases": np.array([1.5, 2.5, 3.5])}, id="dict-of-numpy"),
        pytest.param(
            {"day": pd.Series([0, 1, 2]), "cases": pl.Series([1.5, 2.5, 3.5])}, id="series"
        ),
        pytest.param(
            {"day": pa.array([0, 1, 2]), "cases": pa.chunked_array([[1.5], [2.5, 3.5]])},
            id="arrow-arrays",
        ),
    ],
)
def test_accepted_inputs_give_the_same_table(value: Any) -> None:
    table = to_table("incidence", value)
    assert table.column_names == ["day", "cases"]
    assert table.equals(EXPECTED)
    assert table.schema.metadata is None


def test_dict_of_scalars_is_one_row() -> None:
    value = {"peak": 3, "rate": 0.25, "name": "x", "flag": True, "missing": None, "n": np.int64(4)}
    assert scalar_row(value) is value
    table = to_table("summary", value)
    assert table.num_rows == 1
    assert table.to_pylist() == [
        {"peak": 3, "rate": 0.25, "name": "x", "flag": True, "missing": None, "n": 4}
    ]
    assert table.schema.field("peak").type == pa.int64()


def test_scalar_row_rejects_columns() -> None:
    assert scalar_row({"a": [1]}) is None
    assert scalar_row({}) is None
    assert scalar_row(pa.table({"a": [1]})) is None


def test_strings_become_plain_strings() -> None:
    frame = pl.DataFrame({"s": ["a", "b"], "c": pl.Series(["x", "y"], dtype=pl.Categorical)})
    table = to_table("o", frame)
    assert table.schema.field("s").type == pa.string()
    assert table.schema.field("c").type == pa.string()
    large = pa.table({"s": pa.array(["a"], pa.large_string())})
    assert to_table("o", large).schema.field("s").type == pa.string()
    categorical = pd.DataFrame({"c": pd.Categorical(["a", "b", "a"])})
    assert to_table("o", categorical).column("c").to_pylist() == ["a", "b", "a"]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([1, 2, 3], "output 'o' is a list"),
        (42, "output 'o' is a int"),
        (None, "output 'o' is a NoneType"),
        (np.arange(3), "is a ndarray"),
        ({}, "output 'o' is an empty dict"),
        ({"a": [1, 2], "b": [1, 2, 3]}, "different lengths: a=2, b=3"),
        ({"a": [1, 2], "b": 3}, r"mixes scalars and columns \(column 'b'"),
        ({1: [1, 2]}, "column names must be non-empty strings, got 1"),
        ({"": 1}, "non-empty strings"),
        ({"a": np.zeros((2, 2))}, "column 'a' is a 2-d array"),
        ({"a": {1, 2}}, "column 'a' is a set"),
        ({"a": [1, "x"]}, "column 'a' cannot be converted to Arrow"),
        ({"seed": 1}, "column 'seed' collides with a key column"),
        ({"task_id": [1]}, "column 'task_id' collides with a key column"),
        ({"beta": 0.5}, "column 'beta' collides with the parameter"),
        (pd.DataFrame({0: [1]}), "column names must be non-empty strings, got 0"),
        (pd.DataFrame({"replicate": [1]}), "'replicate' collides"),
        (pd.DataFrame({"a": [1, "x"]}, dtype=object), "output 'o' cannot be converted"),
        (pa.table([pa.array([1]), pa.array([2])], names=["a", "a"]), "column 'a' appears twice"),
        (pa.table({}), "output 'o' has no columns"),
    ],
)
def test_rejected_inputs_name_output_and_problem(value: Any, fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment):
        to_table("o", value, reserved={"beta"})


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a/b", "../up", "x" * 129, 3])
def test_output_names_must_be_safe(name: Any) -> None:
    with pytest.raises(ModelError, match="output name"):
        check_output_name(name)


def test_valid_output_names() -> None:
    for name in ("summary", "incidence_v2", "a.b-c", "_x"):
        assert check_output_name(name) == name


# -- one type per column -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixed", "new", "merged"),
    [
        (pa.int64(), pa.int64(), pa.int64()),
        (pa.null(), pa.string(), pa.string()),
        (pa.bool_(), pa.null(), pa.bool_()),
        (pa.int32(), pa.int64(), pa.int64()),
        (pa.uint8(), pa.int8(), pa.int16()),
        (pa.uint32(), pa.int64(), pa.int64()),
        (pa.int64(), pa.float64(), pa.float64()),
        (pa.float32(), pa.int64(), pa.float64()),
        (pa.float32(), pa.float64(), pa.float64()),
        (pa.list_(pa.null()), pa.list_(pa.int64()), pa.list_(pa.int64())),
        (pa.int64(), pa.string(), None),
        (pa.int64(), pa.bool_(), None),
        (pa.bool_(), pa.float64(), None),
        (pa.string(), pa.binary(), None),
        (pa.uint64(), pa.int64(), None),
        (pa.list_(pa.int64()), pa.list_(pa.string()), None),
    ],
)
def test_merge_types(fixed: pa.DataType, new: pa.DataType, merged: pa.DataType | None) -> None:
    assert merge_types(fixed, new) == merged
    assert merge_types(new, fixed) == merged  # symmetric: order never changes it


def test_merge_schemas_widens_appends_and_reports_conflicts() -> None:
    fixed = pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.null())])
    new = pa.schema(
        [("d", pa.bool_()), ("c", pa.float64()), ("b", pa.int64()), ("a", pa.float64())]
    )
    merged, conflicts = merge_schemas(fixed, new)
    assert merged == pa.schema(
        [("a", pa.float64()), ("b", pa.string()), ("c", pa.float64()), ("d", pa.bool_())]
    )
    assert conflicts == {"b": pa.string()}


def test_conform_fills_missing_columns_and_casts() -> None:
    schema = pa.schema([("a", pa.float64()), ("b", pa.string())])
    table = conform(pa.table({"a": [1, 2]}), schema)
    assert table.schema == schema and table.to_pydict() == {"a": [1.0, 2.0], "b": [None, None]}
    with pytest.raises(OutputTypeError, match="column 'a'"):
        conform(pa.table({"a": [2**53 + 1]}), schema)  # not exactly a float64


def test_output_ints_beyond_64_bits_name_the_column() -> None:
    with pytest.raises(OutputTypeError, match="output 'o': column 'n' holds an int outside"):
        to_table("o", {"n": [1, 2**64]})
