"""The SQLite ledger on a real database file: jobs, tasks, statuses, flags, seeds."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelops.store import DoneTask, FailedTask, Ledger
from modelops.store.ledger import SCHEMA_VERSION
from modelops_contracts.errors import StoreError


def hexid(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=32).hexdigest()


def rows(n: int, start: int = 0) -> list[tuple[str, str, int, int]]:
    return [(hexid("t", i), hexid("p", i // 3), i % 3, 1000 + i) for i in range(start, start + n)]


def registered(path: Path, job_id: str) -> list[tuple[str, str, int, int]]:
    """The job's tasks in registration order, read with a separate connection."""
    raw = sqlite3.connect(path)
    try:
        return raw.execute(
            "SELECT t.task_id, t.param_id, t.replicate, t.seed FROM tasks AS t "
            "JOIN jobs AS j ON j.job_key = t.job_key WHERE j.job_id = ? ORDER BY t.seq",
            (job_id,),
        ).fetchall()
    finally:
        raw.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as led:
        yield led


def test_wal_mode_and_schema_version(tmp_path: Path, ledger: Ledger) -> None:
    raw = sqlite3.connect(tmp_path / "ledger.sqlite")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        job_columns = {r[1] for r in raw.execute("PRAGMA table_info(jobs)")}
    finally:
        raw.close()
    assert {"jobs", "tasks", "commits", "shards", "results"} <= tables
    assert "content_key" in job_columns


def test_newer_schema_is_refused(tmp_path: Path, ledger: Ledger) -> None:
    raw = sqlite3.connect(tmp_path / "ledger.sqlite")
    raw.execute("PRAGMA user_version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="schema v99"):
        Ledger(tmp_path / "ledger.sqlite")


def test_create_job_is_idempotent_and_keeps_tasks(ledger: Ledger) -> None:
    assert ledger.create_job("job-1", total=3, spec={"study": "sir"}) is False
    assert ledger.add_tasks("job-1", rows(3)) == 3
    assert ledger.create_job("job-1", total=3, spec={"other": 1}) is True
    job = ledger.get_job("job-1")
    assert job is not None
    assert job.spec == {"study": "sir"}
    assert job.total == 3
    assert job.state == "created"
    assert job.started_at is None
    assert ledger.counts("job-1")["pending"] == 3


def test_get_and_list_jobs(ledger: Ledger) -> None:
    assert ledger.get_job("nope") is None
    for name in ("b", "a", "c"):
        ledger.create_job(name, total=0, spec={})
    assert [j.job_id for j in ledger.list_jobs()] == ["b", "a", "c"]


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", "x" * 200, "a b"])
def test_unsafe_job_ids_are_rejected(ledger: Ledger, bad: str) -> None:
    with pytest.raises(StoreError, match="invalid job id"):
        ledger.create_job(bad, total=0, spec={})


def test_unknown_job_raises_everywhere(ledger: Ledger) -> None:
    for call in (
        lambda: ledger.counts("x"),
        lambda: ledger.add_tasks("x", rows(1)),
        lambda: ledger.set_job_state("x", "running"),
        lambda: ledger.request_cancel("x"),
        lambda: ledger.cancel_requested("x"),
        lambda: ledger.failures("x"),
    ):
        with pytest.raises(StoreError, match="unknown job 'x'"):
            call()


def test_set_job_state_sets_timestamps(ledger: Ledger) -> None:
    ledger.create_job("j", total=0, spec={})
    ledger.set_job_state("j", "running")
    job = ledger.get_job("j")
    assert job is not None and job.state == "running"
    assert job.started_at is not None and job.finished_at is None
    end = datetime(2030, 1, 2, tzinfo=UTC)
    ledger.set_job_state("j", "completed", finished_at=end)
    job = ledger.get_job("j")
    assert job is not None and job.state == "completed" and job.finished_at == end
    ledger.set_job_state("j", "running")
    job = ledger.get_job("j")
    assert job is not None and job.finished_at is None
    with pytest.raises(StoreError, match="unknown job state"):
        ledger.set_job_state("j", "exploded")  # type: ignore[arg-type]


def test_update_job_spec_merges_nested_dicts(ledger: Ledger) -> None:
    ledger.create_job("j", total=0, spec={"study": "sir", "provenance": {"host": "a"}})
    merged = ledger.update_job_spec("j", {"provenance": {"git": "abc"}, "n": 2})
    assert merged == {"study": "sir", "provenance": {"host": "a", "git": "abc"}, "n": 2}
    job = ledger.get_job("j")
    assert job is not None and job.spec == merged
    with pytest.raises(StoreError, match="not plain JSON"):
        ledger.update_job_spec("j", {"bad": object()})


def test_add_tasks_ignores_duplicates_and_keeps_order(tmp_path: Path, ledger: Ledger) -> None:
    ledger.create_job("j", total=75_000, spec={})
    first = rows(55_000)
    assert ledger.add_tasks("j", iter(first)) == 55_000  # more than one insert batch
    assert ledger.add_tasks("j", (r for r in rows(75_000))) == 20_000
    assert registered(tmp_path / "ledger.sqlite", "j") == rows(75_000)  # registration order
    assert ledger.counts("j")["pending"] == 75_000


def test_seeds_up_to_2_64_round_trip(ledger: Ledger) -> None:
    seeds = [0, 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]
    ledger.create_job("j", total=len(seeds), spec={})
    tasks = [(hexid(s), hexid("p"), i, s) for i, s in enumerate(seeds)]
    ledger.add_tasks("j", tasks)
    failed = [FailedTask(t[0], "failed", "E", "m") for t in tasks]
    ledger.record_commit("j", 1, shards=[], done=[], row_counts={}, failed=failed, cached=[])
    assert [f.seed for f in ledger.failures("j")] == seeds


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_out_of_range_registers_nothing(ledger: Ledger, seed: int) -> None:
    ledger.create_job("j", total=2, spec={})
    with pytest.raises(StoreError, match="outside"):
        ledger.add_tasks("j", [(hexid(1), hexid("p"), 0, 5), (hexid(2), hexid("p"), 1, seed)])
    assert ledger.counts("j")["pending"] == 0


def test_cancel_flag_seen_from_second_connection(tmp_path: Path, ledger: Ledger) -> None:
    ledger.create_job("j", total=0, spec={})
    ledger.set_job_state("j", "running")
    with Ledger(tmp_path / "ledger.sqlite") as other:
        assert other.cancel_requested("j") is False
        other.request_cancel("j")
    assert ledger.cancel_requested("j") is True
    job = ledger.get_job("j")
    assert job is not None and job.cancel_requested
    ledger.set_job_state("j", "running")  # a new run starts without the old request
    assert ledger.cancel_requested("j") is False


def test_counts_and_failures_then_a_later_success(ledger: Ledger) -> None:
    ledger.create_job("j", total=6, spec={})
    tasks = rows(6)
    ledger.add_tasks("j", tasks)
    ids = [t[0] for t in tasks]
    failed = [
        FailedTask(ids[1], "failed", "ValueError", "bad beta", "Traceback...", "err", 2, 0.5, "w1"),
        FailedTask(ids[2], "timeout", "TimeoutError", "took too long", attempts=1, worker="w2"),
    ]
    done = [DoneTask(ids[0], 0.1, "w1", 1)]
    ledger.record_commit("j", 1, shards=[], done=done, row_counts={}, failed=failed, cached=[])
    assert ledger.counts("j") == {"pending": 3, "done": 1, "cached": 0, "failed": 1, "timeout": 1}
    records = ledger.failures("j")
    assert [(r.task_id, r.status) for r in records] == [(ids[1], "failed"), (ids[2], "timeout")]
    first = records[0]
    assert (first.param_id, first.replicate, first.seed) == tasks[1][1:]
    assert (first.error_type, first.message, first.traceback, first.stderr_tail) == (
        "ValueError",
        "bad beta",
        "Traceback...",
        "err",
    )
    assert (first.attempts, first.duration, first.worker) == (2, 0.5, "w1")
    assert len(ledger.failures("j", limit=1)) == 1

    # a failed task that succeeds on a later run is done and no longer a failure
    ledger.record_commit(
        "j", 2, shards=[], done=[DoneTask(ids[1], attempts=1)], row_counts={}, failed=[], cached=[]
    )
    assert ledger.classify_done("j", ids) == ({ids[0], ids[1]}, set())
    assert [r.task_id for r in ledger.failures("j")] == [ids[2]]
    assert ledger.counts("j") == {"pending": 3, "done": 2, "cached": 0, "failed": 0, "timeout": 1}


def test_attempts_accumulate_across_runs(tmp_path: Path, ledger: Ledger) -> None:
    ledger.create_job("j", total=1, spec={})
    ledger.add_tasks("j", rows(1))
    task_id = rows(1)[0][0]
    fail = FailedTask(task_id, "failed", "E", "m", attempts=3)
    ledger.record_commit("j", 1, shards=[], done=[], row_counts={}, failed=[fail], cached=[])
    fail = FailedTask(task_id, "failed", "E", "again", attempts=2)
    ledger.record_commit("j", 2, shards=[], done=[], row_counts={}, failed=[fail], cached=[])
    assert ledger.failures("j")[0].attempts == 5


def test_record_commit_rejects_unregistered_tasks_atomically(ledger: Ledger) -> None:
    ledger.create_job("j", total=2, spec={})
    ledger.add_tasks("j", rows(2))
    done = [DoneTask(rows(1)[0][0]), DoneTask(hexid("stranger"))]
    with pytest.raises(StoreError, match="1 done task"):
        ledger.record_commit("j", 1, shards=[], done=done, row_counts={}, failed=[], cached=[])
    assert ledger.counts("j")["done"] == 0
    assert ledger.next_commit_id() == 1


def test_cached_requires_results_somewhere(ledger: Ledger) -> None:
    ledger.create_job("j", total=1, spec={})
    ledger.add_tasks("j", rows(1))
    with pytest.raises(StoreError, match="no results in the store"):
        ledger.record_commit(
            "j", 1, shards=[], done=[], row_counts={}, failed=[], cached=[rows(1)[0][0]]
        )


def test_classify_done_across_jobs(ledger: Ledger) -> None:
    ledger.create_job("a", total=4, spec={})
    ledger.add_tasks("a", rows(4))
    ledger.create_job("b", total=4, spec={})
    ledger.add_tasks("b", rows(4, start=2))
    done = [DoneTask(t[0]) for t in rows(3)]
    ledger.record_commit("a", 1, shards=[], done=done, row_counts={}, failed=[], cached=[])
    shared = {t[0] for t in rows(1, start=2)}
    b_ids = [t[0] for t in rows(4, start=2)]
    assert ledger.classify_done("b", b_ids) == (set(), shared)  # done in job a only
    a_ids = [t[0] for t in rows(4)]
    assert ledger.classify_done("a", a_ids) == ({t[0] for t in rows(3)}, set())
    ledger.record_commit("b", 2, shards=[], done=[], row_counts={}, failed=[], cached=list(shared))
    assert ledger.counts("b")["cached"] == 1
    assert ledger.classify_done("b", b_ids) == (shared, set())  # now cached here


def test_one_ledger_shared_by_threads(ledger: Ledger) -> None:
    ledger.create_job("j", total=2_000, spec={})
    ledger.add_tasks("j", rows(2_000))
    ids = [r[0] for r in rows(2_000)]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for n in range(20):
                batch = [DoneTask(t) for t in ids[n * 100 : (n + 1) * 100]]
                ledger.record_commit(
                    "j", n + 1, shards=[], done=batch, row_counts={}, failed=[], cached=[]
                )
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(200):
                counts = ledger.counts("j")
                assert counts["done"] + counts["pending"] == 2_000
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert ledger.counts("j")["done"] == 2_000


# -- content keys (schema v2) ------------------------------------------------------------------


def test_create_job_stores_and_checks_the_content_key(tmp_path: Path, ledger: Ledger) -> None:
    assert ledger.create_job("j", total=1, spec={}, content_key="k1") is False
    assert ledger.create_job("j", total=1, spec={}, content_key="k1") is True
    assert ledger.create_job("j", total=1, spec={}) is True  # no key given: not checked
    with pytest.raises(StoreError, match="'j' already names a different job") as info:
        ledger.create_job("j", total=1, spec={}, content_key="k2")
    assert "choose another job id" in str(info.value)
    assert "--" not in str(info.value)
    assert content_key(tmp_path / "ledger.sqlite", "j") == "k1"


def test_create_job_sets_a_missing_content_key(tmp_path: Path, ledger: Ledger) -> None:
    ledger.create_job("old", total=1, spec={"v": 1})  # as jobs recorded before schema v2
    assert content_key(tmp_path / "ledger.sqlite", "old") is None
    assert ledger.create_job("old", total=1, spec={"v": 2}, content_key="k") is True
    assert content_key(tmp_path / "ledger.sqlite", "old") == "k"
    job = ledger.get_job("old")
    assert job is not None and job.spec == {"v": 1}  # otherwise left unchanged
    with pytest.raises(StoreError, match="different job"):
        ledger.create_job("old", total=1, spec={}, content_key="other")


def content_key(path: Path, job_id: str) -> str | None:
    raw = sqlite3.connect(path)
    try:
        row = raw.execute("SELECT content_key FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    finally:
        raw.close()
    return None if row[0] is None else str(row[0])


# -- read-only ---------------------------------------------------------------------------------


def test_readonly_ledger_reads_and_refuses_every_write(tmp_path: Path, ledger: Ledger) -> None:
    ledger.create_job("j", total=2, spec={"a": 1})
    ledger.add_tasks("j", rows(2))
    ledger.record_commit(
        "j", 1, shards=[], done=[DoneTask(rows(1)[0][0])], row_counts={}, failed=[], cached=[]
    )
    before = (tmp_path / "ledger.sqlite").read_bytes()
    with Ledger(tmp_path / "ledger.sqlite", readonly=True) as reader:
        assert reader.readonly
        assert reader.counts("j") == {
            "pending": 1,
            "done": 1,
            "cached": 0,
            "failed": 0,
            "timeout": 0,
        }
        assert [j.job_id for j in reader.list_jobs()] == ["j"]
        assert reader.schema_version == SCHEMA_VERSION
        writes = (
            lambda: reader.create_job("k", total=0, spec={}),
            lambda: reader.add_tasks("j", rows(1, start=5)),
            lambda: reader.set_job_state("j", "running"),
            lambda: reader.update_job_spec("j", {"b": 2}),
            lambda: reader.request_cancel("j"),
            lambda: reader.record_commit(
                "j", 2, shards=[], done=[], row_counts={}, failed=[], cached=[]
            ),
        )
        for write in writes:
            with pytest.raises(StoreError, match="open read-only"):
                write()
    assert (tmp_path / "ledger.sqlite").read_bytes() == before
    assert ledger.counts("j")["done"] == 1


def test_readonly_ledger_needs_an_existing_ledger(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open ledger"):
        Ledger(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()
