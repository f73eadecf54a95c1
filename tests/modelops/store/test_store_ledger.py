"""The SQLite ledger on a real database file: jobs, tasks, statuses, flags, seeds."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest

from modelops.store import DoneTask, FailedTask, Ledger, RowCounts
from modelops.store.ledger import SCHEMA_VERSION
from modelops_contracts.errors import StoreError


def hexid(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=32).hexdigest()


def rows(n: int, start: int = 0) -> list[tuple[str, str, int, int]]:
    """(task_id, param_id, replicate, seed) of tasks at positions ``start .. start + n - 1``."""
    return [(hexid("t", i), hexid("p", i // 3), i % 3, 1000 + i) for i in range(start, start + n)]


def done_at(seq: int, **fields: Any) -> DoneTask:
    return DoneTask(seq, hexid("t", seq), **fields)


def failed_at(
    seq: int, status: Literal["failed", "timeout"] = "failed", **fields: Any
) -> FailedTask:
    task_id, param_id, replicate, seed = rows(1, start=seq)[0]
    seed = fields.pop("seed", seed)
    values: dict[str, Any] = {"error_type": "E", "message": "m", **fields}
    return FailedTask(seq, task_id, param_id, replicate, seed, status, **values)


def commit(ledger: Ledger, job: str, commit_id: int, **lists: Any) -> None:
    ledger.record_commit(
        job,
        commit_id,
        shards=lists.get("shards", []),
        done=lists.get("done", []),
        row_counts=lists.get("row_counts", RowCounts("{}")),
        failed=lists.get("failed", []),
        cached=lists.get("cached", []),
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as led:
        yield led


def test_wal_mode_and_schema_version(tmp_path: Path, ledger: Ledger) -> None:
    raw = sqlite3.connect(tmp_path / "ledger.sqlite")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        job_columns = {r[1] for r in raw.execute("PRAGMA table_info(jobs)")}
    finally:
        raw.close()
    assert tables == {"jobs", "outcomes", "failures", "commits", "shards", "results", "compiled"}
    assert "content_key" in job_columns


def test_newer_schema_is_refused(tmp_path: Path, ledger: Ledger) -> None:
    raw = sqlite3.connect(tmp_path / "ledger.sqlite")
    raw.execute("PRAGMA user_version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="schema v99"):
        Ledger(tmp_path / "ledger.sqlite")


def test_create_job_is_idempotent_and_keeps_outcomes(ledger: Ledger) -> None:
    assert ledger.create_job("job-1", total=3, spec={"study": "sir"}) is False
    commit(ledger, "job-1", 1, done=[done_at(0)])
    assert ledger.create_job("job-1", total=3, spec={"other": 1}) is True
    job = ledger.get_job("job-1")
    assert job is not None
    assert job.spec == {"study": "sir"}
    assert job.total == 3
    assert job.state == "created"
    assert job.started_at is None
    assert ledger.counts("job-1")["pending"] == 2
    assert ledger.finished_positions("job-1", 0, 3) == {0}


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
        lambda: ledger.finished_positions("x", 0, 1),
        lambda: ledger.cached_elsewhere("x", [hexid(1)]),
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


def test_pending_is_the_absence_of_an_outcome(ledger: Ledger) -> None:
    ledger.create_job("j", total=75_000, spec={})
    assert ledger.counts("j")["pending"] == 75_000
    commit(ledger, "j", 1, done=[done_at(i) for i in range(0, 75_000, 3)])
    assert ledger.counts("j")["pending"] == 50_000
    assert ledger.finished_positions("j", 0, 10) == {0, 3, 6, 9}
    assert ledger.finished_positions("j", 74_990, 75_000) == {74_991, 74_994, 74_997}


def test_positions_outside_the_job_are_refused(ledger: Ledger) -> None:
    ledger.create_job("j", total=2, spec={})
    with pytest.raises(StoreError, match="position 2, outside job j"):
        commit(ledger, "j", 1, done=[done_at(0), done_at(2)])
    with pytest.raises(StoreError, match="position -1"):
        commit(ledger, "j", 1, failed=[failed_at(-1)])
    assert ledger.counts("j")["pending"] == 2
    assert ledger.next_commit_id() == 1


def test_seeds_up_to_2_64_round_trip(ledger: Ledger) -> None:
    seeds = [0, 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]
    ledger.create_job("j", total=len(seeds), spec={})
    commit(ledger, "j", 1, failed=[failed_at(i, seed=s) for i, s in enumerate(seeds)])
    assert [f.seed for f in ledger.failures("j")] == seeds


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_out_of_range_records_nothing(ledger: Ledger, seed: int) -> None:
    ledger.create_job("j", total=2, spec={})
    with pytest.raises(StoreError, match="outside"):
        commit(ledger, "j", 1, failed=[failed_at(0), failed_at(1, seed=seed)])
    assert ledger.counts("j")["pending"] == 2


def test_task_ids_must_be_hex_digests(ledger: Ledger) -> None:
    ledger.create_job("j", total=1, spec={})
    with pytest.raises(StoreError, match="id is not hexadecimal"):
        commit(ledger, "j", 1, done=[DoneTask(0, "not-a-digest")])
    with pytest.raises(StoreError, match="CHECK constraint failed"):
        commit(ledger, "j", 1, done=[DoneTask(0, "abcd")])
    with pytest.raises(StoreError, match="not 64 hexadecimal digits"):
        ledger.cached_elsewhere("j", ["abcd"])
    assert ledger.counts("j")["pending"] == 1


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
    ids = [t[0] for t in tasks]
    failed = [
        failed_at(1, "failed", error_type="ValueError", message="bad beta",
                  traceback="Traceback...", stderr_tail="err", attempts=2, duration=0.5,
                  worker="w1"),
        failed_at(2, "timeout", error_type="TimeoutError", message="took too long", worker="w2"),
    ]  # fmt: skip
    commit(ledger, "j", 1, done=[done_at(0, duration=0.1, worker="w1")], failed=failed)
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
    commit(ledger, "j", 2, done=[done_at(1)])
    assert ledger.finished_positions("j", 0, 6) == {0, 1}
    assert [r.task_id for r in ledger.failures("j")] == [ids[2]]
    assert ledger.counts("j") == {"pending": 3, "done": 2, "cached": 0, "failed": 0, "timeout": 1}


def test_attempts_accumulate_across_runs(ledger: Ledger) -> None:
    ledger.create_job("j", total=1, spec={})
    commit(ledger, "j", 1, failed=[failed_at(0, attempts=3)])
    commit(ledger, "j", 2, failed=[failed_at(0, message="again", attempts=2)])
    assert ledger.failures("j")[0].attempts == 5
    assert ledger.failures("j")[0].message == "again"


def test_a_position_holding_another_task_is_refused_atomically(ledger: Ledger) -> None:
    ledger.create_job("j", total=2, spec={})
    commit(ledger, "j", 1, done=[done_at(1)])
    with pytest.raises(StoreError, match=r"1 done task.*holds another task"):
        commit(ledger, "j", 2, done=[done_at(0), DoneTask(1, hexid("stranger"))])
    assert ledger.counts("j")["done"] == 1
    assert ledger.next_commit_id() == 2


def test_cached_requires_results_somewhere(ledger: Ledger) -> None:
    ledger.create_job("j", total=1, spec={})
    with pytest.raises(StoreError, match="no results in the store"):
        commit(ledger, "j", 1, cached=[(0, rows(1)[0][0])])
    assert ledger.counts("j")["pending"] == 1


def test_cache_lookups_across_jobs(ledger: Ledger) -> None:
    ledger.create_job("a", total=4, spec={})
    ledger.create_job("b", total=4, spec={})  # b's task at position i is a's at i + 2
    assert not ledger.has_other_results("b")
    commit(ledger, "a", 1, done=[done_at(i) for i in range(3)])
    assert ledger.has_other_results("b") and not ledger.has_other_results("a")
    assert ledger.cached_elsewhere("b", [hexid("t", 2)]) == set()  # not indexed yet: a miss
    assert ledger.index_commits() == 3
    assert ledger.index_commits() == 0  # each commit once
    assert ledger.cached_elsewhere("b", [t[0] for t in rows(4, start=2)]) == {hexid("t", 2)}
    assert ledger.cached_elsewhere("a", [t[0] for t in rows(4)]) == set()  # its own are not
    assert ledger.finished_positions("b", 0, 4) == set()
    commit(ledger, "b", 2, cached=[(0, hexid("t", 2))])
    assert ledger.counts("b")["cached"] == 1
    assert ledger.finished_positions("b", 0, 4) == {0}  # now cached here
    keys, _ = ledger.result_index("b")
    assert keys == [(hexid("t", 2), 1)]  # its rows live in job a's commit


def test_a_cache_key_collision_is_a_miss(ledger: Ledger) -> None:
    ledger.create_job("a", total=1, spec={})
    ledger.create_job("b", total=1, spec={})
    commit(ledger, "a", 1, done=[done_at(0)])
    ledger.index_commits()
    twin = hexid("t", 0)[:16] + "0" * 48  # same first 8 bytes, another task
    assert ledger.cached_elsewhere("b", [twin]) == set()
    with pytest.raises(StoreError, match="no results in the store"):
        commit(ledger, "b", 2, cached=[(0, twin)])


def test_the_index_points_at_the_newest_done_outcome(ledger: Ledger) -> None:
    for job in ("a", "b", "c"):
        ledger.create_job(job, total=1, spec={})
    commit(ledger, "a", 1, done=[done_at(0)])
    commit(ledger, "b", 2, done=[done_at(0)])  # the same task again, later, in job b
    ledger.index_commits()  # both unindexed at once: the newer wins
    commit(ledger, "c", 3, cached=[(0, hexid("t", 0))])
    assert ledger.result_index("c")[0] == [(hexid("t", 0), 2)]


def test_row_counts_usual_and_special(ledger: Ledger) -> None:
    ledger.create_job("j", total=3, spec={})
    counts = RowCounts('{"a":1,"b":2}', {hexid("t", 2): '{"a":5,"b":0}'})
    commit(ledger, "j", 1, done=[done_at(i) for i in range(3)], row_counts=counts)
    ledger.index_commits()
    assert ledger.output_counts("j") == {"a": 7, "b": 4}
    ledger.create_job("k", total=2, spec={})
    commit(ledger, "k", 2, cached=[(0, hexid("t", 1)), (1, hexid("t", 2))])
    assert ledger.output_counts("k") == {"a": 6, "b": 2}  # the source commit's counts


def test_one_ledger_shared_by_threads(ledger: Ledger) -> None:
    ledger.create_job("j", total=2_000, spec={})
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for n in range(20):
                batch = [done_at(i) for i in range(n * 100, n * 100 + 100)]
                commit(ledger, "j", n + 1, done=batch)
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
    commit(ledger, "j", 1, done=[done_at(0)])
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
            lambda: reader.forget_shards(["x.parquet"]),
            lambda: reader.set_job_state("j", "running"),
            lambda: reader.update_job_spec("j", {"b": 2}),
            lambda: reader.request_cancel("j"),
            lambda: commit(reader, "j", 2),
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
