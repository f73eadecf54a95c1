"""Commands about file formats: ``mops schema`` and ``mops migrate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from modelops._output import write_output
from modelops.cli._app import command, fail


@command("schema")
def schema_command(
    directory: Annotated[Path, typer.Argument(help="Where to write the schema files.")] = Path(
        "schemas"
    ),
) -> None:
    """Write JSON Schemas of the study and job file formats."""
    from modelops_contracts.schema import write_schemas  # pydantic: loaded on use, not for --help

    if directory.exists() and not directory.is_dir():
        raise fail(f"{directory} is a file: give a directory to write the schemas in")
    try:
        paths = write_schemas(directory)
    except OSError as err:
        raise fail(f"cannot write schemas to {directory}: {err.strerror or err}") from None
    for path in paths:
        typer.echo(str(path))


@command("migrate")
def migrate_command(
    old: Annotated[Path, typer.Argument(help="An old job or study JSON file.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Where to write (default: stdout).")
    ] = None,
) -> None:
    """Rewrite an old job (with batches) or study file in the current format."""
    from modelops_contracts.migration import migrate_file

    kind, doc, was_legacy = migrate_file(old)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_output(output, lambda path: path.write_text(text, encoding="utf-8"))
    note = "converted from the old layout" if was_legacy else "already current; rewritten"
    typer.echo(f"{kind} {note}" + (f" -> {output}" if output else ""), err=True)
