"""Run a chunk of tasks inside a worker and return their outcomes and output tables.

Contract of :func:`run_chunk`:

- Every task gets exactly one :class:`TaskOutcome`, in the order of ``spec.tasks``. A task fails
  alone: an exception in the model, bad parameters, a missing requested output or an output that
  cannot be turned into a table marks that task failed and the chunk goes on. If the entrypoint
  cannot be loaded at all, every task fails with that error.
- ``tables[output]`` holds the rows of the chunk's successful tasks only, in task order, with the
  leading columns ``task_id`` (string), ``param_id`` (string), ``replicate`` (int64), ``seed``
  (uint64), then one column per parameter name (sorted; the task's own value), then the model's
  columns. With ``spec.outputs`` set, only those outputs are kept; ``None`` keeps all. An
  output that no successful task returned has no entry.
- What the model prints to ``sys.stdout``/``sys.stderr`` never reaches the terminal: it is
  appended to ``spec.log_path`` (one write per chunk, each line tagged with the task id's first 8
  characters and the stream), and a failed task carries the last 2 KB of its stderr. Output
  written below Python (C extensions writing to file descriptors) is not captured.
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
from modelops.runtime._packages import model_packages
from modelops.runtime.loader import Runner, load_entrypoint
from modelops.runtime.spec import ChunkResult, ChunkSpec, ChunkTask, TaskOutcome
from modelops.runtime.tables import (
    check_columns,
    check_output_name,
    plain_types,
    scalar_row,
    to_table,
)
from modelops_contracts.errors import ModelError

__all__ = ["ChunkResult", "ChunkSpec", "ChunkTask", "TaskOutcome", "run_chunk"]

STDERR_TAIL_CHARS = 2048
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
        tables = [_part_table(part) for part in self.parts]
        if len(tables) == 1:
            return tables[0]
        return plain_types(pa.concat_tables(tables, promote_options="permissive"))

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


def _part_table(part: _Part) -> pa.Table:
    if isinstance(part, pa.Table):
        return part
    return plain_types(pa.table({name: pa.array(values) for name, values in part.items()}))


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
        out, err = io.StringIO(), io.StringIO()
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
            if out.tell() or err.tell():
                self._collect(task, out, err)
        tables = self._tables()
        self._write_log()
        return ChunkResult(outcomes, tables, worker, packages)

    def _failure(
        self,
        task: ChunkTask,
        error: BaseException,
        duration: float,
        out: io.StringIO,
        err: io.StringIO,
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

    def _collect(self, task: ChunkTask, out: io.StringIO, err: io.StringIO) -> str:
        """Move one task's captured text into the chunk log; return its stderr."""
        prefix = task.task_id[:8]
        stdout, stderr = out.getvalue(), err.getvalue()
        for stream, text in (("stdout", stdout), ("stderr", stderr)):
            self.log.extend(f"{prefix} {stream}: {line}\n" for line in text.splitlines())
        for buffer in (out, err):
            buffer.seek(0)
            buffer.truncate()
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
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                models[name] = self._merge_dropping_failures(buffer, failed)
        if failed:
            for position, outcome in failed.items():
                self.outcomes[position] = outcome
        tables: dict[str, pa.Table] = {}
        for name, buffer in self.buffers.items():
            if all(position in failed for position in buffer.positions):
                continue
            table = self._with_keys(buffer, models[name])
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
                table = _part_table(part)
                merged = (
                    table.schema
                    if schema is None
                    else pa.unify_schemas([schema, table.schema], promote_options="permissive")
                )
            except (pa.ArrowException, TypeError, ValueError) as error:
                message = (
                    f"output {buffer.name!r}: columns do not match earlier tasks in the chunk: "
                    f"{error}"
                )
                task = self.tasks[position]
                previous = self.outcomes[position]
                failed[position] = TaskOutcome(
                    task.task_id, False, previous.duration, "ModelError", message, message
                )
                continue
            schema = merged
            kept.append(table)
            positions.append(position)
            counts.append(table.num_rows)
        buffer.positions, buffer.counts = positions, counts
        if not kept:
            return pa.table({})
        return plain_types(pa.concat_tables(kept, promote_options="permissive"))

    def _with_keys(self, buffer: _OutputBuffer, model: pa.Table) -> pa.Table:
        tasks = [self.tasks[position] for position in buffer.positions]
        arrays: list[pa.Array] = [
            pa.array([t.task_id for t in tasks], pa.string()),
            pa.array([t.param_id for t in tasks], pa.string()),
            pa.array([t.replicate for t in tasks], pa.int64()),
            pa.array([t.seed for t in tasks], pa.uint64()),
        ]
        arrays.extend(_param_column([t.params.get(n) for t in tasks]) for n in self.param_names)
        if buffer.counts.count(1) != len(buffer.counts):
            take = pa.array(np.repeat(np.arange(len(tasks)), buffer.counts))
            arrays = [array.take(take) for array in arrays]
        names = [*KEY_COLUMNS, *self.param_names, *model.column_names]
        return pa.Table.from_arrays([*arrays, *model.columns], names=names)


def _param_column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        # Values of mixed kinds (plain-function jobs only): keep them readable as text.
        return pa.array([None if value is None else str(value) for value in values], pa.string())


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
