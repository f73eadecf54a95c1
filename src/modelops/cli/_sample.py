"""``mops sample``: design a study from a Model's parameters or a space file."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelops.cli._app import command
from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    from modelops.sampling import ParameterSpace
    from modelops_contracts import SimulationStudy

_SPACE_SUFFIXES = (".yaml", ".yml", ".json")


@command("sample")
def sample_command(
    method: Annotated[str, typer.Argument(help="grid, random, lhs or sobol.")],
    source: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_OR_SPACE",
            help="A Model's import path inside --bundle (sir_model.SIR), or a space file.",
        ),
    ],
    n: Annotated[int, typer.Option("--n", min=1, help="Sample size (grid: points per parameter).")],
    replicates: Annotated[
        int, typer.Option("--replicates", min=1, help="Seeds per parameter set.")
    ] = 1,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Sampler seed [default: random].")
    ] = None,
    scenario: Annotated[str, typer.Option("--scenario", help="Scenario to run.")] = "baseline",
    fix: Annotated[
        list[str] | None, typer.Option("--fix", help="Hold a parameter: name=value (repeat).")
    ] = None,
    bundle: Annotated[Path, typer.Option("--bundle", help="Model code directory.")] = Path(),
    model: Annotated[
        str | None, typer.Option("--model", help="The model's import path (space files).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Study file to write [default: stdout].")
    ] = None,
) -> None:
    """Write a study: a grid, random, Latin hypercube or Sobol design over a parameter space.

    The same arguments and --seed give the same file, byte for byte; `mops run` takes it as is.
    """
    from modelops.sampling import SAMPLERS, SobolSampleSizeWarning

    sampler = SAMPLERS.get(method)
    if sampler is None:
        raise ContractViolationError(
            f"METHOD must be one of {', '.join(SAMPLERS)}, got {method!r}", field="method"
        )
    space = _load_space(source, bundle, scenario, model).with_fixed(_parse_fixes(fix or []))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SobolSampleSizeWarning)
        study = sampler(space, n, seed=seed, replicates=replicates, scenario=scenario, model=model)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    text = study.to_json(indent=2) + "\n" if _is_json(output) else study.to_yaml()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
    for line in _summary(study, space, output, bundle):
        typer.echo(line, err=output is None)


def _load_space(source: str, bundle: Path, scenario: str, model: str | None) -> ParameterSpace:
    from modelops.sampling import ParameterSpace

    if source.lower().endswith(_SPACE_SUFFIXES) or Path(source).is_file():
        if model is None:
            raise ContractViolationError(
                "--model: a space file needs the model's import path", field="model"
            )
        return ParameterSpace.from_file(source)
    from modelops.runtime.loader import load_entrypoint

    runner = load_entrypoint(bundle, f"{source}/{scenario}")
    if not runner.parameters:
        raise ContractViolationError(
            f"{source} declares no parameters to sample; write a space file", field="model"
        )
    return ParameterSpace.from_parameters(runner.parameters, model=source)


def _parse_fixes(fixes: list[str]) -> dict[str, int | float]:
    values: dict[str, int | float] = {}
    for item in fixes:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ContractViolationError(f"--fix takes name=value, got {item!r}", field="fix")
        try:
            values[name.strip()] = int(text)
        except ValueError:
            try:
                values[name.strip()] = float(text)
            except ValueError:
                raise ContractViolationError(
                    f"--fix {name.strip()}: value must be a number, got {text!r}", field="fix"
                ) from None
    return values


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
    if output is not None:
        where = f" --bundle {bundle}" if bundle != Path() else ""
        lines.append(f"wrote {output}; run it with: mops run {output}{where}")
    return lines
