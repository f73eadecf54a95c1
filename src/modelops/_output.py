"""Writing a file the user asked for (``-o``) or that analysis leaves beside a job.

A path that cannot be written (a read-only store, a missing directory, a full disk) is the
user's to fix, so it becomes one :class:`~modelops_contracts.ModelOpsError` naming the file,
never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelops_contracts.errors import ModelOpsError

__all__ = ["write_output"]


def write_output(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Create ``path``'s directory, call ``write(path)`` and return the path.

    Raises:
        ModelOpsError: the directory or the file cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    except OSError as exc:
        raise ModelOpsError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
