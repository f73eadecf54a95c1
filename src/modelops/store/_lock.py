"""The per-store run lock: one writer (``mops run``) per store, enforced with ``flock``.

``flock`` locks belong to the open file description, so the kernel drops the lock when the
holder dies, SIGKILL included: a crashed run never leaves a stale lock behind. The holder's
pid is written into the file only so that the error message can name it.

A forked child (e.g. a ``fork`` process-pool worker) inherits the descriptor and with it the
lock, which would keep the store locked after the driver dies. A fork hook closes the child's
copy; closing (not unlocking) leaves the parent's lock intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import weakref
from typing import TYPE_CHECKING

from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["RunLock"]

_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()


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
                already holds it, or the lock file cannot be opened.
        """
        if self._fd is not None:
            raise StoreError(f"run lock {self.path} is already held by this process")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open run lock {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StoreError(
                f"store {self.path.parent} is in use by another `mops run` (pid {holder})",
                hint="wait for it to finish or stop it with `mops cancel`",
            ) from None
        except OSError as exc:
            os.close(fd)
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
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _forget_in_child(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


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
