"""``mops bundle``: inspect model-code bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelops.cli._app import app, command
from modelops.cli._coerce import Group

bundle_app = typer.Typer(help="Model code bundles.", no_args_is_help=True, cls=Group)
app.add_typer(bundle_app, name="bundle")


@command("digest", app=bundle_app)
def digest_command(
    directory: Annotated[Path, typer.Argument(help="Bundle directory.")] = Path(),
) -> None:
    """Print the bundle's content digest (the bundle_ref jobs are bound to)."""
    from modelops.bundle import compute_digest

    typer.echo(compute_digest(directory))
