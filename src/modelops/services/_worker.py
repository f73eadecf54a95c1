"""What a pool worker process runs around each chunk (shared by the local and Dask backends)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from modelops.runtime.spec import ChunkResult, ChunkSpec

__all__ = ["PRELOAD", "init_worker", "run_in_worker"]

# Imported once in the fork server, so every worker starts with them. pyarrow imports pandas
# (when installed) the first time it builds an array, which would cost each fresh worker ~0.5 s
# on its first chunk. The fork server skips modules that are not installed.
PRELOAD = ("modelops.runtime.chunk", "pandas")

_log_target: list[str | None] = [None]


def init_worker() -> None:
    """Worker initializer: Ctrl-C is the driver's business; it stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _redirect_output(log_path: str) -> None:
    """Whatever a model prints below Python (C code, subprocesses) goes to the job log."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _log_target[0] = log_path


def run_in_worker(spec: ChunkSpec, on_position: Any) -> ChunkResult:
    """Run one chunk in this worker process, its low-level output sent to the job log."""
    from modelops.runtime.chunk import run_chunk  # preloaded in workers; the driver never needs it

    if spec.log_path is not None and spec.log_path != _log_target[0]:
        _redirect_output(spec.log_path)
    return run_chunk(spec, on_task_start=on_position)
