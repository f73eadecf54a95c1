"""The store's file steps: safe names, temporary names and atomic replace of small files.

The generic durable steps (directory fsync, durable ``mkdir -p``) live in :mod:`modelops._fs`,
shared with the bundle store.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import TYPE_CHECKING

from modelops._fs import fsync_dir, make_dirs
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "TEMP_PREFIX",
    "atomic_write_bytes",
    "check_name",
    "temp_path",
]

TEMP_PREFIX = ".tmp-"
"""Every temporary file the store writes starts with this; ``clean_orphans`` removes them."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is safe as one path component (job ids, output names).

    Raises:
        StoreError: the name is empty, too long, or has characters outside ``[A-Za-z0-9._-]``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(
            f"invalid {kind} {name!r}",
            hint="use 1-128 characters from A-Z a-z 0-9 . _ - starting with a letter or digit",
        )
    return name


def temp_path(directory: Path, final_name: str) -> Path:
    """A fresh temporary name in ``directory`` for a file that will become ``final_name``."""
    return directory / f"{TEMP_PREFIX}{secrets.token_hex(4)}-{final_name}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one.

    Raises:
        StoreError: the file cannot be written.
    """
    make_dirs(path.parent)
    tmp = temp_path(path.parent, path.name)
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
