"""Turn one model output into Arrow columns.

A model may return, per output name:

- a pandas or polars DataFrame (named pandas index levels become columns),
- a pyarrow ``Table`` or ``RecordBatch``,
- a ``dict`` of equal-length columns (lists, tuples, ranges, 1-d numpy arrays, Arrow arrays,
  pandas or polars Series),
- a ``dict`` of scalars: one row.

Anything else is rejected with a :class:`~modelops_contracts.errors.ModelError` that names the
output and the problem: an empty dict, ragged columns, a dict mixing scalars and columns,
non-string or duplicate column names, and columns named like a key column (``task_id``,
``param_id``, ``replicate``, ``seed``) or a parameter. Large and view string/binary types and
dictionary-encoded columns are converted to plain ``string``/``binary`` and their value types, so
tables from different models and libraries concatenate.

One type per column (the rule every merge of tables follows, within a chunk and across commits):
the first rows of an output fix each column's type; later rows join it when :func:`merge_types`
allows (null joins anything, ints widen to wider ints, ints and floats become float64, lists
merge by their items; nothing else, so bool, int and str never mix); a column missing from later
rows is null there, a new column is added (null in the earlier rows). Rows that do not fit fail
their task with :class:`OutputTypeError` naming the output, the column and both types. An int
outside the 64-bit range fails its task the same way.

pandas and polars are never imported here: a frame is recognised by its type's module, and the
library is only touched through the object the model returned.
"""

from __future__ import annotations

import datetime
import decimal
import re
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from modelops.model import KEY_COLUMNS
from modelops.runtime._arrow import pandas_ready
from modelops_contracts.errors import ModelError

__all__ = [
    "KEY_COLUMNS",
    "OutputTypeError",
    "check_columns",
    "check_output_name",
    "conform",
    "merge_schemas",
    "merge_types",
    "scalar_row",
    "to_table",
]

_OUTPUT_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_EXACT_SCALARS = frozenset({int, float, str, bool, type(None)})
_SCALAR_TYPES = (
    int,
    float,
    str,
    bytes,
    np.generic,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
)


class OutputTypeError(ModelError):
    """A task's output column has a type its output cannot take (see the module docstring)."""


def type_conflict(output: str, column: str, fixed: pa.DataType, got: pa.DataType) -> str:
    """The message of an :class:`OutputTypeError` for ``column`` of ``output``."""
    return (
        f"output {output!r}: column {column!r} is {got} here but {fixed} in earlier results "
        "of the job (a column keeps one type; only null, int widths and int to float widen)"
    )


def merge_types(fixed: pa.DataType, new: pa.DataType) -> pa.DataType | None:
    """The type a column of type ``fixed`` takes to also hold ``new`` values, or None if none."""
    if fixed.equals(new):
        return fixed
    if pa.types.is_null(fixed):
        return new
    if pa.types.is_null(new):
        return fixed
    if pa.types.is_integer(fixed) and pa.types.is_integer(new):
        return _merge_ints(fixed, new)
    fixed_number = pa.types.is_integer(fixed) or pa.types.is_floating(fixed)
    if fixed_number and (pa.types.is_integer(new) or pa.types.is_floating(new)):
        if pa.types.is_floating(fixed) and pa.types.is_floating(new):
            return fixed if fixed.bit_width >= new.bit_width else new
        return pa.float64()
    if pa.types.is_list(fixed) and pa.types.is_list(new):
        item = merge_types(fixed.value_type, new.value_type)
        return None if item is None else pa.list_(item)
    return None


def _merge_ints(fixed: pa.DataType, new: pa.DataType) -> pa.DataType | None:
    signed_fixed, signed_new = pa.types.is_signed_integer(fixed), pa.types.is_signed_integer(new)
    if signed_fixed == signed_new:
        return fixed if fixed.bit_width >= new.bit_width else new
    unsigned = new if signed_fixed else fixed
    width = max(fixed.bit_width, new.bit_width, 2 * unsigned.bit_width)
    if width > 64:
        return None  # uint64 and a signed int have no common int type
    return {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}[width]


def merge_schemas(fixed: pa.Schema, new: pa.Schema) -> tuple[pa.Schema, dict[str, pa.DataType]]:
    """``fixed`` widened to hold ``new`` (new columns appended), and the columns that conflict.

    The conflicts map each column of ``new`` that cannot join ``fixed`` to its type in ``fixed``;
    such columns keep their ``fixed`` type in the returned schema.
    """
    fields = {field.name: field.type for field in fixed}
    conflicts: dict[str, pa.DataType] = {}
    for field in new:
        known = fields.get(field.name)
        if known is None:
            fields[field.name] = field.type
            continue
        merged = merge_types(known, field.type)
        if merged is None:
            conflicts[field.name] = known
        else:
            fields[field.name] = merged
    return pa.schema(list(fields.items())), conflicts


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (missing columns null).

    ``schema`` must come from :func:`merge_schemas` over ``table``'s schema without conflicts.

    Raises:
        OutputTypeError: naming the column whose values do not fit (an int beyond what a
            float64 holds exactly); the message lacks the output name, callers add it.
    """
    if table.schema.equals(schema):
        return table
    names = set(table.column_names)
    columns: list[pa.ChunkedArray | pa.Array] = []
    for field in schema:
        if field.name not in names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as err:
                raise OutputTypeError(
                    f"column {field.name!r} ({column.type}) does not fit {field.type}: {err}"
                ) from err
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def check_output_name(name: object) -> str:
    """Return ``name`` if it can name an output (it becomes a directory name in the store).

    Raises:
        ModelError: if it is not 1-128 chars of letters, digits, ``_``, ``.``, ``-``.
    """
    if not isinstance(name, str) or not _OUTPUT_NAME_RE.match(name):
        raise ModelError(
            f"output name {name!r} is not allowed",
            hint="use 1-128 letters, digits, '_', '.', '-', not starting with '.' or '-'",
        )
    return name


def check_columns(output: str, names: Collection[object], reserved: Collection[str]) -> None:
    """Reject non-string, duplicate or reserved column names, naming the output and the column.

    Raises:
        ModelError: for the first bad column name.
    """
    if not names:
        raise ModelError(f"output {output!r} has no columns")
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name:
            raise ModelError(
                f"output {output!r}: column names must be non-empty strings, got {name!r}"
            )
        if name in seen:
            raise ModelError(f"output {output!r}: column {name!r} appears twice")
        seen.add(name)
        if name in KEY_COLUMNS:
            raise ModelError(
                f"output {output!r}: column {name!r} collides with a key column",
                hint=f"rename it; the runtime adds {', '.join(KEY_COLUMNS)} to every row",
            )
        if name in reserved:
            raise ModelError(
                f"output {output!r}: column {name!r} collides with the parameter of that name",
                hint="rename it; the runtime adds every parameter as a column",
            )


def scalar_row(value: object) -> dict[str, Any] | None:
    """``value`` itself if it is a ``dict`` of scalars (one row), else ``None``.

    This is the runtime's fast path: such rows are collected as Python lists and turned into one
    Arrow table per chunk. Column names are not checked here (see :func:`check_columns`).
    """
    if type(value) is not dict or not value:
        return None
    exact = _EXACT_SCALARS
    for item in value.values():
        if type(item) not in exact and not isinstance(item, _SCALAR_TYPES):
            return None
    return value


def to_table(output: str, value: object, *, reserved: Collection[str] = ()) -> pa.Table:
    """Convert one output value into an Arrow table with plain column types.

    ``reserved`` holds the parameter names, which may not be used as columns either.

    Raises:
        ModelError: naming the output and the problem, for anything not listed in the module
            docstring.
    """
    table = _convert(output, value)
    check_columns(output, table.column_names, reserved)
    return plain_types(table)


def plain_types(table: pa.Table) -> pa.Table:
    """``table`` with dictionary, large and view string/binary columns cast to plain types."""
    target = pa.schema([field.with_type(_plain(field.type)) for field in table.schema])
    if target.equals(table.schema) and table.schema.metadata is None:
        return table
    return table.cast(target).replace_schema_metadata(None)


def _plain(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(kind):
        return _plain(kind.value_type)
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.binary()
    return kind


def _convert(output: str, value: object) -> pa.Table:
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if _is_a(value, "pandas", "DataFrame"):
        return _from_pandas(output, value)
    if _is_a(value, "polars", "DataFrame"):
        return _arrow_call(output, value.to_arrow)  # type: ignore[attr-defined]
    if isinstance(value, Mapping):
        return _from_mapping(output, value)
    raise ModelError(
        f"output {output!r} is a {type(value).__name__}",
        hint="return a DataFrame (pandas/polars), a pyarrow Table, a dict of columns "
        "or a dict of scalars",
    )


def _is_a(value: object, library: str, name: str) -> bool:
    """Whether ``value`` is ``library``'s ``name`` class, without importing ``library``."""
    kind = type(value)
    module = kind.__module__
    return kind.__name__ == name and (module == library or module.startswith(library + "."))


def _from_pandas(output: str, frame: Any) -> pa.Table:
    pandas_ready()
    for name in frame.columns:
        if not isinstance(name, str):
            raise ModelError(
                f"output {output!r}: column names must be non-empty strings, got {name!r}"
            )
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    return _arrow_call(output, lambda: pa.Table.from_pandas(frame, preserve_index=False))


def _from_mapping(output: str, value: Mapping[Any, Any]) -> pa.Table:
    if not value:
        raise ModelError(f"output {output!r} is an empty dict", hint="return at least one column")
    check_columns(output, list(value), ())
    if scalar_row(dict(value)) is not None:
        return pa.table(
            {k: _arrow_call(output, lambda v=v: pa.array([v]), k) for k, v in value.items()}
        )
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    lengths: dict[str, int] = {}
    for name, column in value.items():
        columns[name] = _column(output, name, column)
        lengths[name] = len(columns[name])
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise ModelError(f"output {output!r} has columns of different lengths: {detail}")
    return _arrow_call(output, lambda: pa.table(columns))


def _column(output: str, name: str, column: object) -> pa.Array | pa.ChunkedArray:
    if isinstance(column, pa.Array | pa.ChunkedArray):
        return column
    if isinstance(column, np.ndarray) and column.ndim != 1:
        raise ModelError(
            f"output {output!r}: column {name!r} is a {column.ndim}-d array, expected 1-d"
        )
    if isinstance(column, list | tuple | np.ndarray):
        return _arrow_call(output, lambda: pa.array(column), name)
    if isinstance(column, range):
        return _arrow_call(output, lambda: pa.array(list(column), pa.int64()), name)
    if _is_a(column, "pandas", "Series"):
        pandas_ready()
        return _arrow_call(output, lambda: pa.array(column), name)
    if _is_a(column, "polars", "Series"):
        return _arrow_call(output, column.to_arrow, name)  # type: ignore[attr-defined]
    if column is None or isinstance(column, _SCALAR_TYPES):
        raise ModelError(
            f"output {output!r} mixes scalars and columns (column {name!r} is a scalar)",
            hint="return either a dict of scalars (one row) or a dict of equal-length columns",
        )
    raise ModelError(
        f"output {output!r}: column {name!r} is a {type(column).__name__}, "
        "expected a list, tuple, 1-d numpy array or Series"
    )


def _arrow_call(output: str, build: Any, column: str | None = None) -> Any:
    try:
        return build()
    except OverflowError as err:
        where = f"output {output!r}" + (f": column {column!r}" if column else "")
        raise OutputTypeError(f"{where} holds an int outside the 64-bit range") from err
    except (pa.ArrowException, TypeError, ValueError) as err:
        where = f"output {output!r}" + (f" column {column!r}" if column else "")
        raise ModelError(f"{where} cannot be converted to Arrow: {err}") from err
