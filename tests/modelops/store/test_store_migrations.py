"""Schema migrations on real ledgers: a checked-in v1 store upgrades to the current schema."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import threading
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest

from modelops.store import (
    DoneTask,
    Ledger,
    ResultStore,
    job_status,
    open_existing_store,
    read_job,
)
from modelops.store._migrations import MIGRATIONS, SCHEMA_VERSION, apply_migrations
from modelops_contracts.errors import StoreError

V1_STORE = Path(__file__).parents[2] / "fixtures" / "stores" / "v1"


def copy_v1(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(V1_STORE, root)
    return root


def user_version(path: Path) -> int:
    raw = sqlite3.connect(path)
    try:
        return int(raw.execute("PRAGMA user_version").fetchone()[0])
    finally:
        raw.close()


def schema(path: Path) -> list[tuple[str, str, str]]:
    raw = sqlite3.connect(path)
    try:
        rows = raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        return [(t, n, s) for t, n, s in rows]
    finally:
        raw.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == MIGRATIONS[-1].version == 3


def test_migration_1_is_exactly_the_v1_schema(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "v1.sqlite")
    try:
        MIGRATIONS[0].apply(raw)
        raw.commit()
    finally:
        raw.close()
    assert user_version(V1_STORE / "ledger.sqlite") == 1
    assert schema(tmp_path / "v1.sqlite") == schema(V1_STORE / "ledger.sqlite")


def test_v1_store_upgrades_and_reads_back(tmp_path: Path) -> None:
    root = copy_v1(tmp_path)
    assert user_version(root / "ledger.sqlite") == 1
    with ResultStore(root) as store:
        assert store.ledger.schema_version == SCHEMA_VERSION
        status = job_status(store, "v1-job")
        assert status["state"] == "completed"
        assert status["total"] == 4
        assert status["counts"] == {"pending": 0, "done": 4, "cached": 0, "failed": 0, "timeout": 0}
        assert status["outputs"] == {"summary": 4}
        frame = store.read_results("v1-job", "summary")
        assert frame.height == 4
        job = read_job(store, "v1-job")
        assert sorted(frame["task_id"]) == sorted(t.task_id for t in job.tasks)
    assert user_version(root / "ledger.sqlite") == SCHEMA_VERSION
    # the upgraded file has the same schema as one created by this code
    with Ledger(tmp_path / "fresh.sqlite"):
        pass
    assert schema(root / "ledger.sqlite") == schema(tmp_path / "fresh.sqlite")


def test_a_commit_works_on_an_upgraded_store(tmp_path: Path) -> None:
    root = copy_v1(tmp_path)
    with ResultStore(root) as store:
        job = read_job(store, "v1-job")
        # the old job takes a content key; a different one is refused afterwards
        assert store.ledger.create_job("v1-job", total=4, spec={}, content_key="k") is True
        with pytest.raises(StoreError, match="different job"):
            store.ledger.create_job("v1-job", total=4, spec={}, content_key="other")
        tasks = [(f"{i:064x}", f"{i:064x}", 0, i) for i in range(1, 4)]
        store.ledger.create_job("v2-job", total=3, spec={}, content_key="k2")
        table = pa.table(
            {
                "task_id": [t[0] for t in tasks],
                "param_id": [t[1] for t in tasks],
                "replicate": [t[2] for t in tasks],
                "seed": pa.array([t[3] for t in tasks], pa.uint64()),
                "y": [1.0, 2.0, 3.0],
            }
        )
        commit_id = store.commit(
            "v2-job", {"summary": table}, [DoneTask(i, t[0]) for i, t in enumerate(tasks)], []
        )
        assert commit_id == 2  # the fixture holds commit 1
        assert store.read_results("v2-job", "summary")["y"].to_list() == [1.0, 2.0, 3.0]
        assert store.read_results("v1-job", "summary").height == 4
        assert {t.task_id for t in job.tasks} == set(
            store.read_results("v1-job", "summary")["task_id"]
        )


def test_opening_a_current_store_again_changes_nothing(tmp_path: Path) -> None:
    root = copy_v1(tmp_path)
    ResultStore(root).close()
    before = (digest(root / "ledger.sqlite"), schema(root / "ledger.sqlite"))
    with ResultStore(root) as store:
        assert store.ledger.schema_version == SCHEMA_VERSION
        assert job_status(store, "v1-job")["counts"]["done"] == 4
    assert (digest(root / "ledger.sqlite"), schema(root / "ledger.sqlite")) == before


def test_concurrent_openers_upgrade_once(tmp_path: Path) -> None:
    root = copy_v1(tmp_path)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            start.wait(30)
            Ledger(root / "ledger.sqlite").close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert user_version(root / "ledger.sqlite") == SCHEMA_VERSION


@pytest.mark.parametrize("readonly", [False, True])
def test_a_newer_ledger_is_refused(tmp_path: Path, readonly: bool) -> None:
    root = copy_v1(tmp_path)
    raw = sqlite3.connect(root / "ledger.sqlite")
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match=rf"schema v{SCHEMA_VERSION + 1}, newer") as info:
        ResultStore(root, readonly=readonly)
    assert "upgrade ModelOps" in str(info.value)
    assert user_version(root / "ledger.sqlite") == SCHEMA_VERSION + 1


def test_a_failed_migration_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    root = copy_v1(tmp_path)
    raw = sqlite3.connect(root / "ledger.sqlite")
    raw.execute("ALTER TABLE jobs ADD COLUMN content_key TEXT")  # v2's column, still at v1
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="duplicate column"):
        ResultStore(root)
    assert user_version(root / "ledger.sqlite") == 1


def test_migrations_run_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE results (x)")  # v1's last table: v1 fails after creating others
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="already exists"):
        Ledger(path)
    assert [name for _, name, _ in schema(path)] == ["results"]  # nothing else was kept
    assert user_version(path) == 0


def test_readonly_refuses_an_old_store_with_a_one_line_message(tmp_path: Path) -> None:
    root = copy_v1(tmp_path)
    before = digest(root / "ledger.sqlite")
    with pytest.raises(StoreError, match="has schema v1, older than v3") as info:
        ResultStore(root, readonly=True)
    assert "open the store once for writing" in str(info.value)
    assert "\n" not in str(info.value)
    assert digest(root / "ledger.sqlite") == before
    assert user_version(root / "ledger.sqlite") == 1


def test_opening_an_existing_old_store_upgrades_it_in_place(tmp_path: Path) -> None:
    root = copy_v1(tmp_path)
    with open_existing_store(root) as store:  # the readers' way in: read-only afterwards
        assert store.readonly
        assert job_status(store, "v1-job")["counts"]["done"] == 4
    assert user_version(root / "ledger.sqlite") == SCHEMA_VERSION


# -- the v2 fixture: the schema before outcome rows ---------------------------------------------

V2_STORE = Path(__file__).parents[2] / "fixtures" / "stores" / "v2"
V2_A, V2_B = "job-3e801c186a7a4c62", "job-a76c767b39b6607a"  # 8 tasks (2 fail), 6 (4 cached)


def test_v2_store_upgrades_and_reads_back_every_status(tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(V2_STORE, root)
    assert user_version(root / "ledger.sqlite") == 2
    with ResultStore(root) as store:
        assert store.ledger.schema_version == SCHEMA_VERSION
        a, b = job_status(store, V2_A), job_status(store, V2_B)
        assert a["counts"] == {"pending": 0, "done": 6, "cached": 0, "failed": 2, "timeout": 0}
        assert b["counts"] == {"pending": 0, "done": 2, "cached": 4, "failed": 0, "timeout": 0}
        assert (a["outputs"], b["outputs"]) == ({"summary": 6}, {"summary": 6})
        interrupted = job_status(store, "v2-interrupted")
        assert interrupted["counts"]["pending"] == 3 and interrupted["state"] == "interrupted"
        failures = store.ledger.failures(V2_A)
        assert [(f.error_type, f.message) for f in failures] == [("ValueError", "negative x")] * 2
        job_a = read_job(store, V2_A)
        by_id = {t.task_id: t for t in job_a.tasks}
        assert all(by_id[f.task_id].seed == f.seed for f in failures)
        for job_id in (V2_A, V2_B):
            frame = store.read_results(job_id, "summary")
            job = read_job(store, job_id)
            ok = {t.task_id for t in job.tasks} - {f.task_id for f in failures}
            assert sorted(frame["task_id"]) == sorted(ok)  # every row once
            done = store.ledger.finished_positions(job_id, 0, job.task_count())
            assert {job.tasks[i].task_id for i in done} == ok  # positions match the job file
        # the cache index survived: a third job of b's tasks finds them all elsewhere
        ids = [t.task_id for t in read_job(store, V2_B).tasks]
        store.ledger.create_job("probe", total=6, spec={})
        assert store.ledger.cached_elsewhere("probe", ids) == set(ids)
    assert user_version(root / "ledger.sqlite") == SCHEMA_VERSION


def test_rerunning_a_v2_job_after_the_upgrade_runs_nothing(tmp_path: Path) -> None:
    from modelops.api import run

    root = tmp_path / "store"
    shutil.copytree(V2_STORE, root)
    with ResultStore(root) as store:
        job = read_job(store, V2_B)
    bundle = tmp_path / "model"
    with zipfile.ZipFile(next((root / "bundles").glob("*.zip"))) as archive:
        archive.extractall(bundle)
    handle = run(job, bundle=bundle, store=root, workers=1)
    summary = handle.summary
    assert summary is not None
    assert (summary.state, summary.cached, summary.succeeded) == ("completed", 6, 6)


def test_apply_migrations_from_an_empty_file(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "empty.sqlite", isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        assert apply_migrations(raw, 0) == SCHEMA_VERSION
        raw.execute("COMMIT")
    finally:
        raw.close()
    with Ledger(tmp_path / "fresh.sqlite"):
        pass
    assert schema(tmp_path / "empty.sqlite") == schema(tmp_path / "fresh.sqlite")
    assert user_version(tmp_path / "empty.sqlite") == SCHEMA_VERSION
