"""What a pool worker process runs around each chunk (shared by the local and Dask backends)."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import termios
import threading
import time
from pathlib import Path
from typing import Any

from modelops.runtime.spec import ChunkResult, ChunkSpec

__all__ = ["PRELOAD", "init_worker", "run_in_worker"]

# Imported once in the fork server, so every worker starts with them: the runtime and its stack
# (numpy, pyarrow), not pandas or polars. pyarrow would import pandas the first time it builds
# an array; init_worker stops that unless the model itself uses pandas.
PRELOAD = ("modelops.runtime.chunk",)

TASK_FD_LOG_BYTES = 1024 * 1024
"""Most bytes a task may write to file descriptors 1 and 2 (C code, subprocesses) into the job
log; the rest is counted and replaced by ``[... N bytes cut]``."""

_DRAIN_SECONDS = 1.0  # longest wait at a chunk's end for output still in the pipe


def init_worker() -> None:
    """Worker initializer: Ctrl-C is the driver's business; model code comes from the snapshot;
    pyarrow does not import pandas for a model that does not use it."""
    from modelops.runtime._arrow import skip_pandas_probe
    from modelops.runtime.loader import isolate_import_path

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    isolate_import_path()
    skip_pandas_probe()


class _FdLog:
    """Fds 1 and 2 of this worker feed a pipe; a thread appends what comes to the job log.

    Each task has a budget of :data:`TASK_FD_LOG_BYTES` (reset by :meth:`next_task`); what is
    over it is read and dropped, so neither memory nor the log grows with what a model writes,
    and what arrived is in the log even if the worker dies.
    """

    def __init__(self, log_path: str) -> None:
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.read_fd = read_fd
        self.log_fd = -1
        self.log_path = ""
        self.budget = TASK_FD_LOG_BYTES
        self.cut = 0
        self.changed = threading.Condition()
        self.open_log(log_path)
        threading.Thread(target=self._pump, name="modelops-fd-log", daemon=True).start()

    def open_log(self, log_path: str) -> None:
        """Append to ``log_path`` from now on (a worker may serve several jobs)."""
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with self.changed:
            old, self.log_fd, self.log_path = self.log_fd, fd, log_path
        if old >= 0:
            os.close(old)

    def _pump(self) -> None:
        # Reading and accounting happen under one lock hold: whoever holds the lock and sees
        # an empty pipe knows that every byte written so far has been charged to a task.
        while True:
            select.select([self.read_fd], [], [])
            with self.changed:
                data = os.read(self.read_fd, 65536)
                if not data:
                    return
                keep = data[: max(self.budget, 0)]
                self.budget -= len(keep)
                self.cut += len(data) - len(keep)
                if keep:
                    _write_all(self.log_fd, keep)
                self.changed.notify_all()

    def next_task(self) -> None:
        """Close the previous task's share: note what was cut, give the next one its budget."""
        self._drain()
        with self.changed:
            cut, self.cut, self.budget = self.cut, 0, TASK_FD_LOG_BYTES
            if cut:
                _write_all(self.log_fd, f"\n[... {cut} bytes cut]\n".encode())

    def _drain(self) -> None:
        """Wait (briefly) until the pipe is empty, so a task's output is counted as its own."""
        deadline = time.monotonic() + _DRAIN_SECONDS
        with self.changed:
            while _pending(self.read_fd):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.changed.wait(left)


def _pending(fd: int) -> int:
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # a full or vanished log must not stop the model
        pass


_fd_log: list[_FdLog | None] = [None]


def run_in_worker(spec: ChunkSpec, on_position: Any) -> ChunkResult:
    """Run one chunk in this worker process, its low-level output sent to the job log."""
    from modelops.runtime.chunk import run_chunk  # preloaded in workers; the driver never needs it

    fd_log = _fd_log[0]
    if spec.log_path is not None:
        if fd_log is None:
            fd_log = _fd_log[0] = _FdLog(spec.log_path)
        elif fd_log.log_path != spec.log_path:
            fd_log.next_task()
            fd_log.open_log(spec.log_path)
    if fd_log is None:
        return run_chunk(spec, on_task_start=on_position)
    log = fd_log

    def task_started(position: int) -> None:
        if position:
            log.next_task()
        if on_position is not None:
            on_position(position)

    try:
        return run_chunk(spec, on_task_start=task_started)
    finally:
        log.next_task()
