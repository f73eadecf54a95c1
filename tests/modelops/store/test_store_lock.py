"""The run lock: exclusive across processes and objects, and gone when its holder is killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelops.store import ResultStore
from modelops_contracts.errors import StoreError

HOLDER = textwrap.dedent(
    r"""
    import os, sys, time
    from modelops.store import ResultStore
    store = ResultStore(sys.argv[1])
    held = store.run_lock()  # keep a reference: a collected context manager would release
    held.__enter__()
    if sys.argv[2] == "fork":
        child = os.fork()
        if child == 0:  # fork hooks have run by now: say so, then outlive the parent
            os.write(1, b"child\n")  # one write: lines from both processes never interleave
            time.sleep(60)
            os._exit(0)
        os.write(1, f"{child}\n".encode())
    os.write(1, b"locked\n")
    time.sleep(60)
    """
)


def start_holder(root: Path, mode: str = "plain") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultStore]:
    with ResultStore(tmp_path / "store") as opened:
        yield opened


def test_lock_is_exclusive_between_store_objects(store: ResultStore) -> None:
    mine = rf"in use by another `mops run` \(pid {os.getpid()}\)"
    with ResultStore(store.root) as other:
        with store.run_lock():
            with pytest.raises(StoreError, match=mine), other.run_lock():
                pass
            with pytest.raises(StoreError, match="already held"), store.run_lock():
                pass
        with other.run_lock():
            pass


def test_lock_held_by_a_process_is_released_when_it_is_sigkilled(store: ResultStore) -> None:
    proc = start_holder(store.root)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked", proc.stderr.read() if proc.stderr else ""
        with pytest.raises(StoreError, match=rf"pid {proc.pid}\)") as info, store.run_lock():
            pass
        assert "another `mops run`" in str(info.value)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with store.run_lock():
            assert (store.root / "run.lock").read_text().strip() == str(os.getpid())
    finally:
        stop(proc)


def test_forked_child_does_not_keep_the_lock_after_the_holder_dies(store: ResultStore) -> None:
    proc = start_holder(store.root, "fork")
    child = 0
    try:
        assert proc.stdout is not None
        lines = {proc.stdout.readline().strip() for _ in range(3)}  # any order
        assert {"child", "locked"} < lines, lines
        (child,) = (int(line) for line in lines if line.isdigit())
        with pytest.raises(StoreError, match="in use"), store.run_lock():
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        os.kill(child, 0)  # the forked child is still alive ...
        with store.run_lock():  # ... yet the lock is free
            pass
    finally:
        stop(proc)
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_lock_file_is_emptied_on_release(store: ResultStore) -> None:
    with store.run_lock():
        assert (store.root / "run.lock").read_text().strip() == str(os.getpid())
    assert (store.root / "run.lock").read_text() == ""
