"""A process pool that survives its workers: per-worker death detection, timeouts, streamed results.

``concurrent.futures.ProcessPoolExecutor`` is not enough for simulation runs: one dead worker
breaks the whole executor and a stuck task cannot be killed. :class:`WorkerPool` keeps one
``multiprocessing`` process per worker, each on its own duplex pipe, with one chunk in flight per
worker, and reports what happened to every chunk as one of the worker events of
:mod:`modelops.services._events`:

- :class:`ChunkDone`: ``fn`` returned; ``value`` is its result.
- :class:`ChunkRaised`: ``fn`` raised (or its result could not be pickled or unpickled);
  ``error`` is a :class:`RemoteError`. The worker stays alive.
- :class:`WorkerDied`: the worker process ended while running the chunk (``os._exit``, a
  segfault, the OOM killer); ``exitcode`` is the process exit code, negative for a signal. A fresh
  worker replaces it.
- :class:`TaskTimedOut`: the chunk's current item ran longer than ``task_timeout``; the worker
  was killed with SIGKILL and replaced.

``fn(payload, on_position)`` may call ``on_position(i)`` before each item ``i`` of its payload.
The call writes the index and the start time to a small shared-memory array (no message), so
:class:`WorkerDied` and :class:`TaskTimedOut` can say which item was running (``position``), and
``task_timeout`` applies per item. A chunk that never calls it is timed as a whole.
A chunk's clock starts when its worker takes it up, not when it is submitted, so a worker still
running its initializer does not use up the first chunk's time.

Workers ignore SIGINT (Ctrl-C is the driver's to handle, then ``shutdown(kill=True)``) and exit on
their own when the driver process dies, even mid-task: a watcher thread waits on a pidfd of the
driver (polling on systems without pidfds), and on Linux a child of the driver's main thread also
gets ``PR_SET_PDEATHSIG``. The pool itself writes nothing to the terminal.

The code a worker runs is not trusted with the driver's processes. Each worker leads its own
session and process group, so a signal the model sends to its group never reaches the driver, and
whenever a worker is killed, replaced or stopped its whole group is killed, so what the model
started (``subprocess.Popen(["sleep", "1000"])``) dies with it; the same holds when a worker exits
because the driver died. Under forkserver a worker's parent is the fork server, which the pool
starts with SIGTERM blocked, so ``os.kill(os.getppid(), SIGTERM)`` from a model does nothing; a
fork server that dies anyway (SIGKILL) is started again for the next worker, and the workers it
took along are reported as :class:`WorkerDied`. Processes that leave the group on purpose
(``setsid``) are out of reach.

The pool is not thread-safe: call it from one thread. The forkserver is a per-process singleton,
so ``preload`` only takes effect if no forkserver is running yet in this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import multiprocessing
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from multiprocessing.connection import Connection, wait
from multiprocessing.sharedctypes import RawArray
from multiprocessing.util import Finalize
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from modelops.services._events import (
    ChunkDone,
    ChunkEvent,
    ChunkRaised,
    RemoteError,
    TaskTimedOut,
    WorkerDied,
)
from modelops_contracts.errors import WorkerStartError

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, ForkServerContext, SpawnContext
    from multiprocessing.process import BaseProcess

    _Context: TypeAlias = ForkServerContext | SpawnContext | ForkContext

__all__ = [
    "TaskFn",
    "WorkerPool",
    "poll_pools",
    "run_once",
    "start_forkserver",
    "stop_forkserver",
]

TaskFn: TypeAlias = Callable[[Any, Callable[[int], None]], Any]

_log = logging.getLogger(__name__)

_START_METHODS = ("forkserver", "spawn", "fork")
_OOB_MIN_BYTES = 64 * 1024  # buffers at least this big travel out-of-band, without a copy
_STOP_GRACE = 2.0  # seconds a graceful shutdown waits before terminating workers
_JOIN_AFTER_KILL = 5.0
_JOIN_AFTER_EOF = 1.0
_NOT_STARTED_RECHECK = 0.05  # how often to look again at a chunk its worker has not taken up
_MAX_START_FAILURES = 3
_ORPHAN_EXIT = 70
_PARENT_POLL = 0.5
_PR_SET_PDEATHSIG = 1
_SERVER_BLOCKS = {signal.SIGTERM, signal.SIGINT}  # signals the fork server starts with blocked

# Shared slot per worker: [ticket being run, position (-1 = none reported), item start time].
_SLOT_TICKET, _SLOT_POSITION, _SLOT_START = 0, 1, 2


# --- framing: one message = header, pickled body, then out-of-band buffers ----------------------


def _encode(kind: str, ticket: int, value: Any) -> list[bytes | memoryview]:
    """Pickle ``value`` with protocol 5 into frames; large contiguous buffers are not copied."""
    raws: list[memoryview] = []

    def take(buf: pickle.PickleBuffer) -> bool:
        if memoryview(buf).nbytes < _OOB_MIN_BYTES:
            return True  # keep small buffers in-band: a frame each would cost more
        try:
            raws.append(buf.raw())
        except BufferError:
            return True  # not contiguous: let pickle copy it in-band
        return False

    body = pickle.dumps(value, protocol=5, buffer_callback=take)
    header = pickle.dumps((kind, ticket, [raw.nbytes for raw in raws]), protocol=5)
    return [header, body, *raws]


def _write(conn: Connection, frames: list[bytes | memoryview]) -> None:
    for frame in frames:
        conn.send_bytes(frame)


def _recv(conn: Connection) -> tuple[str, int, bytes, list[bytearray]]:
    """Receive one message unparsed; raises EOFError or OSError if the other side is gone."""
    kind, ticket, sizes = pickle.loads(conn.recv_bytes())
    body = conn.recv_bytes()
    buffers = []
    for size in sizes:
        buf = bytearray(size)  # writable, so numpy arrays rebuilt on it are writable too
        conn.recv_bytes_into(buf)
        buffers.append(buf)
    return kind, ticket, body, buffers


def _describe(exc: BaseException) -> RemoteError:
    text = "".join(traceback.format_exception(exc))
    return RemoteError(type(exc).__name__, str(exc), text)


# --- worker side ---------------------------------------------------------------------------------


def _worker_main(
    conn: Connection,
    slot: Any,
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
    driver_pid: int,
    pdeathsig: bool,
    inherited: Connection | None,
) -> None:
    """Body of a worker process: initialize once, then run chunks until told to stop."""
    with contextlib.suppress(OSError):
        os.setsid()  # its own group: the model's group signals stay here, and die with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SERVER_BLOCKS)  # blocked in the fork server
    if inherited is not None:
        inherited.close()  # under fork: our copy of the driver's end would hide its death
    _guard_driver(driver_pid, pdeathsig)
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            _reply(conn, "init_error", 0, _describe(exc))
            os._exit(1)
    _reply(conn, "ready", 0, None)
    while True:
        try:
            kind, ticket, body, buffers = _recv(conn)
        except (EOFError, OSError):
            return  # the driver closed the pipe or went away
        if kind == "stop":
            return
        _run_chunk(conn, slot, ticket, body, buffers)


def _run_chunk(
    conn: Connection, slot: Any, ticket: int, body: bytes, buffers: list[bytearray]
) -> None:
    # Start time before position before ticket: the driver reads them in the opposite order, so a
    # torn read can only make an item look younger, never trigger a false timeout.
    slot[_SLOT_START] = time.monotonic()
    slot[_SLOT_POSITION] = -1.0
    slot[_SLOT_TICKET] = float(ticket)

    def on_position(index: int) -> None:
        slot[_SLOT_START] = time.monotonic()
        slot[_SLOT_POSITION] = float(index)

    try:
        fn, payload = pickle.loads(body, buffers=buffers)
        result: tuple[str, Any] = ("done", fn(payload, on_position))
    except BaseException as exc:
        result = ("error", _describe(exc))
    slot[_SLOT_POSITION] = -1.0
    _reply(conn, result[0], ticket, result[1])


def _reply(conn: Connection, kind: str, ticket: int, value: Any) -> None:
    """Send from a worker; a value that does not pickle becomes an error, a lost driver an exit."""
    try:
        frames = _encode(kind, ticket, value)
    except Exception as exc:
        wrapped = RuntimeError(f"the result of the chunk cannot be pickled: {exc!r}")
        frames = _encode("error", ticket, _describe(wrapped))
    try:
        _write(conn, frames)
    except OSError:
        _exit_orphaned()  # the driver is gone; nobody is left to tell


def _exit_orphaned() -> None:
    """Leave without the driver: kill this worker's own process group (the model's children)."""
    if os.getpgrp() == os.getpid():
        with contextlib.suppress(OSError):
            os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(_ORPHAN_EXIT)


def _guard_driver(driver_pid: int, pdeathsig: bool) -> None:
    """Make this worker exit when the driver process dies, also while a task is running."""
    if pdeathsig and sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    pidfd: int | None = None
    try:
        pidfd = os.pidfd_open(driver_pid)
    except ProcessLookupError:
        _exit_orphaned()
    except (AttributeError, OSError):
        pidfd = None
    if pdeathsig and os.getppid() != driver_pid:
        _exit_orphaned()  # the driver died before PR_SET_PDEATHSIG was in place
    threading.Thread(
        target=_watch_driver, args=(driver_pid, pidfd), name="driver-watch", daemon=True
    ).start()


def _watch_driver(driver_pid: int, pidfd: int | None) -> None:
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable once the driver has exited
        _exit_orphaned()
    while True:
        time.sleep(_PARENT_POLL)
        try:
            os.kill(driver_pid, 0)
        except ProcessLookupError:
            _exit_orphaned()
        except PermissionError:
            pass  # exists, belongs to someone else: the pid may have been reused, keep going


# --- driver side ---------------------------------------------------------------------------------


@dataclass
class _Chunk:
    ticket: int
    task_timeout: float | None


class _Worker:
    """Driver-side record of one worker process and its pipe."""

    def __init__(
        self, proc: BaseProcess, conn: Connection, slot: Any, host: str, started: float
    ) -> None:
        self.proc = proc
        self.conn = conn
        self.slot = slot
        self.pid = proc.pid
        self.name = f"{host}:{proc.pid}"
        self.started = started
        self.ready_after: float | None = None
        self.chunk: _Chunk | None = None

    def running(self) -> tuple[int | None, float | None]:
        """Position and start time of the in-flight chunk's current item, if it has begun."""
        chunk = self.chunk
        if chunk is None or self.slot[_SLOT_TICKET] != float(chunk.ticket):
            return None, None
        position = self.slot[_SLOT_POSITION]
        start = self.slot[_SLOT_START]
        return (int(position) if position >= 0 else None), start


def _reap(workers: list[_Worker]) -> None:
    """Kill the workers' processes, wait for them and close their pipes (also the finalizer)."""
    for worker in workers:
        _kill(worker)
    for worker in workers:
        _dispose(worker)
    workers.clear()


def _kill(worker: _Worker) -> None:
    """SIGKILL a worker and everything in its process group (what its model started)."""
    _kill_group(worker.pid)
    with contextlib.suppress(OSError, ValueError):
        worker.proc.kill()


def _kill_group(pid: int | None) -> None:
    """SIGKILL the process group a worker leads; nothing if it has none (yet, or any more)."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _dispose(worker: _Worker) -> None:
    """Wait for a killed or exited worker, kill what is left of its group, release its handles."""
    with contextlib.suppress(ValueError):  # ValueError: the process handle is already closed
        worker.proc.join(_JOIN_AFTER_KILL)
        if worker.proc.exitcode is not None:
            worker.proc.close()
    _kill_group(worker.pid)  # the model's children outlive a worker that exited by itself
    worker.conn.close()


def _ensure_forkserver(server: Any = None) -> None:
    """Start the fork server (this Python's, or ``server``) if it is not running, with SIGTERM
    blocked, so a model's ``os.kill(os.getppid(), SIGTERM)`` cannot take it down, and SIGINT
    too, so a Ctrl-C while it is still importing its preload stops the driver without a
    traceback from the server (once serving, it ignores SIGINT anyway); restarts one that died."""
    from multiprocessing import forkserver, resource_tracker

    # The tracker's first start unblocks both in this thread: have it run before blocking.
    resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SERVER_BLOCKS)
    try:
        (server or forkserver._forkserver).ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


_MAIN_SPEC = ModuleSpec("__main__", None)


_START_LOCK = threading.RLock()
"""Held while a worker process starts with process-wide multiprocessing settings swapped."""


@contextlib.contextmanager
def _main_not_reimported(method: str) -> Iterator[None]:
    """Keep spawn/forkserver workers from re-running the driver's main script.

    multiprocessing re-imports ``__main__`` in such workers so that functions defined there can
    be unpickled; the pool only runs functions from importable modules, so that import is pure
    cost (the ``mops`` script would import the whole CLI in every worker) and it breaks scripts
    without an ``if __name__ == "__main__":`` guard. A main module whose spec is named
    ``__main__`` is one multiprocessing knows to leave alone.
    """
    main = sys.modules.get("__main__")
    if method == "fork" or main is None:
        yield
        return
    with _START_LOCK:  # two pools starting workers from two threads must not undo each other
        saved = main.__dict__.get("__spec__")
        main.__spec__ = _MAIN_SPEC
        try:
            yield
        finally:
            main.__spec__ = saved


_SYS_PATHS: dict[str, list[str]] = {}


@contextlib.contextmanager
def _spawn_executable(executable: str | None) -> Iterator[None]:
    """Spawn the processes started in the block with ``executable`` (None: this Python).

    multiprocessing keeps one spawn interpreter for the whole process, read when a process
    starts, and hands the child this process's ``sys.path``, which would import the driver's
    packages into another environment. Both are swapped for the block only, under a lock: the
    child gets that interpreter and its own default ``sys.path``.
    """
    if executable is None:
        yield
        return
    from multiprocessing import spawn

    own_path = _default_sys_path(executable)
    with _START_LOCK:
        previous, prepare = spawn.get_executable(), spawn.get_preparation_data

        def preparation(name: str) -> dict[str, Any]:
            data: dict[str, Any] = prepare(name)
            data["sys_path"] = list(own_path)
            return data

        spawn.set_executable(executable)
        spawn.get_preparation_data = preparation
        try:
            yield
        finally:
            spawn.set_executable(previous)
            spawn.get_preparation_data = prepare


def _default_sys_path(executable: str) -> list[str]:
    """The ``sys.path`` a fresh ``executable`` starts with (asked once per interpreter)."""
    found = _SYS_PATHS.get(executable)
    if found is None:
        import json
        import subprocess

        code = "import json, sys; print(json.dumps(sys.path[1:]))"  # without the script's dir
        done = subprocess.run(
            [executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        found = _SYS_PATHS[executable] = [str(p) for p in json.loads(done.stdout)]
    return found


_ENV_SERVERS: dict[str, Any] = {}
"""Fork servers running other environments' Pythons, by interpreter: started on first use."""


@contextlib.contextmanager
def _forking_in(executable: str, preload: Sequence[str]) -> Iterator[None]:
    """Fork the forkserver processes started in the block from a server running
    ``executable``, which imports ``preload`` (and this module) once, so that a bundle
    environment's workers start as fast as this Python's.

    multiprocessing forks from one server per process: the module's connect function is pointed
    at the environment's server for the block only, under the start lock.
    """
    from multiprocessing import forkserver

    with _START_LOCK, _spawn_executable(executable):
        server = _ENV_SERVERS.get(executable)
        if server is None:
            server = _ENV_SERVERS[executable] = forkserver.ForkServer()
            server.set_forkserver_preload([*preload, __name__])
        _ensure_forkserver(server)
        connect = forkserver.connect_to_new_process
        forkserver.connect_to_new_process = server.connect_to_new_process
        try:
            yield
        finally:
            forkserver.connect_to_new_process = connect


def start_forkserver(preload: Sequence[str] = (), executable: str | None = None) -> None:
    """Start this process's fork server (or that of ``executable``, another environment's
    Python) now, importing ``preload`` (and this module), and return at once: it boots while the
    caller does other work, and the pools started later find it ready. Does nothing if one is
    running already.
    """
    if executable is not None:
        with _main_not_reimported("forkserver"), _forking_in(executable, preload):
            return
    multiprocessing.get_context("forkserver").set_forkserver_preload([*preload, __name__])
    with _main_not_reimported("forkserver"):
        _ensure_forkserver()


def stop_forkserver() -> None:
    """Kill this process's fork servers (its own and other environments'), even while they are
    still booting.

    For the caller of :func:`start_forkserver`, once no worker forked from it is alive (a
    worker's exit is reported through the server, so a live one would look dead): the server
    then neither goes on importing its preload after a failed start nor holds this process's
    exit up (it would exit only after this process, holding its stdout and stderr meanwhile).
    """
    from multiprocessing import forkserver

    with _START_LOCK:
        servers: list[Any] = [forkserver._forkserver, *_ENV_SERVERS.values()]
        _ENV_SERVERS.clear()
    for server in servers:  # the module's singleton has no public way to stop it
        pid = server._forkserver_pid
        if pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # SIGTERM is blocked in it (see _ensure_forkserver)
        server._stop()  # closes the alive pipe, reaps the process, forgets its address


class WorkerPool:
    """A fixed number of worker processes, one chunk in flight each, with events per chunk.

    Args:
        workers: Number of worker processes (at least 1).
        initializer: Called once in every worker, with ``initargs``, before its first chunk.
        initargs: Arguments for ``initializer``; must pickle under spawn and forkserver.
        context: The ``multiprocessing`` start method: "forkserver", "spawn" or "fork".
        preload: Modules the forkserver imports once, so workers start with them loaded; this
            module is always added.
        executable: A Python interpreter (another virtual environment's, holding ModelOps) to
            run the workers with: forked from a fork server running it, or spawned from it with
            ``context="spawn"``.
        tickets: Where tickets come from; pools polled together (:func:`poll_pools`) share one
            counter, so a ticket names its chunk among all of them.

    Raises:
        ValueError: ``workers`` is below 1, ``context`` is not a known start method, or an
            ``executable`` is given with the fork start method.
    """

    def __init__(
        self,
        workers: int,
        *,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        context: str = "forkserver",
        preload: Sequence[str] = (),
        executable: str | None = None,
        tickets: Iterator[int] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if executable is not None and context == "fork":
            raise ValueError("an executable needs the spawn or forkserver start method")
        self._executable = executable
        self._preload = tuple(preload)
        if context not in _START_METHODS:
            raise ValueError(f"context must be one of {_START_METHODS}, got {context!r}")
        self._ctx = cast("_Context", multiprocessing.get_context(context))
        if context == "forkserver" and executable is None:
            # Every worker unpickles _worker_main: have the server import this module (and the
            # package around it) once, instead of each new worker.
            self._ctx.set_forkserver_preload([*preload, __name__])
        self._method = context
        self._initializer = initializer
        self._initargs = initargs
        self._host = socket.gethostname()
        self._tickets = tickets if tickets is not None else itertools.count(1)
        self._start_failures = 0
        self._closed = False
        self._workers: list[_Worker] = []
        # multiprocessing's own finalizer, not weakref.finalize: at interpreter exit it runs before
        # multiprocessing joins its non-daemon children, which would otherwise wait forever.
        self._finalizer = Finalize(self, _reap, args=(self._workers,), exitpriority=20)
        for _ in range(workers):
            self._workers.append(self._start_worker(None))

    # -- public API --

    def submit(
        self,
        fn: TaskFn,
        payload: Any,
        *,
        task_timeout: float | None = None,
    ) -> int:
        """Send ``fn(payload, on_position)`` to an idle worker and return its ticket.

        ``fn`` must be a module-level function so that it pickles. The send can block while a
        fresh worker finishes starting if the pickled payload is larger than the pipe buffer.

        Raises:
            RuntimeError: The pool is shut down or no worker is idle (see :meth:`idle_workers`).
            pickle.PicklingError, TypeError, AttributeError: ``fn`` or ``payload`` do not pickle.
        """
        if self._closed:
            raise RuntimeError("the pool is shut down")
        if task_timeout is not None and task_timeout <= 0:
            raise ValueError(f"task_timeout must be positive, got {task_timeout}")
        index = next((i for i, w in enumerate(self._workers) if w.chunk is None), None)
        if index is None:
            raise RuntimeError("no idle worker: check idle_workers() before submitting")
        self._check_idle(index)
        worker = self._workers[index]
        ticket = next(self._tickets)
        frames = _encode("run", ticket, (fn, payload))  # a bad payload fails here, in the caller
        worker.chunk = _Chunk(ticket, task_timeout)
        with contextlib.suppress(OSError):  # it just died: poll() reports it as WorkerDied
            _write(worker.conn, frames)
        return ticket

    def idle_workers(self) -> int:
        """How many more submissions can start right now (one chunk in flight per worker)."""
        if self._closed:
            return 0
        return sum(1 for w in self._workers if w.chunk is None)

    def in_flight(self) -> int:
        """How many chunks are submitted and not yet reported."""
        return sum(1 for w in self._workers if w.chunk is not None)

    def poll(self, timeout: float | None) -> list[ChunkEvent]:
        """Wait up to ``timeout`` seconds (``None``: no limit) for at least one event.

        Returns the events that are ready, or an empty list when the time is up. Returns at once
        with an empty list when no chunk is in flight.

        Raises:
            WorkerStartError: The initializer failed or workers keep dying at start-up.
        """
        if self._closed:
            raise RuntimeError("the pool is shut down")
        deadline = None if timeout is None else time.monotonic() + timeout
        events: list[ChunkEvent] = []
        while True:
            self._check_timeouts(events)
            if events:
                return events
            busy = any(w.chunk is not None for w in self._workers)
            now = time.monotonic()
            if not busy or (deadline is not None and now >= deadline):
                self._service(0.0, events)
                return events
            wake = self._next_timeout_check(now)
            limit = deadline - now if deadline is not None else None
            if wake is not None:
                limit = wake if limit is None else min(limit, wake)
            self._service(limit, events)
            if events:
                return events

    def shutdown(self, *, kill: bool = False) -> None:
        """Stop all workers and close their pipes; safe to call more than once.

        ``kill=False`` asks each worker to stop, waits briefly, then terminates and kills the
        ones still running. ``kill=True`` sends SIGKILL to every worker at once (after Ctrl-C).
        """
        if self._closed:
            return
        self._closed = True
        workers = list(self._workers)
        if not kill:
            for worker in workers:
                if worker.chunk is None or worker.running()[1] is not None:
                    # The chunk, if any, has been read, so this small message cannot block.
                    with contextlib.suppress(OSError):
                        _write(worker.conn, _encode("stop", 0, None))
                else:
                    worker.proc.terminate()
            end = time.monotonic() + _STOP_GRACE
            for worker in workers:
                worker.proc.join(max(0.0, end - time.monotonic()))
            for worker in workers:
                if worker.proc.is_alive():
                    worker.proc.terminate()
                    worker.proc.join(0.5)
        self._finalizer()  # runs _reap once

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(kill=exc_type is not None)

    # -- internals --

    def _start_worker(self, slot: Any) -> _Worker:
        if slot is None:
            slot = RawArray("d", 3)
        slot[_SLOT_TICKET], slot[_SLOT_POSITION], slot[_SLOT_START] = 0.0, -1.0, 0.0
        ours, theirs = self._ctx.Pipe(duplex=True)
        in_main = threading.current_thread() is threading.main_thread()
        pdeathsig = self._method != "forkserver" and in_main
        inherited = ours if self._method == "fork" else None
        args = (theirs, slot, self._initializer, self._initargs, os.getpid(), pdeathsig, inherited)
        proc = self._ctx.Process(target=_worker_main, args=args, name="modelops-worker")
        started = time.monotonic()
        try:
            with _main_not_reimported(self._method), self._launching():
                proc.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return _Worker(proc, ours, slot, self._host, started)

    def _launching(self) -> contextlib.AbstractContextManager[None]:
        """Where the next worker starts from: a fork server (this Python's or the
        executable's), or a spawned interpreter."""
        executable = self._executable
        if self._method != "forkserver":
            return _spawn_executable(executable)
        if executable is not None:
            return _forking_in(executable, self._preload)
        _ensure_forkserver()
        return contextlib.nullcontext()

    def _replace(self, index: int) -> None:
        old = self._workers[index]
        _kill(old)
        _dispose(old)
        self._workers[index] = self._start_worker(old.slot)

    def _check_idle(self, index: int) -> None:
        """Before reusing an idle worker, read what it sent and replace it if it has died."""
        worker = self._workers[index]
        stray: list[ChunkEvent] = []  # an idle worker has no chunk, so no event can come of it
        if worker.conn.poll():
            self._drain(worker, stray)  # EOF shows as soon as the process is gone
        elif not worker.proc.is_alive():
            self._on_death(worker, stray)

    def _service(self, limit: float | None, events: list[ChunkEvent]) -> None:
        """Wait up to ``limit`` for pipes and sentinels; turn what is ready into events."""
        by_object: dict[Any, _Worker] = {}
        for worker in self._workers:
            by_object[worker.conn] = worker
            by_object[worker.proc.sentinel] = worker
        for obj in wait(list(by_object), None if limit is None else max(0.0, limit)):
            worker = by_object[obj]
            if worker not in self._workers:
                continue  # already replaced in this round
            self._drain(worker, events)

    def _drain(self, worker: _Worker, events: list[ChunkEvent]) -> None:
        """Read every message the worker has sent; if its pipe is closed, handle its death."""
        conn = worker.conn
        while True:
            try:
                if not conn.poll():
                    break
                message = _recv(conn)
            except (EOFError, OSError):
                self._on_death(worker, events)
                return
            self._on_message(worker, message, events)
        if not worker.proc.is_alive():
            self._on_death(worker, events)

    def _on_message(
        self,
        worker: _Worker,
        message: tuple[str, int, bytes, list[bytearray]],
        events: list[ChunkEvent],
    ) -> None:
        kind, ticket, body, buffers = message
        if kind == "ready":
            worker.ready_after = time.monotonic() - worker.started
            self._start_failures = 0
            return
        if kind == "init_error":
            remote: RemoteError = pickle.loads(body)
            raise WorkerStartError(
                f"the worker initializer raised {remote.type_name}: {remote.message}",
                remote=remote,
            )
        chunk = worker.chunk
        if chunk is None or chunk.ticket != ticket:
            _log.debug("dropping %s for ticket %s from %s", kind, ticket, worker.name)
            return
        worker.chunk = None
        try:
            value = pickle.loads(body, buffers=buffers)
        except Exception as exc:
            wrapped = RuntimeError(f"the result of the chunk cannot be unpickled: {exc!r}")
            kind, value = "error", _describe(wrapped)
        if kind == "done":
            events.append(ChunkDone(ticket, value, worker.name))
        else:
            events.append(ChunkRaised(ticket, value, worker.name))

    def _on_death(self, worker: _Worker, events: list[ChunkEvent]) -> None:
        worker.proc.join(_JOIN_AFTER_EOF)
        if worker.proc.is_alive():
            _kill(worker)  # closed its pipe but lingers: no use to us
            worker.proc.join(_JOIN_AFTER_KILL)
        exitcode = worker.proc.exitcode
        position, _ = worker.running()
        chunk, worker.chunk = worker.chunk, None
        if chunk is not None:
            events.append(WorkerDied(chunk.ticket, position, worker.name, exitcode))
        _log.debug("worker %s exited with %s; replacing it", worker.name, exitcode)
        self._replace(self._workers.index(worker))
        if worker.ready_after is None:
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES:
                self._start_failures = 0
                raise WorkerStartError(
                    f"{_MAX_START_FAILURES} workers in a row died before they were ready "
                    f"(last exit code {exitcode})"
                )

    def _check_timeouts(self, events: list[ChunkEvent]) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            chunk = worker.chunk
            if chunk is None or chunk.task_timeout is None:
                continue
            position, start = worker.running()
            if start is None or now - start <= chunk.task_timeout:
                continue
            if worker.conn.poll():
                self._drain(worker, events)  # it finished (or died) just in time
                if worker.chunk is not chunk:
                    continue
            _kill(worker)
            worker.proc.join(_JOIN_AFTER_KILL)
            events.append(TaskTimedOut(chunk.ticket, position, worker.name, worker.proc.exitcode))
            worker.chunk = None
            self._replace(self._workers.index(worker))

    def _next_timeout_check(self, now: float) -> float | None:
        """Seconds until some in-flight item could exceed its timeout, or None if none can."""
        waits = []
        for worker in self._workers:
            chunk = worker.chunk
            if chunk is None or chunk.task_timeout is None:
                continue
            _, start = worker.running()
            if start is None:
                waits.append(_NOT_STARTED_RECHECK)
            else:
                waits.append(max(0.0, start + chunk.task_timeout - now) + 0.001)
        return min(waits) if waits else None


def poll_pools(pools: Sequence[WorkerPool], timeout: float | None) -> list[ChunkEvent]:
    """:meth:`WorkerPool.poll` over several pools at once (their tickets from one counter):
    waits up to ``timeout`` for the first event of any of them."""
    busy = [pool for pool in pools if pool.in_flight()]
    if len(busy) <= 1:
        return busy[0].poll(timeout) if busy else []
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        events = [event for pool in busy for event in pool.poll(0.0)]
        now = time.monotonic()
        if events or (deadline is not None and now >= deadline):
            return events
        limits = [w for pool in busy if (w := pool._next_timeout_check(now)) is not None]
        if deadline is not None:
            limits.append(deadline - now)
        handles = [h for pool in busy for w in pool._workers for h in (w.conn, w.proc.sentinel)]
        wait(handles, max(0.0, min(limits)) if limits else None)


def run_once(
    fn: TaskFn,
    payload: Any,
    *,
    timeout: float | None,
    context: str = "forkserver",
    preload: Sequence[str] = (),
    executable: str | None = None,
) -> ChunkEvent:
    """Run ``fn(payload, on_position)`` in a fresh worker process and return how it ended
    (spawned from ``executable``, another environment's Python, when given).

    For code that must not run in the caller's process (a model's import can exit, hang or
    signal). The worker and its process group are killed afterwards, whatever happened.
    ``timeout`` bounds the call from when the worker takes it up (:class:`TaskTimedOut`).

    Raises:
        WorkerStartError: the worker cannot start.
        pickle.PicklingError, TypeError, AttributeError: ``fn`` or ``payload`` do not pickle.
    """
    pool = WorkerPool(1, context=context, preload=preload, executable=executable)
    try:
        ticket = pool.submit(fn, payload, task_timeout=timeout)
        while True:
            for event in pool.poll(None):
                if event.ticket == ticket:
                    return event
    finally:
        pool.shutdown(kill=True)
