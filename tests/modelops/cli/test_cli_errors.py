"""The CLI's error boundary: user errors are one line and exit 2, anything else is a bug.

A tiny app built with ``command(app=...)`` runs in a real interpreter, as ``mops`` does, so the
test sees what a user would: the exit code and stderr.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP = textwrap.dedent(
    """
    import sys

    import typer

    from modelops.cli._app import command, run_app
    from modelops_contracts import ContractViolationError, StoreError

    app = typer.Typer()


    @command("value-bug", app=app)
    def value_bug() -> None:
        raise ValueError("an internal ValueError, not bad input")


    @command("runtime-bug", app=app)
    def runtime_bug() -> None:
        raise RuntimeError("an internal RuntimeError")


    @command("bad-value", app=app)
    def bad_value() -> None:
        raise ContractViolationError("x must be positive, got -1", field="x")


    @command("bad-store", app=app)
    def bad_store() -> None:
        raise StoreError("no store here", hint="run a study first")


    raise SystemExit(run_app(sys.argv[1:], app=app))
    """
)


def run_app(tmp_path: Path, command: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(APP, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script), command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("value-bug", "ValueError: an internal ValueError, not bad input"),
        ("runtime-bug", "RuntimeError: an internal RuntimeError"),
    ],
)
def test_an_internal_error_exits_1_with_its_traceback(
    tmp_path: Path, command: str, error: str
) -> None:
    result = run_app(tmp_path, command)
    assert result.returncode == 1, result
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == error
    assert "error: " not in result.stderr.splitlines()[0]


@pytest.mark.parametrize(
    ("command", "line"),
    [
        ("bad-value", "error: x must be positive, got -1"),
        ("bad-store", "error: no store here (run a study first)"),
    ],
)
def test_a_user_error_is_one_line_and_exits_2(tmp_path: Path, command: str, line: str) -> None:
    result = run_app(tmp_path, command)
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [line]
