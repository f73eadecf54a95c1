"""The Typer application and the one place CLI errors become exit codes.

Only the user's errors become an ``error:`` line and exit 2: :class:`ContractViolationError`
(bad values) and :class:`ModelOpsError` (everything else a user can act on). Any other exception
is a bug in ModelOps or in the model code it called, and ends with its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from modelops.cli._coerce import Command, Group
from modelops_contracts.errors import ContractViolationError, ModelOpsError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "app",
    "command",
    "fail",
    "run_app",
]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="mops",
    cls=Group,
    help="ModelOps: run simulation studies, cache every task, read the results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say "[default: ...]": plain text, not rich markup
)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``error: message`` on one stderr line and return the Exit to raise."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return typer.Exit(code)


def command(*args: Any, app: typer.Typer = app, **kwargs: Any) -> Callable[[F], F]:
    """Register a command whose contract and ModelOps errors end as one line and exit 2.

    Other exceptions (a plain ``ValueError`` included) are not caught: they are bugs, and their
    traceback is what a bug report needs.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return fn(*a, **kw)
            except (ContractViolationError, ModelOpsError) as err:
                raise fail(str(err)) from None
            except KeyboardInterrupt:
                raise fail("interrupted", EXIT_INTERRUPTED) from None

        app.command(*args, cls=kwargs.pop("cls", Command), **kwargs)(wrapper)
        return fn

    return decorate


def run_app(args: list[str] | None = None, *, app: typer.Typer = app) -> int:
    """Run ``mops`` (or another ``app`` built with :func:`command`) and return its exit code.

    Usage errors (an unknown option, ``--workers 0``) end like every other bad input: one
    ``error:`` line on stderr and exit 2, not a multi-line usage box.
    """
    try:
        code = app(args=args, standalone_mode=False)
    except typer.TyperException as err:  # click's usage errors, as vendored by typer
        if type(err).__name__ == "NoArgsIsHelpError":
            return EXIT_BAD_INPUT  # the help text is already printed
        ctx = getattr(err, "ctx", None)
        see = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        return fail(err.format_message() + see).exit_code
    except typer.Abort:
        return fail("aborted", EXIT_INTERRUPTED).exit_code
    return code if isinstance(code, int) else 0
