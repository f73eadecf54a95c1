"""Run a chunk of tasks inside a worker and return their outcomes and output tables.

Contract of :func:`run_chunk`:

- Every task gets exactly one :class:`TaskOutcome`, in the order of ``spec.tasks``. A task fails
  alone: an exception in the model, bad parameters, a missing requested output or an output that
  cannot be turned into a table marks that task failed and the chunk goes on. If the entrypoint
  cannot be loaded at all, every task fails with that error.
- ``tables[output]`` holds the rows of the chunk's successful tasks only, in task order, with the
  leading columns ``task_id`` (string), ``param_id`` (string), ``replicate`` (int64), ``seed``
  (uint64), then one column per parameter name (sorted; the task's own value), then the model's
  columns. Tasks' rows merge by the one-type-per-column rule of :mod:`modelops.runtime.tables`:
  the first task fixes a column's type, a later task that does not fit it fails alone with
  ``OutputTypeError`` (also a parameter whose value is of another kind than in earlier tasks).
  With ``spec.outputs`` set, only those outputs are kept; ``None`` keeps all. An output that no
  successful task returned has no entry.
- What the model prints to ``sys.stdout``/``sys.stderr`` never reaches the terminal: it is
  appended to ``spec.log_path`` (one write per chunk, each line tagged with the task id's first 8
  characters and the stream), at most ``TASK_LOG_CHARS`` per stream and task (the start and
  the end, with ``[... N characters cut]`` between), and a failed task carries the last 2 KB of
  its stderr. Output written below Python (C extensions writing to file descriptors) is not
  captured here (see :mod:`modelops.services._worker`).
- With ``spec.max_output_bytes`` set, a task whose rows (model and key columns, as Arrow data)
  are larger fails with a message giving both sizes, so no caller has to hold them.
- ``on_task_start(i)`` is called with the task's position in ``spec.tasks`` just before it runs.
- One chunk runs at a time per process (a lock): the model instance, ``sys.stdout`` and the
  loader's ``sys.path`` are process-wide. Run workers as processes, not threads, for parallelism.

The common case, a model returning one row of scalars per output, is collected as Python lists
and becomes one Arrow table per output per chunk; it gives the same table as the general path.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from time import perf_counter
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelops.model import KEY_COLUMNS
from modelops.runtime._arrow import pandas_ready
from modelops.runtime._packages import model_packages
from modelops.runtime.loader import Runner, load_entrypoint
from modelops.runtime.spec import ChunkResult, ChunkSpec, ChunkTask, TaskOutcome
from modelops.runtime.tables import (
    OutputTypeError,
    check_columns,
    check_output_name,
    conform,
    merge_schemas,
    plain_types,
    scalar_row,
    to_table,
    type_conflict,
)
from modelops_contracts.errors import ModelError

__all__ = ["ChunkResult", "ChunkSpec", "ChunkTask", "TaskOutcome", "run_chunk"]

STDERR_TAIL_CHARS = 2048
TASK_LOG_CHARS = 512 * 1024
_KEY_BYTES = 8 + 8 + 8 + 8  # offsets of task_id and param_id, replicate, seed (per row)
_TRACEBACK_CHARS = 16_384
_RUNTIME_DIRS = (
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parent.parent / "model.py"),
)
_chunk_lock = threading.Lock()


def run_chunk(spec: ChunkSpec, on_task_start: Callable[[int], None] | None = None) -> ChunkResult:
    """Run every task of ``spec`` in this process; see the module docstring for the contract."""
    with _chunk_lock:
        worker = f"{socket.gethostname()}:{os.getpid()}"
        try:
            runner = load_entrypoint(spec.bundle_dir, spec.entrypoint)
            pandas_ready()  # the model may have imported pandas
            runner.check(outputs=spec.outputs, config=spec.config)
            packages = model_packages(str(Path(spec.bundle_dir).resolve()))
        except ModelError as err:
            message = str(err)
            outcomes = [
                TaskOutcome(task.task_id, False, 0.0, type(err).__name__, message, message)
                for task in spec.tasks
            ]
            return ChunkResult(outcomes, {}, worker, {})
        return _ChunkRun(spec, runner).run(on_task_start, worker, packages)


_Part: TypeAlias = "dict[str, list[Any]] | pa.Table"


class _OutputBuffer:
    """Rows of one output, collected task by task; column lists for one-row tasks."""

    __slots__ = ("columns", "counts", "keys", "lists", "name", "parts", "positions", "rows")

    def __init__(self, name: str) -> None:
        self.name = name
        self.positions: list[int] = []
        self.counts: list[int] = []
        self.parts: list[_Part] = []
        self.columns: dict[str, list[Any]] = {}
        self.keys: tuple[str, ...] = ()
        self.lists: list[list[Any]] = []
        self.rows = 0

    def add_row(self, position: int, row: dict[str, Any], keys: tuple[str, ...]) -> None:
        self.positions.append(position)
        self.counts.append(1)
        if keys == self.keys:
            for column, value in zip(self.lists, row.values(), strict=False):
                column.append(value)
        else:
            columns = self.columns
            for name in row:
                if name not in columns:
                    columns[name] = [None] * self.rows
            for name, column in columns.items():
                column.append(row.get(name))
            self.keys = tuple(columns)
            self.lists = list(columns.values())
        self.rows += 1

    def add_table(self, position: int, table: pa.Table) -> None:
        self._flush_rows()
        self.positions.append(position)
        self.counts.append(table.num_rows)
        self.parts.append(table)

    def _flush_rows(self) -> None:
        if self.rows:
            self.parts.append(self.columns)
            self.columns, self.keys, self.lists, self.rows = {}, (), [], 0

    def model_table(self) -> pa.Table:
        """The model's columns for every collected row, in collection order."""
        self._flush_rows()
        tables = [_part_table(self.name, part) for part in self.parts]
        if len(tables) <= 1:
            return tables[0] if tables else pa.table({})
        schema = tables[0].schema
        for table in tables[1:]:
            schema, conflicts = merge_schemas(schema, table.schema)
            if conflicts:
                raise OutputTypeError(f"output {self.name!r}: tasks disagree on column types")
        return pa.concat_tables([conform(table, schema) for table in tables])

    def segments(self) -> Iterator[tuple[int, pa.Table | dict[str, list[Any]]]]:
        """Each task's position and its own rows (to find the task that breaks a merge)."""
        self._flush_rows()
        segments = iter(self.positions)
        for part in self.parts:
            if isinstance(part, pa.Table):
                yield next(segments), part
                continue
            for row in range(len(next(iter(part.values())))):
                yield next(segments), {name: [values[row]] for name, values in part.items()}


_Staged: TypeAlias = "tuple[_OutputBuffer, dict[str, Any] | None, tuple[str, ...], pa.Table | None]"


def _part_table(output: str, part: _Part) -> pa.Table:
    if isinstance(part, pa.Table):
        return part
    return plain_types(
        pa.table({name: _scalar_column(output, name, values) for name, values in part.items()})
    )


def _scalar_column(output: str, name: str, values: list[Any]) -> pa.Array:
    """One column of one-row results; raises if its values are of several kinds or too big."""
    try:
        array = pa.array(values)
    except OverflowError:
        raise OutputTypeError(
            f"output {output!r}: column {name!r} holds an int outside the 64-bit range"
        ) from None
    if pa.types.is_floating(array.type) and bool in set(map(type, values)):
        # pyarrow turns True into 1.0 next to floats; bool and numbers never share a column
        raise OutputTypeError(f"output {output!r}: column {name!r} mixes bool and numbers")
    return array


class _ChunkRun:
    """State of one :func:`run_chunk` call."""

    def __init__(self, spec: ChunkSpec, runner: Runner) -> None:
        self.spec = spec
        self.runner = runner
        self.tasks = list(spec.tasks)
        self.buffers: dict[str, _OutputBuffer] = {}
        self.outcomes: list[TaskOutcome] = []
        self.log: list[str] = []
        self.checked: set[tuple[str, tuple[str, ...]]] = set()
        names: set[str] = set()
        for task in self.tasks:
            names.update(task.params)
        self.param_names = sorted(names)
        self.reserved = frozenset(names)
        self.bad_params = self.reserved & set(KEY_COLUMNS)

    def run(
        self, on_task_start: Callable[[int], None] | None, worker: str, packages: dict[str, str]
    ) -> ChunkResult:
        out, err = _Capture(TASK_LOG_CHARS), _Capture(TASK_LOG_CHARS)
        limit = self.spec.max_output_bytes
        run_model, config, stage = self.runner.run, self.spec.config, self._stage
        outcomes, bad_params = self.outcomes, self.bad_params
        for position, task in enumerate(self.tasks):
            if on_task_start is not None:
                on_task_start(position)
            saved = sys.stdout, sys.stderr
            start = perf_counter()
            sys.stdout, sys.stderr = out, err
            try:
                if bad_params:
                    self._check_params(task)
                staged = stage(run_model(task.params, task.seed, config))
                if limit is not None:
                    _check_output_size(task, staged, limit)
            except (Exception, SystemExit) as error:
                sys.stdout, sys.stderr = saved
                outcomes.append(self._failure(task, error, perf_counter() - start, out, err))
                continue
            finally:
                sys.stdout, sys.stderr = saved
            for buffer, row, keys, table in staged:
                if table is None:
                    buffer.add_row(position, row, keys)  # type: ignore[arg-type]
                else:
                    buffer.add_table(position, table)
            outcomes.append(TaskOutcome(task.task_id, True, perf_counter() - start))
            if out.written or err.written:
                self._collect(task, out, err)
        tables = self._tables()
        self._write_log()
        return ChunkResult(outcomes, tables, worker, packages)

    def _failure(
        self,
        task: ChunkTask,
        error: BaseException,
        duration: float,
        out: _Capture,
        err: _Capture,
    ) -> TaskOutcome:
        stderr = self._collect(task, out, err)
        return TaskOutcome(
            task.task_id,
            False,
            duration,
            type(error).__name__,
            str(error),
            _format_traceback(error),
            stderr[-STDERR_TAIL_CHARS:] if stderr else None,
        )

    def _check_params(self, task: ChunkTask) -> None:
        clash = sorted(self.bad_params & task.params.keys())
        if clash:
            raise ModelError(
                f"parameter(s) {', '.join(map(repr, clash))} collide with key columns",
                hint=f"rename them; reserved: {', '.join(KEY_COLUMNS)}",
            )

    def _stage(self, result: Mapping[str, Any]) -> list[_Staged]:
        """Convert every kept output of one task; nothing is committed unless all convert."""
        wanted = self.spec.outputs
        if wanted is None:
            names: Iterable[str] = result
        else:
            missing = [name for name in wanted if name not in result]
            if missing:
                raise ModelError(
                    f"model did not return requested output(s) {', '.join(map(repr, missing))}",
                    hint=f"it returned: {', '.join(map(repr, result)) or 'nothing'}",
                )
            names = wanted
        staged: list[_Staged] = []
        buffers, checked = self.buffers, self.checked
        for name in names:
            buffer = buffers.get(name)
            if buffer is None:
                buffer = buffers[name] = _OutputBuffer(check_output_name(name))
            value = result[name]
            row = scalar_row(value)
            if row is not None:
                keys = tuple(row)
                if keys != buffer.keys and (name, keys) not in checked:
                    check_columns(name, keys, self.reserved)
                    checked.add((name, keys))
                staged.append((buffer, row, keys, None))
            else:
                staged.append((buffer, None, (), to_table(name, value, reserved=self.reserved)))
        return staged

    def _collect(self, task: ChunkTask, out: _Capture, err: _Capture) -> str:
        """Move one task's captured text into the chunk log; return its stderr."""
        prefix = task.task_id[:8]
        stdout, stderr = out.getvalue(), err.getvalue()
        for stream, text in (("stdout", stdout), ("stderr", stderr)):
            self.log.extend(f"{prefix} {stream}: {line}\n" for line in text.splitlines())
        out.reset()
        err.reset()
        return stderr

    def _write_log(self) -> None:
        path = self.spec.log_path
        if path is None or not self.log:
            return
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("".join(self.log))
        except OSError as error:
            print(f"modelops: cannot append model output to {path}: {error}", file=sys.stderr)

    def _tables(self) -> dict[str, pa.Table]:
        models: dict[str, pa.Table] = {}
        failed: dict[int, TaskOutcome] = {}
        for name, buffer in self.buffers.items():
            try:
                models[name] = buffer.model_table()
            except (pa.ArrowException, TypeError, ValueError, OverflowError, OutputTypeError):
                models[name] = self._merge_dropping_failures(buffer, failed)
        try:
            return self._keyed_tables(models, failed)
        except _MixedKinds:
            # only a job built task by task gets here (a study refuses mixed kinds up front)
            clashes = _kind_clashes(self.tasks, self.outcomes, failed)
            for position, message in clashes.items():
                self._fail_late(position, failed, "OutputTypeError", message)
            return self._keyed_tables(models, failed)

    def _keyed_tables(
        self, models: dict[str, pa.Table], failed: dict[int, TaskOutcome]
    ) -> dict[str, pa.Table]:
        """Each output's table with the key and parameter columns, without ``failed`` tasks.

        Raises:
            _MixedKinds: a parameter's values are of several kinds among the kept tasks.
        """
        for position, outcome in failed.items():
            self.outcomes[position] = outcome
        tables: dict[str, pa.Table] = {}
        for name, buffer in self.buffers.items():
            if all(position in failed for position in buffer.positions):
                continue
            table = self._with_keys(buffer, models[name], failed)
            if failed:
                dropped = pa.array([self.tasks[p].task_id for p in failed], pa.string())
                table = table.filter(pc.invert(pc.is_in(table["task_id"], value_set=dropped)))
            tables[name] = table
        return tables

    def _merge_dropping_failures(
        self, buffer: _OutputBuffer, failed: dict[int, TaskOutcome]
    ) -> pa.Table:
        """Merge task by task; a task whose columns conflict with earlier tasks' fails."""
        schema: pa.Schema | None = None
        kept: list[pa.Table] = []
        positions: list[int] = []
        counts: list[int] = []
        for position, part in buffer.segments():
            try:
                table = _part_table(buffer.name, part)
            except (pa.ArrowException, TypeError, ValueError) as error:
                self._fail_late(position, failed, "ModelError", f"output {buffer.name!r}: {error}")
                continue
            except OutputTypeError as error:
                self._fail_late(position, failed, "OutputTypeError", str(error))
                continue
            if schema is None:
                schema = table.schema
            else:
                merged, conflicts = merge_schemas(schema, table.schema)
                if conflicts:
                    column, fixed = next(iter(conflicts.items()))
                    got = table.schema.field(column).type
                    message = type_conflict(buffer.name, column, fixed, got)
                    self._fail_late(position, failed, "OutputTypeError", message)
                    continue
                schema = merged
            kept.append(table)
            positions.append(position)
            counts.append(table.num_rows)
        buffer.positions, buffer.counts = positions, counts
        if schema is None:
            return pa.table({})
        return pa.concat_tables([conform(table, schema) for table in kept])

    def _fail_late(
        self, position: int, failed: dict[int, TaskOutcome], error_type: str, message: str
    ) -> None:
        """Turn the finished task at ``position`` into a failure (its rows do not fit)."""
        task = self.tasks[position]
        previous = self.outcomes[position]
        failed[position] = TaskOutcome(
            task.task_id, False, previous.duration, error_type, message, message
        )

    def _with_keys(
        self, buffer: _OutputBuffer, model: pa.Table, failed: dict[int, TaskOutcome]
    ) -> pa.Table:
        tasks = [self.tasks[position] for position in buffer.positions]
        arrays: list[pa.Array] = [
            pa.array([t.task_id for t in tasks], pa.string()),
            pa.array([t.param_id for t in tasks], pa.string()),
            pa.array([t.replicate for t in tasks], pa.int64()),
            pa.array([t.seed for t in tasks], pa.uint64()),
        ]
        if failed:  # their rows are dropped; their parameters must not spoil a column's type
            kept = [p not in failed for p in buffer.positions]
            values = [
                [t.params.get(n) if k else None for t, k in zip(tasks, kept, strict=True)]
                for n in self.param_names
            ]
        else:
            values = [[t.params.get(n) for t in tasks] for n in self.param_names]
        arrays.extend(_param_column(column) for column in values)
        if buffer.counts.count(1) != len(buffer.counts):
            take = pa.array(np.repeat(np.arange(len(tasks)), buffer.counts))
            arrays = [array.take(take) for array in arrays]
        names = [*KEY_COLUMNS, *self.param_names, *model.column_names]
        return pa.Table.from_arrays([*arrays, *model.columns], names=names)


class _Capture(io.TextIOBase):
    """A task's ``sys.stdout`` or ``sys.stderr``: keeps the first and last ``limit / 2``
    characters, so a model printing gigabytes costs a bounded amount of memory and log."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.half = limit // 2
        self.reset()

    def reset(self) -> None:
        """Forget everything written (between tasks)."""
        self.head: list[str] = []
        self.head_chars = 0
        self.tail: list[str] = []
        self.tail_chars = 0
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        size = len(text)
        self.written += size
        room = self.half - self.head_chars
        if room > 0:
            self.head.append(text[:room])
            self.head_chars += min(room, len(text))
            text = text[room:]
        if text:
            self.tail.append(text[-self.half :])
            self.tail_chars += min(len(text), self.half)
            if self.tail_chars > 2 * self.half:  # trim now and then, not on every write
                kept = "".join(self.tail)[-self.half :]
                self.tail, self.tail_chars = [kept], len(kept)
        return size

    def getvalue(self) -> str:
        """What was written, with the middle replaced by a note of its size when too long."""
        tail = "".join(self.tail)[-self.half :]
        cut = self.written - self.head_chars - len(tail)
        note = f"\n[... {cut} characters cut]\n" if cut > 0 else ""
        return "".join(self.head) + note + tail


def _check_output_size(task: ChunkTask, staged: list[_Staged], limit: int) -> None:
    """Fail a task whose rows, as the driver would hold them, exceed ``limit`` bytes."""
    per_row = _KEY_BYTES + len(task.task_id) + len(task.param_id)
    per_row += sum(len(v) if isinstance(v, str | bytes) else 8 for v in task.params.values())
    total = 0
    for _, row, _, table in staged:
        if table is None:
            values = row.values() if row is not None else ()
            total += per_row + sum(len(v) if isinstance(v, str | bytes) else 8 for v in values)
        else:
            total += table.nbytes + per_row * table.num_rows
    if total > limit:
        mb = 2**20
        raise ModelError(
            f"output {total / mb:.0f} MB exceeds the {limit / mb:.0f} MB limit per task "
            "(Arrow size of its rows, key columns included)",
            hint="return fewer or smaller rows, or raise the per-task output limit",
        )


class _MixedKinds(Exception):
    """A parameter column would mix kinds (bool, number, str)."""


def _param_column(values: list[Any]) -> pa.Array:
    """A parameter's column.

    Raises:
        _MixedKinds: the values are of several kinds (pyarrow would refuse them, or turn
            ``True`` into ``1.0`` next to floats); ints and floats mix into float64.
    """
    try:
        array = pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        raise _MixedKinds from None
    if pa.types.is_floating(array.type) and bool in set(map(type, values)):
        raise _MixedKinds
    return array


_KINDS: dict[type, str] = {bool: "bool", int: "number", float: "number", str: "str"}


def _kind_clashes(
    tasks: list[ChunkTask], outcomes: list[TaskOutcome], failed: dict[int, TaskOutcome]
) -> dict[int, str]:
    """Kept tasks with a parameter of another kind than in earlier kept tasks, and why."""
    first: dict[str, tuple[str, str]] = {}
    clashes: dict[int, str] = {}
    for position, task in enumerate(tasks):
        if not outcomes[position].ok or position in failed:
            continue
        for name, value in task.params.items():
            kind, type_name = _KINDS.get(type(value), "other"), type(value).__name__
            seen = first.setdefault(name, (kind, type_name))
            if seen[0] != kind:
                clashes[position] = (
                    f"parameter {name!r} is {type_name} in this task but {seen[1]} in earlier "
                    "tasks; its column needs one kind"
                )
                break
    return clashes


def _format_traceback(error: BaseException) -> str:
    """The traceback from the first frame outside the runtime (the model's own frames)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNTIME_DIRS):
        tb = tb.tb_next
    if tb is None:
        text = "".join(traceback.format_exception_only(error))
    else:
        text = "".join(traceback.format_exception(type(error), error, tb))
    return text[-_TRACEBACK_CHARS:]
