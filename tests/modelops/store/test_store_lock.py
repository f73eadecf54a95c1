"""The run lock: exclusive across processes and objects, gone when its holder is killed, and
queried by readers without ever being taken."""

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
from modelops.store._lock import _FLOCK, run_lock_held
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
        assert store.run_in_progress() is True
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert store.run_in_progress() is False
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


# Polls the probe in a tight loop until the stop file appears. Says when it started and when it
# first saw the lock held; at the end, how many probes ran, how many saw it held, and any error.
POLLER = textwrap.dedent(
    r"""
    import os, sys
    from modelops.store import ResultStore
    store = ResultStore(sys.argv[1], readonly=True)
    polls = held = 0
    error = ""
    try:
        while not os.path.exists(sys.argv[2]):
            if store.run_in_progress():
                held += 1
                if held == 1:
                    os.write(1, b"seen\n")
            polls += 1
            if polls == 1:
                os.write(1, b"polling\n")
    except Exception as exc:
        error = repr(exc)
    os.write(1, f"{polls} {held} {error}\n".encode())
    """
)


def test_polling_readers_never_make_a_starting_run_fail(tmp_path: Path, store: ResultStore) -> None:
    stop_file = tmp_path / "stop"
    pollers = [
        subprocess.Popen(
            [sys.executable, "-c", POLLER, str(store.root), str(stop_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        lines: list[list[str]] = [[] for _ in pollers]
        for proc, seen in zip(pollers, lines, strict=True):
            assert proc.stdout is not None
            seen.append(proc.stdout.readline().strip())
            assert seen == ["polling"], proc.stderr
        failures = 0
        for _ in range(3000):
            try:
                with store.run_lock():
                    pass
            except StoreError:
                failures += 1
        with store.run_lock():  # held until every poller has seen it held
            for proc, seen in zip(pollers, lines, strict=True):
                assert proc.stdout is not None
                seen.append(proc.stdout.readline().strip())
                assert seen[-1] == "seen", proc.stderr
        stop_file.touch()
        results = [proc.communicate(timeout=60)[0].split() for proc in pollers]
    finally:
        stop_file.touch()
        for proc in pollers:
            stop(proc)
    assert failures == 0
    for polls, held, *error in results:
        assert error == []
        assert int(polls) > int(held) >= 1


def test_probe_writes_nothing_and_needs_no_lock_file(store: ResultStore) -> None:
    lock_file = store.root / "run.lock"
    assert run_lock_held(lock_file) is False  # no file yet: no run
    assert not lock_file.exists()
    with store.run_lock():
        before = (lock_file.read_text(), lock_file.stat().st_mtime_ns)
        assert run_lock_held(lock_file) is True
        assert (lock_file.read_text(), lock_file.stat().st_mtime_ns) == before
    before = (lock_file.read_text(), lock_file.stat().st_mtime_ns)
    for _ in range(100):
        assert run_lock_held(lock_file) is False
    assert (lock_file.read_text(), lock_file.stat().st_mtime_ns) == before


def test_flock_struct_layout() -> None:
    # struct flock on 64-bit Linux: two shorts, padding, two off_t, pid_t, padding
    assert _FLOCK.size == 32
