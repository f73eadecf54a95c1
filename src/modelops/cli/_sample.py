"""``mops sample``: design a study from a Model's parameters or a space file."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelops._output import write_output
from modelops.cli._app import command, fail
from modelops.cli._env import chosen_environment
from modelops.cli._options import (
    BundleOption,
    EnvOption,
    FixOption,
    ModelOption,
    ScenarioOption,
    StoreOption,
)
from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    from modelops.sampling import ParameterSpace
    from modelops_contracts import SimulationStudy


@command("sample")
def sample_command(
    method: Annotated[str, typer.Argument(help="grid, random, lhs, sobol, saltelli or morris.")],
    source: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_OR_SPACE",
            help="A Model's import path inside --bundle (sir_model.SIR), or a space file.",
        ),
    ],
    n: Annotated[
        int | None,
        typer.Option(
            "--n", min=1, help="Sample size (grid: points per parameter; saltelli: base samples)."
        ),
    ] = None,
    second_order: Annotated[
        bool, typer.Option("--second-order", help="saltelli: also pairwise indices (S2).")
    ] = False,
    trajectories: Annotated[
        int | None, typer.Option("--trajectories", min=1, help="morris: number of trajectories.")
    ] = None,
    levels: Annotated[
        int | None, typer.Option("--levels", min=2, help="morris: grid levels [default: 4].")
    ] = None,
    replicates: Annotated[
        int, typer.Option("--replicates", min=1, help="Seeds per parameter set.")
    ] = 1,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Sampler seed [default: random].")
    ] = None,
    scenario: ScenarioOption = "baseline",
    fix: FixOption = None,
    bundle: BundleOption = Path(),
    model: ModelOption = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Study file to write [default: stdout].")
    ] = None,
    store: StoreOption = None,
    env: EnvOption = "auto",
) -> None:
    """Write a study: a grid, random, Latin hypercube or Sobol design over a parameter space,
    or a sensitivity design (saltelli for Sobol' indices, morris for elementary effects).

    The same arguments and --seed give the same file, byte for byte; `mops run` takes it as is,
    and `mops sensitivity` analyses the job of a saltelli or morris design. A bundle that
    declares requirements has its model imported in its own environment (built in --store).
    """
    from modelops.sampling import SobolSampleSizeWarning, is_space_file, load_space, parse_fixes
    from modelops.sensitivity import RepeatedDesignWarning
    from modelops.store import default_store

    sampler = _sampler(method, n, second_order, trajectories, levels)
    try:
        environment = None
        if not is_space_file(source):  # a space file names the model without importing it
            environment = chosen_environment(bundle, store or default_store(), env, quiet=False)
        declared = None
        if environment is not None:  # its model imports in a worker of the environment
            from modelops.services import parameters_in

            declared = parameters_in(environment.python)
        space = load_space(source, bundle, model=model, scenario=scenario, declared=declared)
    except ContractViolationError as err:
        if err.field not in ("model", "env"):
            raise
        raise fail(f"--{err.field}: {err}") from None
    try:
        fixed = parse_fixes(fix or [])
    except ContractViolationError as err:
        raise fail(f"--fix: {err}") from None
    space = space.with_fixed(fixed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SobolSampleSizeWarning)
        warnings.simplefilter("always", RepeatedDesignWarning)
        study = sampler(space, seed=seed, replicates=replicates, scenario=scenario, model=model)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    text = study.to_json(indent=2) + "\n" if _is_json(output) else study.to_yaml()
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_output(output, lambda path: path.write_text(text, encoding="utf-8"))
    for line in _summary(study, space, output, bundle):
        typer.echo(line, err=output is None)


_LARGE = 5_000  # parameter sets above which a YAML study takes seconds to read


def _sampler(
    method: str,
    n: int | None,
    second_order: bool,
    trajectories: int | None,
    levels: int | None,
) -> Callable[..., SimulationStudy]:
    """The sampler METHOD names with its size arguments bound; flags of other methods refused."""
    from modelops.sampling import SAMPLERS
    from modelops.sensitivity import DESIGN_METHODS, morris, saltelli

    known = [*SAMPLERS, *DESIGN_METHODS]
    if method not in known:
        raise ContractViolationError(
            f"METHOD must be one of {', '.join(known)}, got {method!r}", field="method"
        )
    if second_order and method != "saltelli":
        raise fail("--second-order is for saltelli designs only")
    if method != "morris" and (trajectories is not None or levels is not None):
        raise fail("--trajectories and --levels are for morris designs only")
    if method == "morris":
        if n is not None:
            raise fail("morris takes --trajectories T, not --n")
        if trajectories is None:
            raise fail("morris needs --trajectories T")
        return partial(morris, trajectories=trajectories, levels=levels or 4)
    if n is None:
        raise fail(f"{method} needs --n N")
    if method == "saltelli":
        return partial(saltelli, n=n, second_order=second_order)
    return partial(SAMPLERS[method], n=n)


def _is_json(output: Path | None) -> bool:
    return output is not None and output.suffix.lower() == ".json"


def _summary(
    study: SimulationStudy, space: ParameterSpace, output: Path | None, bundle: Path
) -> list[str]:
    sets, tasks = study.parameter_count(), study.total_simulation_count()
    meta = study.metadata or {}
    seed = meta.get("seed")
    lines = [
        f"{study.sampling_method} design for {study.model}/{study.scenario}"
        + (f" (seed {seed})" if seed is not None else "")
        + f": {sets} sets x {study.n_replicates} replicates = {tasks} tasks"
    ]
    width = max(len(name) for name in (*space.names, *space.fixed))
    ranges = {p.name: f"[{p.lower}, {p.upper}]" for p in space.parameters}
    span = max(len(text) for text in ranges.values())
    for p in space.parameters:
        scale = "log" if p.log else "linear"
        lines.append(f"  {p.name:<{width}}  {p.kind:<5}  {ranges[p.name]:<{span}}  {scale}")
    for name, value in space.fixed.items():
        lines.append(f"  {name:<{width}}  fixed  {value}")
    design = meta.get("design")
    if isinstance(design, dict):
        size = (
            f"N={design['n']} base samples"
            if design["method"] == "saltelli"
            else f"{design['trajectories']} trajectories on {design['levels']} levels"
        )
        lines.append(
            f"{design['method']} design: {size}, {len(design['rows'])} rows; after the run, "
            "analyse it with: mops sensitivity JOB OUTPUT --value COLUMN"
        )
    if sets > _LARGE and not _is_json(output):
        lines.append(f"hint: a study of {sets} sets reads much faster as JSON: -o FILE.json")
    if output is not None:
        where = f" --bundle {bundle}" if bundle != Path() else ""
        lines.append(f"wrote {output}; run it with: mops run {output}{where}")
    return lines
