"""``mops env``: the bundle environments cached in the store (built with uv); and the
environment ``--env`` chooses for ``mops run`` and ``mops calibrate``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelops.cli._app import app, command, fail
from modelops.cli._coerce import Group
from modelops.cli._options import BundleOption, StoreOption
from modelops.cli._progress import StepDisplay

if TYPE_CHECKING:
    from modelops.envs import Environment

env_app = typer.Typer(help="Bundle environments.", no_args_is_help=True, cls=Group)
app.add_typer(env_app, name="env")


def chosen_environment(
    bundle: Path, store_root: Path, mode: str, *, quiet: bool
) -> Environment | None:
    """The environment ``--env mode`` runs the bundle's tasks in (built now, with progress, if
    needed), or None for this Python; a ``warning:`` line when ``current`` misses its pins."""
    import warnings

    from modelops.envs import EnvironmentWarning, environment_for

    with warnings.catch_warnings(record=True) as caught, StepDisplay(quiet=quiet) as steps:
        warnings.simplefilter("always", EnvironmentWarning)
        found = environment_for(bundle, store_root / "envs", mode, on_progress=steps)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    return found


def _cache(store: Path | None) -> Path:
    from modelops.store import default_store

    return Path(store or default_store()) / "envs"


@command("build", app=env_app)
def build_command(
    bundle: BundleOption = Path(),
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the environment as JSON.")] = False,
) -> None:
    """Build (or reuse) the environment of the bundle's declared requirements."""
    from modelops.envs import declared_requirements, ensure_environment

    if not bundle.is_dir():
        raise fail(f"--bundle: no directory {bundle}")
    requirements = declared_requirements(bundle, _cache(store))
    if requirements is None:
        raise fail(
            f"bundle {bundle} declares no requirements (requirements.txt, pyproject.toml "
            "[project].dependencies, uv.lock or requirements.lock)"
        )
    started = time.monotonic()
    with StepDisplay(quiet=as_json) as steps:
        env = ensure_environment(requirements, _cache(store), on_progress=steps)
    if as_json:
        typer.echo(json.dumps({"key": env.key, "path": str(env.path), **env.record}))
        return
    typer.echo(
        f"environment {env.key} ({requirements.source}, {len(requirements.pins)} pins) ready "
        f"in {time.monotonic() - started:.2f} s: {env.python}"
    )


@command("list", app=env_app)
def list_command(
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the cached environments, most recently used first."""
    from modelops.envs import list_environments

    envs = list_environments(_cache(store))
    if as_json:
        typer.echo(json.dumps([{"key": e.key, "path": str(e.path), **e.record} for e in envs]))
        return
    if not envs:
        typer.echo("no environments")
        return
    for env in envs:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(env.record.get("last_used", 0)))
        pins = ", ".join(env.record.get("requirements", [])) or "no requirements"
        typer.echo(f"{env.key}  python {env.record.get('python')}  used {used}  {pins}")


@command("prune", app=env_app)
def prune_command(
    store: StoreOption = None,
    older_than: Annotated[
        float,
        typer.Option("--older-than", min=0.0, help="Keep environments used within DAYS days."),
    ] = 30.0,
) -> None:
    """Remove the environments not used for --older-than days (and half-built leftovers)."""
    from modelops.envs import prune_environments

    removed = prune_environments(_cache(store), older_than_days=older_than)
    typer.echo(
        f"removed {len(removed)} environment(s)" + (f": {', '.join(removed)}" if removed else "")
    )
