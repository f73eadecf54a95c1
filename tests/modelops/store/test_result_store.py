"""ResultStore end to end on real SQLite and Parquet: layout, commits, exactly-once reads."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

import modelops.store
from modelops.store import DoneTask, FailedTask, ResultStore
from modelops.store.shards import write_shard
from modelops_contracts.errors import StoreError

Task = tuple[str, str, int, int]


def hexid(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=32).hexdigest()


def make_tasks(n: int, start: int = 0) -> list[Task]:
    return [
        (hexid("t", i), hexid("p", i // 2), i % 2, 2**64 - 1 - i) for i in range(start, start + n)
    ]


JOBS: dict[str, list[Task]] = {}  # each job's tasks in order, by job id (reset per test)


def add_job(store: ResultStore, job_id: str, tasks: list[Task]) -> None:
    store.ledger.create_job(job_id, total=len(tasks), spec={"name": job_id})
    JOBS[job_id] = tasks


def seq(job_id: str, task: Task) -> int:
    return JOBS[job_id].index(task)


def ts_table(tasks: list[Task], value: float = 1.0, rows: int = 2) -> pa.Table:
    """A time-series output: ``rows`` rows per task."""
    out = [t for t in tasks for _ in range(rows)]
    return pa.table(
        {
            "task_id": [t[0] for t in out],
            "param_id": [t[1] for t in out],
            "replicate": [t[2] for t in out],
            "seed": pa.array([t[3] for t in out], pa.uint64()),
            "beta": [0.5] * len(out),
            "t": list(range(rows)) * len(tasks),
            "infected": [value] * len(out),
        }
    )


def done(tasks: list[Task], job_id: str = "j") -> list[DoneTask]:
    return [DoneTask(seq(job_id, t), t[0], duration=0.01, worker="w1", attempts=1) for t in tasks]


def fail(task: Task, *args: Any, job_id: str = "j", **kwargs: Any) -> FailedTask:
    return FailedTask(seq(job_id, task), task[0], task[1], task[2], task[3], *args, **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultStore]:
    JOBS.clear()
    with ResultStore(tmp_path / "a" / "store") as opened:
        yield opened


# -- opening ---------------------------------------------------------------------------------


def test_creates_layout_with_missing_parents(tmp_path: Path, store: ResultStore) -> None:
    root = tmp_path / "a" / "store"
    assert store.root == root
    assert store.ledger.path == root / "ledger.sqlite"
    assert store.bundles_dir == root / "bundles" and store.bundles_dir.is_dir()
    assert (root / "jobs").is_dir()
    assert store.job_dir("abc") == root / "jobs" / "abc"
    log = store.log_path("abc")
    assert log == root / "jobs" / "abc" / "job.log"
    assert not log.parent.exists()  # asking for a path creates nothing
    assert store.ensure_job_dir("abc") == log.parent and log.parent.is_dir()
    raw = sqlite3.connect(root / "ledger.sqlite")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.write_text("not a store")
    with pytest.raises(StoreError, match="not a directory") as info:
        ResultStore(path)
    assert str(path) in str(info.value)


def test_root_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create store directory"):
        ResultStore(tmp_path / "file" / "store")


@pytest.mark.parametrize("kind", ["directory", "garbage"])
def test_unusable_ledger_is_refused(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "store"
    root.mkdir()
    if kind == "directory":
        (root / "ledger.sqlite").mkdir()
    else:
        (root / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"ledger\.sqlite"):
        ResultStore(root)


def test_unwritable_root_is_refused() -> None:
    # /proc refuses new directories even to root, so this fails for every user
    with pytest.raises(StoreError, match="modelops-store"):
        ResultStore("/proc/modelops-store")


def test_reopen_sees_the_same_data(tmp_path: Path, store: ResultStore) -> None:
    add_job(store, "j", make_tasks(2))
    store.commit("j", {"ts": ts_table(make_tasks(2))}, done(make_tasks(2)), [])
    with ResultStore(tmp_path / "a" / "store") as again:
        assert again.read_results("j", "ts").height == 4


def test_public_names() -> None:
    assert set(modelops.store.__all__) == {
        "JOB_STATES",
        "TASK_STATUSES",
        "DoneTask",
        "FailedTask",
        "FailureRecord",
        "JobLike",
        "JobRecord",
        "JobState",
        "Ledger",
        "ResultStore",
        "ShardRecord",
        "RowCounts",
        "CachedTask",
        "TaskStatus",
        "default_store",
        "existing_store_root",
        "job_state",
        "job_status",
        "open_existing_store",
        "open_store",
        "read_job",
        "resolve_job",
    }
    assert len(set(modelops.store.__all__)) == len(modelops.store.__all__)
    for name in modelops.store.__all__:
        assert hasattr(modelops.store, name)


def test_importing_the_store_does_not_load_table_libraries() -> None:
    code = "import sys, modelops.store; print('polars' in sys.modules, 'pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- job files ---------------------------------------------------------------------------------


def test_write_job_file_replaces_atomically(store: ResultStore) -> None:
    path = store.write_job_file("j", '{"v": 1}')
    assert path == store.job_dir("j") / "job.json"
    store.write_job_file("j", '{"v": 2}')
    assert store.read_job_file("j") == '{"v": 2}'
    assert sorted(p.name for p in store.job_dir("j").iterdir()) == ["job.json"]
    with pytest.raises(StoreError, match="cannot read job file"):
        store.read_job_file("other")


# -- commit and read ---------------------------------------------------------------------------


def test_commit_then_read(store: ResultStore) -> None:
    tasks = make_tasks(6)
    add_job(store, "j", tasks)
    summary = pa.table({"task_id": [t[0] for t in tasks[:3]], "peak": [1.0, 2.0, 3.0]})
    first = store.commit("j", {"ts": ts_table(tasks[:3]), "summary": summary}, done(tasks[:3]), [])
    second = store.commit("j", {"ts": ts_table(tasks[3:])}, done(tasks[3:]), [])
    assert first is not None and second is not None and second > first
    shard = store.job_dir("j") / "outputs" / "ts" / f"part-{first:06d}.parquet"
    assert shard.is_file()

    frame = store.read_results("j", "ts")
    assert frame.columns == ["task_id", "param_id", "replicate", "seed", "beta", "t", "infected"]
    assert frame.height == 12
    assert set(frame["task_id"]) == {t[0] for t in tasks}
    assert sorted(frame["seed"].unique().to_list()) == sorted(t[3] for t in tasks)
    assert isinstance(store.scan_results("j", "ts"), pl.LazyFrame)
    assert store.output_counts("j") == {"summary": 3, "ts": 12}
    assert store.outputs("j") == ["summary", "ts"]
    assert store.ledger.counts("j")["done"] == 6


def test_empty_commit_is_a_no_op(store: ResultStore) -> None:
    add_job(store, "j", make_tasks(1))
    assert store.commit("j", {}, [], []) is None
    assert store.ledger.next_commit_id() == 1


def test_unknown_output_lists_the_available_ones(store: ResultStore) -> None:
    tasks = make_tasks(2)
    add_job(store, "j", tasks)
    with pytest.raises(StoreError, match=r"no output 'ts' \(available: none yet\)"):
        store.read_results("j", "ts")
    store.commit("j", {"ts": ts_table(tasks)}, done(tasks), [])
    with pytest.raises(StoreError, match=r"no output 'nope' \(available: ts\)"):
        store.read_results("j", "nope")
    with pytest.raises(StoreError, match="unknown job 'other'"):
        store.read_results("other", "ts")
    with pytest.raises(StoreError, match="unknown job"):
        store.output_counts("other")


def test_orphan_shard_from_a_crash_is_invisible_then_cleaned(store: ResultStore) -> None:
    tasks = make_tasks(4)
    add_job(store, "j", tasks)
    store.commit("j", {"ts": ts_table(tasks[:2])}, done(tasks[:2]), [])
    out_dir = store.job_dir("j") / "outputs" / "ts"
    # Crash after the rename, before the ledger transaction: the shard is on disk only.
    crashed_id = store.ledger.next_commit_id()
    orphan, _ = write_shard(out_dir, ts_table(tasks, value=99.0), crashed_id)
    stray, _ = write_shard(out_dir, ts_table(tasks, value=98.0), 999_999)
    leftover = out_dir / ".tmp-1234abcd-part-000009.parquet"
    leftover.write_bytes(b"half a file")

    frame = store.read_results("j", "ts")
    assert frame.height == 4 and 99.0 not in frame["infected"].to_list()
    assert store.output_counts("j") == {"ts": 4}
    assert store.ledger.counts("j") == {
        "pending": 2,
        "done": 2,
        "cached": 0,
        "failed": 0,
        "timeout": 0,
    }

    removed = store.clean_orphans()
    assert sorted(removed) == sorted([orphan, stray, leftover])
    assert sorted(p.name for p in out_dir.iterdir()) == ["part-000001.parquet"]
    assert store.read_results("j", "ts").height == 4


def test_rerun_after_crash_never_duplicates(store: ResultStore) -> None:
    tasks = make_tasks(3)
    add_job(store, "j", tasks)
    out_dir = store.job_dir("j") / "outputs" / "ts"
    out_dir.mkdir(parents=True)
    write_shard(out_dir, ts_table(tasks, value=1.0), store.ledger.next_commit_id())  # crashed
    store.commit("j", {"ts": ts_table(tasks, value=2.0)}, done(tasks), [])  # the re-run
    frame = store.read_results("j", "ts")
    assert frame.height == 6
    assert frame["infected"].unique().to_list() == [2.0]


def test_same_task_committed_twice_shows_newest_only(store: ResultStore) -> None:
    tasks = make_tasks(4)
    add_job(store, "j", tasks)
    store.commit("j", {"ts": ts_table(tasks, value=1.0, rows=3)}, done(tasks), [])
    store.commit("j", {"ts": ts_table(tasks[:2], value=2.0, rows=2)}, done(tasks[:2]), [])
    frame = store.read_results("j", "ts")
    per_task = dict(frame.group_by("task_id").len().rows())
    assert per_task == {tasks[0][0]: 2, tasks[1][0]: 2, tasks[2][0]: 3, tasks[3][0]: 3}
    newest = frame.filter(pl.col("task_id").is_in([t[0] for t in tasks[:2]]))
    assert newest["infected"].unique().to_list() == [2.0]
    assert store.output_counts("j") == {"ts": 10}


def test_cross_job_cache(store: ResultStore) -> None:
    a_tasks = make_tasks(4)
    b_tasks = make_tasks(4, start=2)  # shares tasks 2 and 3 with job a
    add_job(store, "a", a_tasks)
    add_job(store, "b", b_tasks)
    store.commit("a", {"ts": ts_table(a_tasks, value=1.0)}, done(a_tasks, "a"), [])
    store.ledger.index_commits()  # as the end of job a's run does

    shared = {t[0] for t in b_tasks[:2]}
    assert store.ledger.cached_elsewhere("b", [t[0] for t in b_tasks]) == shared
    fresh = b_tasks[2:]
    cached = [(0, b_tasks[0][0]), (1, b_tasks[1][0])]
    store.commit("b", {"ts": ts_table(fresh, value=5.0)}, done(fresh, "b"), [], cached=cached)

    counts = store.ledger.counts("b")
    assert (counts["done"], counts["cached"], counts["pending"]) == (2, 2, 0)
    frame = store.read_results("b", "ts")
    assert set(frame["task_id"]) == {t[0] for t in b_tasks}
    assert frame.height == 8
    from_a = frame.filter(pl.col("task_id").is_in(sorted(shared)))
    assert from_a["infected"].unique().to_list() == [1.0]  # rows live in job a's shard
    assert store.output_counts("b") == {"ts": 8}
    assert store.read_results("a", "ts").height == 8  # job a unaffected


def test_a_no_cache_rerun_in_another_job_keeps_each_jobs_rows(store: ResultStore) -> None:
    tasks = make_tasks(2)
    add_job(store, "a", tasks)
    add_job(store, "b", tasks)
    add_job(store, "c", tasks)
    store.commit("a", {"ts": ts_table(tasks, value=1.0)}, done(tasks, "a"), [])
    store.commit("b", {"ts": ts_table(tasks[:1], value=7.0)}, done(tasks[:1], "b"), [])
    store.ledger.index_commits()
    frame = store.read_results("a", "ts")
    assert frame.height == 4  # each task once, from the commit job a recorded
    values = dict(frame.group_by("task_id").agg(pl.col("infected").max()).rows())
    assert values == {tasks[0][0]: 1.0, tasks[1][0]: 1.0}
    assert store.read_results("b", "ts")["infected"].to_list() == [7.0, 7.0]
    # the cache index points at the newest rows
    cached = [(0, tasks[0][0]), (1, tasks[1][0])]
    store.commit("c", {}, [], [], cached=cached)
    values = dict(
        store.read_results("c", "ts").group_by("task_id").agg(pl.col("infected").max()).rows()
    )
    assert values == {tasks[0][0]: 7.0, tasks[1][0]: 1.0}


def test_failures_through_commit(store: ResultStore) -> None:
    tasks = make_tasks(3)
    add_job(store, "j", tasks)
    failed = [
        fail(tasks[1], "failed", "ZeroDivisionError", "division by zero", "tb", "out"),
        fail(tasks[2], "timeout", "TimeoutError", "over 60 s", attempts=2),
    ]
    store.commit("j", {"ts": ts_table(tasks[:1])}, done(tasks[:1]), failed)
    assert store.ledger.counts("j") == {
        "pending": 0,
        "done": 1,
        "cached": 0,
        "failed": 1,
        "timeout": 1,
    }
    records = store.ledger.failures("j")
    assert [(r.status, r.error_type, r.seed) for r in records] == [
        ("failed", "ZeroDivisionError", tasks[1][3]),
        ("timeout", "TimeoutError", tasks[2][3]),
    ]
    assert store.read_results("j", "ts").height == 2


def test_invalid_commits_leave_nothing_behind(store: ResultStore) -> None:
    tasks = make_tasks(2)
    add_job(store, "j", tasks)
    stranger = make_tasks(1, start=50)
    stranger_done = [DoneTask(2, stranger[0][0])]
    out_dir = store.job_dir("j") / "outputs" / "ts"
    cases = [
        ({"ts": ts_table(stranger)}, stranger_done, [], "position 2, outside job j"),
        ({"ts": ts_table(tasks)}, done(tasks[:1]), [], "not committed as done"),
        ({"bad/name": ts_table(tasks)}, done(tasks), [], "invalid output name"),
        ({}, done(tasks[:1]), [fail(tasks[0], "failed", "E", "m")], "more than once"),
        ({}, [], [fail(tasks[0], "done", "E", "m")], "not failed/timeout"),
    ]
    for tables, ok, bad, message in cases:
        with pytest.raises(StoreError, match=message):
            store.commit("j", tables, ok, bad)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []
    assert store.ledger.counts("j")["pending"] == 2
    with pytest.raises(StoreError, match="no results in the store"):
        store.commit("j", {}, [], [], cached=[(0, tasks[0][0])])


def test_commit_refused_while_another_store_holds_the_run_lock(
    tmp_path: Path, store: ResultStore
) -> None:
    tasks = make_tasks(1)
    add_job(store, "j", tasks)
    with ResultStore(store.root) as other, other.run_lock():
        with pytest.raises(StoreError, match="in use by another `mops run`"):
            store.commit("j", {"ts": ts_table(tasks)}, done(tasks), [])
        with pytest.raises(StoreError, match="in use"):
            store.clean_orphans()
    assert store.commit("j", {"ts": ts_table(tasks)}, done(tasks), []) == 1
    with store.run_lock():
        assert store.commit("j", {"ts": ts_table(tasks)}, done(tasks), []) == 2
        assert store.clean_orphans() == []


def test_export_results(tmp_path: Path, store: ResultStore) -> None:
    tasks = make_tasks(2)
    add_job(store, "j", tasks)
    store.commit("j", {"ts": ts_table(tasks)}, done(tasks), [])
    assert store.export_results("j", "ts", tmp_path / "out.parquet") == 4
    assert pl.read_parquet(tmp_path / "out.parquet").height == 4
    assert store.export_results("j", "ts", tmp_path / "out.txt", fmt="csv") == 4
    assert pl.read_csv(tmp_path / "out.txt").height == 4
    with pytest.raises(StoreError, match="cannot export"):
        store.export_results("j", "ts", tmp_path / "out.xlsx")


def test_reader_process_while_writer_commits(tmp_path: Path, store: ResultStore) -> None:
    """A second process reads during commits: never an error, a duplicate or a lost row."""
    n_batches, per_batch = 12, 50
    tasks = make_tasks(n_batches * per_batch)
    add_job(store, "j", tasks)
    store.ledger.set_job_state("j", "running")
    reader = textwrap.dedent(
        """
        import sys, time
        from modelops.store import ResultStore
        from modelops_contracts.errors import StoreError
        store = ResultStore(sys.argv[1])
        reads, last, deadline = 0, 0, time.time() + 120
        while time.time() < deadline:
            state = store.ledger.get_job("j").state
            counts = store.ledger.counts("j")
            try:
                frame = store.read_results("j", "ts")
            except StoreError as exc:
                assert "available: none yet" in str(exc), exc
                continue
            per_task = frame.group_by("task_id").len()["len"]
            assert per_task.min() == 2 and per_task.max() == 2, "duplicated rows"
            assert frame.height >= last, "rows went missing"
            assert frame.height >= 2 * (counts["done"] - 0), "ledger ahead of rows"
            last, reads = frame.height, reads + 1
            if state == "completed":
                break
        print(reads, last)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", reader, str(store.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with store.run_lock():
            for b in range(n_batches):
                batch = tasks[b * per_batch : (b + 1) * per_batch]
                redo = tasks[: per_batch // 2] if b % 3 == 2 else []  # re-commits: newest wins
                both = batch + redo
                store.commit("j", {"ts": ts_table(both, value=float(b))}, done(both), [])
        store.ledger.set_job_state("j", "completed")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    reads, last = map(int, out.split())
    assert reads >= 1
    assert last == 2 * len(tasks)


def test_output_schema_is_the_newest_recorded_shards(store: ResultStore) -> None:
    tasks = make_tasks(6)
    add_job(store, "j", tasks)
    add_job(store, "other", make_tasks(2, start=10))
    assert store.output_schema("j", "ts") is None
    store.commit("j", {"ts": ts_table(tasks[:2])}, done(tasks[:2]), [])
    wider = ts_table(tasks[2:4]).append_column("extra", pa.array([None] * 4, pa.string()))
    second = store.commit("j", {"ts": wider}, done(tasks[2:4]), [])
    others = make_tasks(2, start=10)
    add_job(store, "other", others)
    store.commit("other", {"ts": ts_table(others)}, done(others, "other"), [])
    schema = store.output_schema("j", "ts")
    assert schema is not None and schema.equals(wider.schema) and schema.metadata is None
    assert store.output_schema("j", "summary") is None
    # a deleted newest shard: the one before still tells the types
    assert second is not None
    (store.job_dir("j") / "outputs" / "ts" / f"part-{second:06d}.parquet").unlink()
    older = store.output_schema("j", "ts")
    assert older is not None and older.equals(ts_table(tasks[:2]).schema)
