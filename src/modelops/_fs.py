"""Durable file-system steps shared by the result store and the bundle store.

A rename is only durable once the directory holding it is fsynced, and a new directory only
once its parent is. This module is a leaf: it imports nothing from ``modelops``, so both the
store and the bundle code can use it without an import cycle. Errors surface as ``OSError``;
callers translate them into their own error type.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["fsync_dir", "make_dirs"]


def fsync_dir(path: Path) -> None:
    """Flush a directory's entry table to disk so renames and creations in it survive a crash.

    Raises:
        OSError: the directory cannot be opened or synced.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing the parent of each directory created.

    Raises:
        OSError: a directory cannot be created, or ``path`` exists and is not a directory.
    """
    if path.is_dir():
        return
    make_dirs(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    fsync_dir(path.parent)
