"""Read-only stores: they create and write nothing, also on a real read-only mount."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelops.store import (
    JobLike,
    JobRecord,
    ResultStore,
    job_state,
    open_existing_store,
    open_store,
    resolve_job,
)
from modelops_contracts.errors import StoreError

V1_STORE = Path(__file__).parents[2] / "fixtures" / "stores" / "v1"

# Builds a store: the v1 fixture upgraded, plus a job with two done tasks and one failure whose
# state is left `running`. "crash" ends the process without closing anything, as a killed run
# does, so the ledger's -wal file still holds the last transactions.
BUILD = textwrap.dedent(
    r"""
    import os, sys
    import pyarrow as pa
    from modelops.store import DoneTask, FailedTask, ResultStore
    store = ResultStore(sys.argv[1])
    ids = [f"{i:064x}" for i in range(1, 4)]
    store.ledger.create_job("ro-job", total=3, spec={"name": "ro"})
    table = pa.table({"task_id": ids[:2], "y": [1.0, 2.0]})
    failed = [FailedTask(2, ids[2], "p" * 64, 2, 2, "failed", "ValueError", "bad beta")]
    done = [DoneTask(i, t) for i, t in enumerate(ids[:2])]
    store.commit("ro-job", {"summary": table}, done, failed)
    store.ledger.set_job_state("ro-job", "running")
    if sys.argv[2] == "crash":
        os._exit(0)
    store.close()
    """
)

# Reads everything a reader needs and tries every kind of write; prints one JSON line.
READ = textwrap.dedent(
    r"""
    import json, os, sys
    from modelops.store import job_status, open_existing_store
    from modelops_contracts.errors import StoreError
    root = sys.argv[1]
    try:
        with open(os.path.join(root, "probe"), "w"):
            pass
        mount = "writable"
    except OSError as exc:
        mount = os.strerror(exc.errno)
    store = open_existing_store(root)
    status = job_status(store, "ro-job")
    out = {
        "mount": mount,
        "readonly": store.readonly,
        "state": status["state"],
        "counts": status["counts"],
        "outputs": status["outputs"],
        "rows": store.read_results("ro-job", "summary")["y"].to_list(),
        "v1_rows": store.read_results("v1-job", "summary").height,
        "failures": [[f.error_type, f.message] for f in store.ledger.failures("ro-job")],
        "running": store.run_in_progress(),
        "refused": [],
    }
    writes = {
        "commit": lambda: store.commit("ro-job", {}, [], [], cached=[(0, "a" * 64)]),
        "cancel": lambda: store.ledger.request_cancel("ro-job"),
        "lock": lambda: store.run_lock().__enter__(),
        "job_dir": lambda: store.ensure_job_dir("ro-job"),
    }
    for name, write in writes.items():
        try:
            write()
        except StoreError:
            out["refused"].append(name)
    store.close()
    print(json.dumps(out))
    """
)


def build(root: Path, mode: str) -> None:
    shutil.copytree(V1_STORE, root)
    subprocess.run([sys.executable, "-c", BUILD, str(root), mode], check=True, timeout=120)


def listing(root: Path) -> list[tuple[str, bool, int, int]]:
    """Every entry under ``root`` with its kind, size and modification time."""
    entries = [root, *sorted(root.rglob("*"))]
    return [
        (p.relative_to(root).as_posix(), p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in entries
    ]


def read_on_readonly_mount(source: Path, target: Path) -> dict[str, object]:
    """Bind-mount ``source`` read-only at ``target`` in a private mount namespace and read."""
    target.mkdir()
    inner = (
        f"mount --bind '{source}' '{target}' && mount -o remount,bind,ro '{target}' && "
        f"exec '{sys.executable}' -c \"$READER\" '{target}'"
    )
    flags = "-m" if os.geteuid() == 0 else "-rm"  # non-root: in a user namespace of its own
    proc = subprocess.run(
        ["unshare", flags, "sh", "-c", inner],
        env={**os.environ, "READER": READ},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("mode", ["closed", "crash"])
def test_store_reads_on_a_readonly_mount(tmp_path: Path, mode: str) -> None:
    source = tmp_path / "store"
    build(source, mode)
    assert (source / "ledger.sqlite-wal").exists() is (mode == "crash")
    assert (source / "run.lock").is_file()
    before = listing(source)
    out = read_on_readonly_mount(source, tmp_path / "mnt")
    assert out == {
        "mount": os.strerror(30),  # EROFS: the mount really is read-only
        "readonly": True,
        "state": "interrupted",  # running, but no run holds the lock
        "counts": {"pending": 0, "done": 2, "cached": 0, "failed": 1, "timeout": 0},
        "outputs": {"summary": 2},
        "rows": [1.0, 2.0],
        "v1_rows": 4,
        "failures": [["ValueError", "bad beta"]],
        "running": False,
        "refused": ["commit", "cancel", "lock", "job_dir"],
    }
    assert listing(source) == before


def test_readonly_store_creates_nothing_but_sqlite_companions(tmp_path: Path) -> None:
    root = tmp_path / "store"
    build(root, "closed")
    (root / "run.lock").unlink()
    sqlite = {".", "ledger.sqlite", "ledger.sqlite-shm", "ledger.sqlite-wal"}
    names = {p[0] for p in listing(root)}
    before = [p for p in listing(root) if p[0] not in sqlite]
    with ResultStore(root, readonly=True) as store:
        assert store.log_path("new-job") == root / "jobs" / "new-job" / "job.log"
        assert store.job_dir("new-job") == root / "jobs" / "new-job"
        assert store.run_in_progress() is False
        assert job_state(store, _record(store, "ro-job")) == "interrupted"
        with pytest.raises(StoreError, match="open read-only"):
            store.write_job_file("new-job", "{}")
        with pytest.raises(StoreError, match="open read-only"):
            store.clean_orphans()
        with pytest.raises(StoreError, match="open read-only"):
            store.ensure_job_dir("new-job")
    # SQLite may add the WAL index files a reader needs next to a live writer; nothing else
    assert {p[0] for p in listing(root)} - names <= sqlite
    assert [p for p in listing(root) if p[0] not in sqlite] == before
    assert not (root / "jobs" / "new-job").exists() and not (root / "run.lock").exists()


def test_readonly_store_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no ModelOps store at"):
        ResultStore(tmp_path / "nothing", readonly=True)
    with pytest.raises(StoreError, match="no ModelOps store at") as info:
        open_existing_store(tmp_path / "nothing")
    assert "--" not in str(info.value)
    assert not (tmp_path / "nothing").exists()


def test_readonly_reader_sees_a_live_run(tmp_path: Path) -> None:
    with open_store(tmp_path / "store") as writer:
        writer.ledger.create_job("j", total=0, spec={})
        writer.ledger.set_job_state("j", "running")
        with open_existing_store(tmp_path / "store") as reader:
            assert reader.readonly
            with writer.run_lock():
                assert reader.run_in_progress() is True
                assert job_state(reader, _record(reader, "j")) == "running"
            assert reader.run_in_progress() is False
            assert job_state(reader, _record(reader, "j")) == "interrupted"
        with open_existing_store(tmp_path / "store", readonly=False) as other:
            assert not other.readonly
            other.ledger.request_cancel("j")
        assert writer.ledger.cancel_requested("j") is True


class _Handle:
    def __init__(self, store: ResultStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id


def test_resolve_job(tmp_path: Path) -> None:
    root = tmp_path / "store"
    build(root, "closed")
    handle: JobLike = _Handle(ResultStore(root, readonly=True), "ro-job")
    try:
        assert resolve_job(handle) == (handle.store, "ro-job")
        store, job_id = resolve_job("ro-job", root)
        with store:
            assert job_id == "ro-job" and store.readonly and store.root == root
        assert resolve_job("ro-job", handle.store) == (handle.store, "ro-job")
        with pytest.raises(StoreError, match="no job 'nope'") as info:
            resolve_job("nope", root)
        assert "known jobs: v1-job, ro-job" in str(info.value)
    finally:
        handle.store.close()


def test_resolve_job_uses_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    build(root, "closed")
    monkeypatch.setenv("MODELOPS_STORE", str(root))
    store, job_id = resolve_job("v1-job")
    with store:
        assert (store.root, job_id, store.readonly) == (root, "v1-job", True)
    monkeypatch.delenv("MODELOPS_STORE")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=r"no ModelOps store at \.modelops"):
        resolve_job("v1-job")


def _record(store: ResultStore, job_id: str) -> JobRecord:
    record = store.ledger.get_job(job_id)
    assert record is not None
    return record
