"""``mops``: a thin command line over the ModelOps Python API."""

from __future__ import annotations

from modelops.cli import (  # noqa: F401  (registers commands)
    _analysis,
    _bundle,
    _calibrate,
    _env,
    _files,
    _jobs,
    _sample,
    _sensitivity,
)
from modelops.cli._app import app, run_app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    raise SystemExit(run_app())
