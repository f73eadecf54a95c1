"""WorkerPool: results, errors, deaths, timeouts and clean shutdown, with real processes."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops.services._events import (
    ChunkDone,
    ChunkEvent,
    ChunkRaised,
    RemoteError,
    TaskTimedOut,
    WorkerDied,
)
from modelops.services._pool import TaskFn, WorkerPool, run_once
from modelops_contracts import ModelOpsError, WorkerStartError
from tests.modelops.services import _pool_fns as fns

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(2) as p:
        yield p


def collect(pool: WorkerPool, count: int, within: float = 20.0) -> list[ChunkEvent]:
    """Poll until ``count`` events have arrived; fail if they take longer than ``within``."""
    events: list[ChunkEvent] = []
    deadline = time.monotonic() + within
    while len(events) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(events)} of {count} events: {events}"
        events.extend(pool.poll(left))
    assert len(events) == count, events
    return events


def run_one(
    pool: WorkerPool, fn: TaskFn, payload: object, *, task_timeout: float | None = None
) -> ChunkEvent:
    """Submit one chunk and wait for its event."""
    pool.submit(fn, payload, task_timeout=task_timeout)
    (event,) = collect(pool, 1)
    return event


def done(event: ChunkEvent) -> Any:
    """The value of a chunk that returned; fails for any other event."""
    assert isinstance(event, ChunkDone), event
    return event.value


def pid_of(event: ChunkEvent) -> int:
    host, pid = event.worker.rsplit(":", 1)
    assert host == socket.gethostname()
    return int(pid)


def is_gone(pid: int, *, reaped: bool = False) -> bool:
    """True once the process has exited; unless ``reaped``, a zombie counts as gone.

    Orphans may be adopted by a parent that never reaps them, hence the zombie allowance.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return not reaped and stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pids: list[int], within: float, *, reaped: bool = False) -> list[int]:
    """Wait up to ``within`` seconds for the processes to exit; returns those still there."""
    deadline = time.monotonic() + within
    alive = pids
    while alive:
        alive = [pid for pid in alive if not is_gone(pid, reaped=reaped)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return alive


def test_results_come_back_for_many_submissions(pool: WorkerPool) -> None:
    payloads = {n: list(range(n, n + 5)) for n in range(40)}
    pending = list(payloads)
    sent: dict[int, int] = {}  # ticket -> payload
    events: list[ChunkEvent] = []
    while len(events) < len(payloads):
        while pending and pool.idle_workers():
            n = pending.pop()
            sent[pool.submit(fns.square_items, payloads[n])] = n
        events.extend(pool.poll(10.0))
    assert sorted(e.ticket for e in events) == sorted(sent)
    for event in events:
        assert isinstance(event, ChunkDone)
        assert event.value == [x * x for x in payloads[sent[event.ticket]]]
        pid_of(event)


def test_results_stream_back_as_they_finish(pool: WorkerPool) -> None:
    slow = pool.submit(fns.sleep_items, [1.0])
    fast = pool.submit(fns.echo, "quick")
    first = collect(pool, 1)
    assert [e.ticket for e in first] == [fast]
    assert [e.ticket for e in collect(pool, 1)] == [slow]


def test_exception_in_fn_is_an_error_event_and_the_worker_lives_on() -> None:
    with WorkerPool(1) as pool:
        before = run_one(pool, fns.getpid, None)
        ticket = pool.submit(fns.raise_value_error, 7)
        (event,) = collect(pool, 1)
        assert isinstance(event, ChunkRaised) and event.ticket == ticket
        assert isinstance(event.error, RemoteError)
        assert event.error.type_name == "ValueError"
        assert event.error.message == "bad payload 7"
        assert "raise ValueError" in event.error.traceback
        assert "_pool_fns.py" in event.error.traceback
        after = done(run_one(pool, fns.getpid, None))
        assert after == done(before) == pid_of(event)


def test_os_exit_is_a_died_event_and_a_fresh_worker_takes_over() -> None:
    with WorkerPool(1) as pool:
        ticket = pool.submit(fns.exit_with, 3)
        (event,) = collect(pool, 1)
        assert event == WorkerDied(ticket, None, event.worker, 3)
        assert pool.idle_workers() == 1
        assert done(run_one(pool, fns.getpid, None)) != pid_of(event)
        assert is_gone(pid_of(event))


def test_segfault_is_a_died_event_with_sigsegv(pool: WorkerPool) -> None:
    event = run_one(pool, fns.segfault, None)
    assert isinstance(event, WorkerDied)
    assert event.exitcode == -signal.SIGSEGV
    assert done(run_one(pool, fns.echo, 1)) == 1


def test_position_is_the_item_running_at_death(pool: WorkerPool) -> None:
    event = run_one(pool, fns.kill_self_at, (6, 3))
    assert isinstance(event, WorkerDied)
    assert (event.position, event.exitcode) == (3, -signal.SIGKILL)


def test_timeout_kills_the_worker_reports_the_item_and_replaces_it() -> None:
    with WorkerPool(1) as pool:
        first = done(run_one(pool, fns.getpid, None))
        start = time.monotonic()
        ticket = pool.submit(fns.sleep_items, [0.0, 0.01, 30.0, 0.0], task_timeout=0.5)
        (event,) = collect(pool, 1)
        assert time.monotonic() - start < 5.0
        assert event == TaskTimedOut(ticket, 2, event.worker, -signal.SIGKILL)
        assert pid_of(event) == first
        assert wait_gone([first], 2.0) == []
        later = run_one(pool, fns.square_items, [3], task_timeout=5.0)
        assert done(later) == [9]
        assert pid_of(later) != first


def test_timeout_applies_per_item_when_fn_reports_positions(pool: WorkerPool) -> None:
    event = run_one(pool, fns.sleep_items, [0.3, 0.3, 0.3], task_timeout=0.6)
    assert done(event) == 3


def test_a_chunk_without_positions_is_timed_as_a_whole(pool: WorkerPool) -> None:
    event = run_one(pool, fns.sleep_unreported, 30.0, task_timeout=0.4)
    assert isinstance(event, TaskTimedOut) and event.position is None


def test_a_result_sent_just_before_death_is_still_delivered() -> None:
    with WorkerPool(1) as pool:
        pool.submit(fns.reply_then_exit, None)
        time.sleep(0.6)  # both the reply and the exit have happened before we look
        events = pool.poll(5.0)
        assert [done(e) for e in events] == ["replied"]
        assert pool.poll(0.3) == []  # a worker dying while idle is replaced silently
        assert is_gone(pid_of(events[0]))
        assert done(run_one(pool, fns.getpid, None)) != pid_of(events[0])


def test_a_worker_killed_while_idle_is_replaced_before_use() -> None:
    with WorkerPool(1) as pool:
        pid = done(run_one(pool, fns.getpid, None))
        os.kill(pid, signal.SIGKILL)
        # Reaped (by the forkserver), not just a zombie: a zombie leader may still have a thread
        # exiting, with the pipe still open.
        assert wait_gone([pid], 5.0, reaped=True) == []
        event = run_one(pool, fns.getpid, None)
        assert done(event) != pid, (event, pid)


def test_unpicklable_result_is_an_error_and_the_worker_lives_on() -> None:
    with WorkerPool(1) as pool:
        event = run_one(pool, fns.unpicklable_result, None)
        assert isinstance(event, ChunkRaised)
        assert "cannot be pickled" in event.error.message
        assert done(run_one(pool, fns.getpid, None)) == pid_of(event)


def test_unpicklable_payload_fails_in_submit_without_using_a_worker(pool: WorkerPool) -> None:
    with pytest.raises((AttributeError, pickle.PicklingError)):
        pool.submit(fns.echo, lambda: None)
    assert pool.idle_workers() == 2
    assert done(run_one(pool, fns.echo, "ok")) == "ok"


def test_large_results_and_payloads_round_trip(pool: WorkerPool) -> None:
    table = done(run_one(pool, fns.big_table, 1_000_000))
    assert table.num_rows == 1_000_000
    assert table.column("x")[999_999].as_py() == 999_999
    array = done(run_one(pool, fns.big_array, 200_000))
    assert array.flags.writeable and array[-1] == 199_999.0
    array[0] = -1.0
    blob = os.urandom(3_000_000)
    assert done(run_one(pool, fns.echo, blob)) == blob


def test_initializer_runs_once_per_worker_with_its_args() -> None:
    with WorkerPool(2, initializer=fns.record_init, initargs=("marked",)) as pool:
        for _ in range(2):
            pool.submit(fns.read_init, None)
        events = collect(pool, 2)
        events += [run_one(pool, fns.read_init, None) for _ in range(3)]
        assert {done(e) for e in events} == {(1, "marked")}


def test_failing_initializer_raises_worker_start_error() -> None:
    with WorkerPool(1, initializer=fns.failing_init) as pool:
        pool.submit(fns.echo, None)
        with pytest.raises(WorkerStartError, match="initializer is broken") as info:
            collect(pool, 1)
        assert isinstance(info.value, ModelOpsError)  # in the error tree: the CLI reports it
        assert isinstance(info.value.remote, RemoteError)
        assert info.value.remote.type_name == "ValueError"


def test_submit_needs_an_idle_worker_and_poll_returns_when_nothing_runs(pool: WorkerPool) -> None:
    start = time.monotonic()
    assert pool.poll(5.0) == []
    assert time.monotonic() - start < 1.0
    assert pool.idle_workers() == 2
    pool.submit(fns.sleep_items, [0.2])
    pool.submit(fns.sleep_items, [0.2])
    assert pool.idle_workers() == 0
    with pytest.raises(RuntimeError, match="no idle worker"):
        pool.submit(fns.echo, None)
    assert pool.poll(0.01) == []
    collect(pool, 2)
    assert pool.idle_workers() == 2


def test_shutdown_leaves_no_processes_and_is_idempotent() -> None:
    pool = WorkerPool(2)
    pids = [done(run_one(pool, fns.getpid, None)) for _ in range(2)]
    pool.submit(fns.getpid, None)
    pool.submit(fns.sleep_items, [30.0])
    time.sleep(0.3)
    start = time.monotonic()
    pool.shutdown()
    assert time.monotonic() - start < 5.0
    pool.shutdown()
    assert multiprocessing.active_children() == []
    assert wait_gone(pids, 3.0) == []
    assert pool.idle_workers() == 0
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(fns.echo, None)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.poll(0.1)


def test_shutdown_kill_is_immediate() -> None:
    with WorkerPool(2) as pool:
        pool.submit(fns.getpid, None)
        pool.submit(fns.getpid, None)
        pids = [done(e) for e in collect(pool, 2)]
        pool.submit(fns.sleep_items, [30.0])
        pool.submit(fns.sleep_unreported, 30.0)
        start = time.monotonic()
        pool.shutdown(kill=True)
        assert time.monotonic() - start < 1.0
    assert multiprocessing.active_children() == []
    assert wait_gone(pids, 3.0) == []


def test_a_pool_dropped_without_shutdown_kills_its_workers() -> None:
    pool = WorkerPool(1)
    pid = done(run_one(pool, fns.getpid, None))
    pool.submit(fns.sleep_items, [30.0])
    del pool
    gc.collect()
    assert wait_gone([pid], 3.0) == []
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("context", ["forkserver", "spawn", "fork"])
def test_every_start_method_runs_a_trivial_fn(context: str) -> None:
    with WorkerPool(2, context=context) as pool:
        square = pool.submit(fns.square_items, [2, 3])
        getpid = pool.submit(fns.getpid, None)
        events = {e.ticket: e for e in collect(pool, 2)}
        assert done(events[square]) == [4, 9]
        assert done(events[getpid]) == pid_of(events[getpid])
        died = run_one(pool, fns.exit_with, 4)
        assert isinstance(died, WorkerDied) and died.exitcode == 4


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WorkerPool(0)
    with pytest.raises(ValueError, match="context"):
        WorkerPool(1, context="threads")


DRIVER = textwrap.dedent(
    """
    import sys
    import time

    from modelops.services._pool import WorkerPool
    from tests.modelops.services import _pool_fns as fns

    if __name__ == "__main__":
        pool = WorkerPool(2, context=sys.argv[1])
        pool.submit(fns.getpid, None)
        pool.submit(fns.getpid, None)
        events = []
        while len(events) < 2:
            events += pool.poll(30.0)
        pool.submit(fns.sleep_items, [120.0])
        time.sleep(0.2)
        print(" ".join(str(e.value) for e in events), flush=True)
        time.sleep(120.0)
    """
)


@pytest.mark.parametrize("context", ["forkserver", "spawn", "fork"])
def test_workers_exit_when_the_driver_is_sigkilled(tmp_path: Path, context: str) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with subprocess.Popen(
        [sys.executable, str(script), context],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    ) as driver:
        try:
            line = driver.stdout.readline() if driver.stdout else ""
            pids = [int(pid) for pid in line.split()]
            assert len(pids) == 2, driver.stderr.read() if driver.stderr else line
            assert all(not is_gone(pid) for pid in pids)
        finally:
            driver.kill()
            driver.wait()
    assert wait_gone(pids, 5.0) == []


# -- the model's processes are the model's ------------------------------------------------------


def session_of(payload: object, on_position: Any) -> tuple[int, int, int]:
    """Pool function: (pid, session id, process group id) of the worker."""
    return os.getpid(), os.getsid(0), os.getpgrp()


def sigterm_parent(payload: object, on_position: Any) -> int:
    """Pool function: what a hostile model does to whoever started it."""
    os.kill(os.getppid(), signal.SIGTERM)
    return os.getppid()


def sigterm_own_group(payload: object, on_position: Any) -> int:
    """Pool function: SIGTERM to the worker's own process group (itself included)."""
    os.killpg(0, signal.SIGTERM)
    return 0


def start_sleeper(tag: str, on_position: Any) -> int:
    """Pool function: start a child that outlives the function; return its pid."""
    return subprocess.Popen(["sleep", tag]).pid


@pytest.mark.parametrize("context", ["forkserver", "spawn", "fork"])
def test_each_worker_leads_its_own_session_and_group(context: str) -> None:
    with WorkerPool(1, context=context) as pool:
        pid, sid, pgid = done(run_one(pool, session_of, None))
    assert sid == pid == pgid
    assert os.getsid(0) != pid and os.getpgrp() != pid


def test_a_model_that_sigterms_its_parent_harms_neither_driver_nor_pool() -> None:
    with WorkerPool(2) as pool:
        parent = done(run_one(pool, sigterm_parent, None))
        assert parent != os.getpid()  # under forkserver the parent is the fork server
        # the fork server survived: workers still start, and the pool still runs chunks
        assert isinstance(done(run_one(pool, fns.getpid, None)), int)
        assert done(run_one(pool, sigterm_parent, None)) == parent
        pool.submit(fns.exit_with, 3)
        (died,) = collect(pool, 1)
        assert isinstance(died, WorkerDied)
        assert isinstance(done(run_one(pool, fns.getpid, None)), int)


def test_a_signal_to_the_workers_group_stays_in_that_group() -> None:
    with WorkerPool(1) as pool:
        _, _, group = done(run_one(pool, session_of, None))
        assert group != os.getpgrp()  # else the signal below would stop this test run
        event = run_one(pool, sigterm_own_group, None)
        assert isinstance(event, WorkerDied) and event.exitcode == -signal.SIGTERM
        assert isinstance(done(run_one(pool, fns.getpid, None)), int)


@pytest.mark.parametrize("kill", [False, True])
def test_children_a_chunk_started_die_with_the_pool(kill: bool) -> None:
    pool = WorkerPool(2)
    try:
        tag = f"1000.{os.getpid()}{int(kill)}"
        children = [done(run_one(pool, start_sleeper, tag)) for _ in range(2)]
        assert all(not is_gone(pid) for pid in children)
    finally:
        pool.shutdown(kill=kill)
    assert wait_gone(children, 5.0) == []


def test_children_of_a_timed_out_worker_die_with_it() -> None:
    with WorkerPool(1) as pool:
        child = done(run_one(pool, start_sleeper, f"1000.{os.getpid()}7"))
        event = run_one(pool, fns.sleep_items, [60.0], task_timeout=0.2)
        assert isinstance(event, TaskTimedOut)
        assert wait_gone([child], 5.0) == []


def test_run_once_runs_in_a_fresh_process_and_cleans_up() -> None:
    event = run_once(start_sleeper, f"1000.{os.getpid()}9", timeout=30.0)
    assert wait_gone([done(event)], 5.0) == []
    died = run_once(fns.exit_with, 7, timeout=30.0)
    assert isinstance(died, WorkerDied) and died.exitcode == 7
    timed_out = run_once(fns.sleep_items, [60.0], timeout=0.2)
    assert isinstance(timed_out, TaskTimedOut)
