"""Running chunks of tasks in a worker: outcomes, tables, captured prints, provenance."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from modelops.runtime import ChunkResult, ChunkSpec, ChunkTask, run_chunk, unload_bundles
from modelops.runtime.spec import ChunkTasks, TaskOutcome, TaskOutcomes

MODEL = """
import sys
import numpy as np
import pyarrow as pa
from modelops.model import Model, Parameter, Scenario


def one_row(params, seed):
    return {"summary": {"value": params["x"] * 2, "label": f"s{seed}"}}


def as_lists(params, seed):
    return {"summary": {"value": [params["x"] * 2], "label": [f"s{seed}"]}}


def as_arrow(params, seed):
    return {"summary": pa.table({"value": [params["x"] * 2], "label": [f"s{seed}"]})}


def series(params, seed):
    n = params["n"]
    return {
        "series": {"t": np.arange(n), "y": np.full(n, float(seed))},
        "summary": {"total": n},
    }


def flaky(params, seed):
    print(f"running x={params['x']}")
    if params["x"] == 2:
        print("about to fail", file=sys.stderr)
        raise RuntimeError("x=2 is cursed")
    if params["x"] == 3:
        print("E" * 3000 + "END", file=sys.stderr, end="")
        raise ValueError("noisy failure")
    return {"summary": {"value": params["x"]}, "extra": {"e": 1}}


def partial(params, seed):
    out = {"a": {"v": 1}}
    if params["x"] != 1:
        out["b"] = {"w": 2}
    return out


def drifting(params, seed):
    value = "text" if params["x"] == 1 else params["x"]
    return {"summary": {"value": value}, "other": {"k": params["x"]}}


def clashing(params, seed):
    if params["x"] == 1:
        return {"summary": {"x": 5}}
    return {"summary": {"value": 1}}


def exits(params, seed):
    raise SystemExit(3)


VALUES = {"int": 1, "str": "x", "bool": True, "float": 2.5, "big": 2**70, "none": None}


def typed(params, seed):
    row = {"v": VALUES[params["kind"]], "n": params["i"]}
    return {"summary": {k: [v] for k, v in row.items()} if params["as_list"] else row}


class Counter(Model):
    parameters = (Parameter("x", 0, 10), Parameter("n", 1, 5, kind="int", default=2))
    scenarios = (Scenario("double", params={"n": 4}),)

    def simulate(self, params, seed):
        assert type(params["n"]) is int
        return {"summary": {"n_used": params["n"], "days": self.config.get("days")}}
"""


@pytest.fixture(autouse=True)
def _clean_loader() -> Iterator[None]:
    unload_bundles()
    yield
    unload_bundles()


@pytest.fixture
def bundle(tmp_path: Path) -> str:
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "models.py").write_text(textwrap.dedent(MODEL))
    return str(root)


def tid(i: int) -> str:
    return hashlib.blake2b(f"task{i}".encode(), digest_size=32).hexdigest()


def make_tasks(params: list[dict[str, Any]]) -> list[ChunkTask]:
    return [
        ChunkTask(
            index=10 + i,
            task_id=tid(i),
            param_id=f"p{i // 2}",
            replicate=i % 2,
            seed=2**32 - 1 - i,
            params=p,
        )
        for i, p in enumerate(params)
    ]


def run(
    bundle: str,
    func: str,
    params: list[dict[str, Any]],
    outputs: tuple[str, ...] | None = None,
    **kwargs: Any,
) -> ChunkResult:
    spec = ChunkSpec(bundle, f"models.{func}", outputs, None, make_tasks(params), **kwargs)
    return run_chunk(spec)


def test_key_columns_params_then_model_columns(bundle: str) -> None:
    result = run(bundle, "one_row/baseline", [{"x": 1, "b": "u"}, {"x": 2, "b": "v"}])
    assert all(o.ok for o in result.outcomes)
    table = result.tables["summary"]
    assert table.schema == pa.schema(
        [
            ("task_id", pa.string()),
            ("param_id", pa.string()),
            ("replicate", pa.int64()),
            ("seed", pa.uint64()),
            ("b", pa.string()),
            ("x", pa.int64()),
            ("value", pa.int64()),
            ("label", pa.string()),
        ]
    )
    assert table.to_pylist() == [
        {"task_id": tid(0), "param_id": "p0", "replicate": 0, "seed": 2**32 - 1, "b": "u",
         "x": 1, "value": 2, "label": f"s{2**32 - 1}"},
        {"task_id": tid(1), "param_id": "p0", "replicate": 1, "seed": 2**32 - 2, "b": "v",
         "x": 2, "value": 4, "label": f"s{2**32 - 2}"},
    ]  # fmt: skip


def test_multi_row_outputs_repeat_the_keys(bundle: str) -> None:
    result = run(bundle, "series/baseline", [{"n": 3}, {"n": 0}, {"n": 2}])
    series = result.tables["series"]
    assert series.column("task_id").to_pylist() == [tid(0)] * 3 + [tid(2)] * 2
    assert series.column("t").to_pylist() == [0, 1, 2, 0, 1]
    assert series.column("n").to_pylist() == [3, 3, 3, 2, 2]
    assert series.column("y").to_pylist() == [float(2**32 - 1)] * 3 + [float(2**32 - 3)] * 2
    assert result.tables["summary"].column("total").to_pylist() == [3, 0, 2]


@pytest.mark.parametrize("general", ["as_lists", "as_arrow"])
def test_one_row_fast_path_matches_general_path(bundle: str, general: str) -> None:
    params = [{"x": x} for x in (1, 2, 3, 4)]
    fast = run(bundle, "one_row/baseline", params).tables["summary"]
    slow = run(bundle, f"{general}/baseline", params).tables["summary"]
    assert fast.equals(slow)
    assert fast.schema == slow.schema


def test_failures_are_per_task_and_the_chunk_goes_on(bundle: str, tmp_path: Path) -> None:
    result = run(bundle, "flaky/baseline", [{"x": 1}, {"x": 2}, {"x": 4}])
    ok = [o.ok for o in result.outcomes]
    assert ok == [True, False, True]
    failed = result.outcomes[1]
    assert failed.task_id == tid(1)
    assert (failed.error_type, failed.message) == ("RuntimeError", "x=2 is cursed")
    assert failed.traceback is not None
    assert "in flaky" in failed.traceback and "chunk.py" not in failed.traceback
    assert failed.traceback.rstrip().endswith("RuntimeError: x=2 is cursed")
    assert failed.stderr_tail == "about to fail\n"
    assert result.outcomes[0].stderr_tail is None and result.outcomes[0].error_type is None
    assert result.tables["summary"].column("task_id").to_pylist() == [tid(0), tid(2)]
    assert result.tables["extra"].num_rows == 2


def test_stderr_tail_is_the_last_two_kilobytes(bundle: str) -> None:
    outcome = run(bundle, "flaky/baseline", [{"x": 3}]).outcomes[0]
    assert outcome.stderr_tail is not None
    assert len(outcome.stderr_tail) == 2048
    assert outcome.stderr_tail.endswith("EEEND")


def test_missing_requested_output_fails_that_task_only(bundle: str) -> None:
    result = run(bundle, "partial/baseline", [{"x": 0}, {"x": 1}, {"x": 2}], outputs=("a", "b"))
    assert [o.ok for o in result.outcomes] == [True, False, True]
    assert result.outcomes[1].error_type == "ModelError"
    assert "did not return requested output(s) 'b'" in (result.outcomes[1].message or "")
    assert result.tables["a"].column("x").to_pylist() == [0, 2]
    assert result.tables["b"].column("x").to_pylist() == [0, 2]


def test_only_requested_outputs_are_kept(bundle: str) -> None:
    result = run(bundle, "partial/baseline", [{"x": 0}], outputs=("b",))
    assert list(result.tables) == ["b"]
    everything = run(bundle, "partial/baseline", [{"x": 0}, {"x": 1}])
    assert sorted(everything.tables) == ["a", "b"]
    assert everything.tables["b"].num_rows == 1


def test_conflicting_types_fail_the_late_task_in_every_output(bundle: str) -> None:
    result = run(bundle, "drifting/baseline", [{"x": 0}, {"x": 1}, {"x": 2}])
    assert [o.ok for o in result.outcomes] == [True, False, True]
    assert "output 'summary'" in (result.outcomes[1].message or "")
    assert result.tables["summary"].column("value").to_pylist() == [0, 2]
    assert result.tables["other"].column("k").to_pylist() == [0, 2]


def test_column_named_like_a_parameter_fails_the_task(bundle: str) -> None:
    result = run(bundle, "clashing/baseline", [{"x": 0}, {"x": 1}])
    assert [o.ok for o in result.outcomes] == [True, False]
    assert "column 'x' collides with the parameter" in (result.outcomes[1].message or "")


def test_parameter_named_like_a_key_column_fails(bundle: str) -> None:
    result = run(bundle, "one_row/baseline", [{"x": 1, "seed": 3}, {"x": 1}])
    assert [o.ok for o in result.outcomes] == [False, True]
    assert "'seed' collide with key columns" in (result.outcomes[0].message or "")


def test_system_exit_in_the_model_fails_the_task(bundle: str) -> None:
    outcome = run(bundle, "exits/baseline", [{"x": 1}]).outcomes[0]
    assert (outcome.ok, outcome.error_type) == (False, "SystemExit")


def test_model_subclass_gets_scenario_patch_and_config(bundle: str) -> None:
    tasks = make_tasks([{"x": 1.0}, {"x": 2, "n": 3}, {"x": 11}])
    spec = ChunkSpec(bundle, "models.Counter/double", None, {"days": 7}, tasks)
    result = run_chunk(spec)
    assert [o.ok for o in result.outcomes] == [True, True, False]
    assert "outside" in (result.outcomes[2].message or "")
    summary = result.tables["summary"]
    assert summary.column("n_used").to_pylist() == [4, 4]
    assert summary.column("days").to_pylist() == [7, 7]
    assert summary.column("n").to_pylist() == [None, 3]
    assert summary.column("x").to_pylist() == [1.0, 2.0]


def test_prints_go_to_the_log_not_the_terminal(
    bundle: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "logs" / "model.log"
    log.parent.mkdir()
    log.write_text("earlier\n")
    run(bundle, "flaky/baseline", [{"x": 1}, {"x": 2}], log_path=str(log))
    out, err = capfd.readouterr()
    assert "running" not in out + err and "about to fail" not in out + err
    assert log.read_text().splitlines() == [
        "earlier",
        f"{tid(0)[:8]} stdout: running x=1",
        f"{tid(1)[:8]} stdout: running x=2",
        f"{tid(1)[:8]} stderr: about to fail",
    ]


def test_prints_without_log_path_are_dropped(
    bundle: str, capfd: pytest.CaptureFixture[str]
) -> None:
    run(bundle, "flaky/baseline", [{"x": 1}])
    out, err = capfd.readouterr()
    assert "running" not in out + err


def test_on_task_start_gets_positions(bundle: str) -> None:
    seen: list[int] = []
    spec = ChunkSpec(bundle, "models.one_row/baseline", None, None, make_tasks([{"x": 1}] * 3))
    run_chunk(spec, seen.append)
    assert seen == [0, 1, 2]


def test_import_failure_fails_every_task(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    root.mkdir()
    (root / "models.py").write_text("import scipyx\n")
    result = run(str(root), "f/baseline", [{"x": 1}, {"x": 2}])
    assert [o.ok for o in result.outcomes] == [False, False]
    assert "No module named 'scipyx'" in (result.outcomes[0].message or "")
    assert result.tables == {}


def test_worker_and_packages(bundle: str) -> None:
    result = run(bundle, "one_row/baseline", [{"x": 1}])
    assert result.worker == f"{socket.gethostname()}:{os.getpid()}"
    assert {"numpy", "pyarrow", "modelops"} <= set(result.packages)
    assert result.packages["numpy"] == __import__("numpy").__version__


def test_spec_and_result_pickle(bundle: str) -> None:
    spec = ChunkSpec(bundle, "models.series/baseline", None, None, make_tasks([{"n": 2}]))
    assert pickle.loads(pickle.dumps(spec)) == spec
    as_tuple = ChunkSpec(bundle, "m.f/baseline", ("a",), {"d": 1}, tuple(spec.tasks), "x.log")
    assert pickle.loads(pickle.dumps(as_tuple)) == as_tuple
    task = spec.tasks[0]
    assert pickle.loads(pickle.dumps(task)) == task
    result = run_chunk(spec)
    back = pickle.loads(pickle.dumps(result))
    assert isinstance(back.outcomes, TaskOutcomes)  # columns on the wire
    assert list(back.outcomes) == result.outcomes
    assert back.tables["series"].equals(result.tables["series"])


def test_columns_on_the_wire_read_as_the_objects() -> None:
    tasks = ChunkTasks(["a", "b", "c"], ["p", "p", "q"], [0, 1, 0], [7, 8, 2**64 - 1],
                       [{"x": 1}, {"x": 1}, {"x": 2}])  # fmt: skip
    assert (
        list(tasks)
        == [tasks[0], tasks[1], tasks[2]]
        == tasks[:]
        == [tasks[-3], tasks[1], tasks[-1]]
    )
    assert tasks[2] == ChunkTask(2, "c", "q", 0, 2**64 - 1, {"x": 2})
    with pytest.raises(IndexError):
        tasks[3]
    spec = ChunkSpec("b", "m.f/baseline", None, None, tasks)
    back = pickle.loads(pickle.dumps(spec))
    assert list(back.tasks) == list(tasks)
    outcomes = [
        TaskOutcome("a", True, 0.5),
        TaskOutcome("b", False, 0.25, "ValueError", "bad", "tb", "err"),
        TaskOutcome("c", True, 0.125),
    ]
    columns = TaskOutcomes.of(outcomes)
    assert (columns.durations, columns.errors) == (
        [0.5, 0.25, 0.125],
        {1: ("ValueError", "bad", "tb", "err")},
    )
    assert TaskOutcomes.of(columns) is columns
    assert list(pickle.loads(pickle.dumps(ChunkResult(outcomes))).outcomes) == outcomes
    assert columns[1] == outcomes[1] and columns[-1] == outcomes[2]


# -- one type per column ------------------------------------------------------------------------


def _typed(bundle: str, kinds: list[str], as_list: bool) -> ChunkResult:
    sets = [{"kind": kind, "as_list": as_list, "i": i} for i, kind in enumerate(kinds)]
    return run(bundle, "typed/baseline", sets)


@pytest.mark.parametrize("as_list", [False, True], ids=["row", "columns"])
@pytest.mark.parametrize(
    ("first", "late", "fixed", "got"),
    [
        ("int", "str", "int64", "string"),
        ("int", "bool", "int64", "bool"),
        ("bool", "int", "bool", "int64"),
        ("float", "bool", "double", "bool"),
        ("str", "float", "string", "double"),
    ],
)
def test_a_task_of_another_type_fails_alone(
    bundle: str, as_list: bool, first: str, late: str, fixed: str, got: str
) -> None:
    result = _typed(bundle, [first, late, first], as_list)
    assert [o.ok for o in result.outcomes] == [True, False, True]
    failed = result.outcomes[1]
    assert failed.error_type == "OutputTypeError"
    assert f"output 'summary': column 'v' is {got} here but {fixed}" in (failed.message or "")
    table = result.tables["summary"]
    assert table.column("n").to_pylist() == [0, 2]
    assert str(table.schema.field("v").type) == fixed


@pytest.mark.parametrize("as_list", [False, True], ids=["row", "columns"])
def test_ints_widen_to_floats_and_nulls_join_any_type(bundle: str, as_list: bool) -> None:
    result = _typed(bundle, ["int", "float", "none", "int"], as_list)
    assert all(o.ok for o in result.outcomes)
    column = result.tables["summary"].column("v")
    assert column.type == pa.float64() and column.to_pylist() == [1.0, 2.5, None, 1.0]
    later = _typed(bundle, ["none", "str"], as_list).tables["summary"].column("v")
    assert later.type == pa.string() and later.to_pylist() == [None, "x"]


@pytest.mark.parametrize("as_list", [False, True], ids=["row", "columns"])
def test_an_int_beyond_64_bits_fails_its_task(bundle: str, as_list: bool) -> None:
    result = _typed(bundle, ["int", "big", "int"], as_list)
    assert [o.ok for o in result.outcomes] == [True, False, True]
    failed = result.outcomes[1]
    assert failed.error_type == "OutputTypeError"
    assert "output 'summary': column 'v' holds an int outside the 64-bit range" in (
        failed.message or ""
    )
    assert result.tables["summary"].column("v").to_pylist() == [1, 1]


def test_a_parameter_of_another_kind_in_a_chunk_fails_that_task(bundle: str) -> None:
    # a study refuses this up front; a job built task by task reaches the runtime with it
    result = run(bundle, "partial/baseline", [{"x": 0}, {"x": "a"}, {"x": 2.5}, {"x": True}])
    assert [o.ok for o in result.outcomes] == [True, False, True, False]
    assert {o.error_type for o in result.outcomes[1::2]} == {"OutputTypeError"}
    assert "parameter 'x' is str in this task but int" in (result.outcomes[1].message or "")
    assert "parameter 'x' is bool in this task but int" in (result.outcomes[3].message or "")
    for output in ("a", "b"):
        column = result.tables[output].column("x")
        assert column.type == pa.float64() and column.to_pylist() == [0.0, 2.5]
