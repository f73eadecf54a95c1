"""The per-store run lock: one writer (``mops run``) per store, as a Linux OFD lock.

An open file description (OFD) lock (``fcntl`` ``F_OFD_SETLK``) belongs to the open file
description, like ``flock``: the kernel drops it when the holder dies, SIGKILL included, so a
crashed run never leaves a stale lock behind, and two descriptions conflict even within one
process. Unlike ``flock``, it can be *queried* (``F_OFD_GETLK``) without being taken, on a
read-only descriptor: :func:`run_lock_held` tells a reader whether a run is in progress
without ever making a starting run fail, and works on a read-only mount. The holder's pid is
written into the file only so that the error message can name it.

A forked child (e.g. a ``fork`` process-pool worker) inherits the descriptor, and with it the
description that holds the lock, which would keep the store locked after the driver dies. A
fork hook closes the child's copy; closing (not unlocking) leaves the parent's lock intact,
since the description stays open in the parent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import sys
import weakref
from typing import TYPE_CHECKING

from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["RunLock", "run_lock_held"]

_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()

# struct flock on 64-bit Linux (x86_64, aarch64 and the other asm-generic layouts): short
# l_type, short l_whence, 4 bytes padding, off_t l_start, off_t l_len, pid_t l_pid, 4 bytes
# padding; 32 bytes. l_start = l_len = 0 covers the whole file; l_pid must be 0 for OFD locks.
_FLOCK = struct.Struct("=hh4xqqi4x")
_OFD_SUPPORTED = sys.platform == "linux" and sys.maxsize > 2**32 and hasattr(fcntl, "F_OFD_SETLK")
_CONFLICT = frozenset({errno.EACCES, errno.EAGAIN})


class RunLock:
    """Exclusive, non-blocking lock on one file; not re-entrant.

    Two instances conflict even within one process, since each opens its own description.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this instance holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or fail at once.

        Raises:
            StoreError: another holder has it (the message names its pid), this instance
                already holds it, the lock file cannot be opened, or the platform has no OFD
                locks.
        """
        if self._fd is not None:
            raise StoreError(f"run lock {self.path} is already held by this process")
        _check_platform()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open run lock {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK))
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in _CONFLICT:
                raise StoreError(
                    f"store {self.path.parent} is in use by another `mops run` (pid {holder})",
                    hint="wait for it to finish or stop it with `mops cancel`",
                ) from None
            raise StoreError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        _HELD.add(self)

    def release(self) -> None:
        """Give the lock up; a no-op when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.discard(self)
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_UNLCK))
        finally:
            os.close(fd)

    def _forget_in_child(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def run_lock_held(path: Path) -> bool:
    """Whether any holder (this process included) has the lock at ``path``; never takes it.

    Opens the file read-only and asks the kernel who would conflict with a write lock, so it
    writes nothing and works on a read-only mount. No lock file means no run.

    Raises:
        StoreError: the lock file exists but cannot be opened or queried, or the platform has
            no OFD locks.
    """
    _check_platform()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot open run lock {path}: {exc.strerror or exc}") from exc
    try:
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK))
    except OSError as exc:
        raise StoreError(f"cannot query run lock {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    kind = _FLOCK.unpack(answer)[0]
    return bool(kind != fcntl.F_UNLCK)


def _flock(kind: int) -> bytes:
    return _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0)


def _check_platform() -> None:
    if not _OFD_SUPPORTED:
        raise StoreError(
            "the store's run lock needs open file description locks (64-bit Linux)",
            hint="run ModelOps on 64-bit Linux",
        )


def _read_pid(fd: int) -> str:
    """The pid the holder wrote, or ``unknown`` if it has not written it yet."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _after_fork_in_child() -> None:
    for lock in list(_HELD):
        lock._forget_in_child()
    _HELD.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
