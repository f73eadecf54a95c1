"""Spaces and fixed values from what a user types: a Model path or a space file, ``name=value``.

:func:`load_space` turns a source (a Model's import path inside a bundle, or a space file) into a
:class:`ParameterSpace` that knows its model; :func:`parse_fixes` reads ``name=value`` items into
the values :meth:`ParameterSpace.with_fixed` takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from modelops_contracts.entrypoint import DEFAULT_SCENARIO
from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    from modelops.model import Parameter
    from modelops.sampling._space import ParameterSpace, Value

__all__ = ["is_space_file", "load_space", "parse_fixes"]

_SPACE_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")
"""File names ending so are read as space files, whether or not they exist yet."""


def is_space_file(source: object) -> bool:
    """Whether ``source`` names a space file (by its suffix, or because it is a file), not a
    Model's import path."""
    if not isinstance(source, str | Path):
        return False
    return str(source).lower().endswith(_SPACE_SUFFIXES) or Path(source).is_file()


def load_space(
    source: str | Path,
    bundle: str | Path = ".",
    *,
    model: str | None = None,
    scenario: str = DEFAULT_SCENARIO,
    declared: Callable[[Path, str], tuple[Parameter, ...] | None] | None = None,
) -> ParameterSpace:
    """The space of ``source``: a space file, or the parameters a Model in ``bundle`` declares.

    ``source`` is a space file when it ends in ``.yaml``, ``.yml`` or ``.json`` or is an
    existing file; then ``model`` (the import path of the model it describes) is required.
    Otherwise ``source`` is a Model's import path inside ``bundle`` (``sir_model.SIR``),
    imported for ``scenario``; ``model``, if given, replaces it as the space's model path.
    ``declared(bundle, entrypoint)`` reads the parameters instead of an import in this process
    (:func:`modelops.services.parameters_in` imports the model in a bundle environment).

    Raises:
        ContractViolationError: a space file without ``model`` (``field="model"``), a bad
            space file, or a model that declares no parameters (``field="parameters"``).
        ModelError: the model cannot be imported or has no such scenario.
    """
    from modelops.sampling._space import ParameterSpace  # numpy: only when a space is made

    text = str(source)
    if is_space_file(text):
        if model is None:
            raise ContractViolationError(
                "a space file needs the model's import path", field="model"
            )
        space = ParameterSpace.from_file(text)
        return ParameterSpace(space.parameters, space.fixed, model, space.declared)
    entrypoint = f"{text}/{scenario}"
    if declared is None:
        from modelops.runtime.loader import load_entrypoint

        parameters = load_entrypoint(Path(bundle), entrypoint).parameters
    else:
        parameters = declared(Path(bundle), entrypoint)
    if not parameters:
        raise ContractViolationError(
            f"{text} declares no parameters to sample; write a space file", field="parameters"
        )
    return ParameterSpace.from_parameters(parameters, model=model or text)


def parse_fixes(items: Iterable[str]) -> dict[str, Value]:
    """``name=value`` items as ``{name: number}`` (an int when the value reads as one).

    Raises:
        ContractViolationError: an item is not ``name=value``, or its value is not a number
            (``field="fix"``).
    """
    values: dict[str, Value] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ContractViolationError(
                f"fixed value {item!r} is not name=value", field="fix", value=item
            )
        try:
            values[name] = int(text)
        except ValueError:
            try:
                values[name] = float(text)
            except ValueError:
                raise ContractViolationError(
                    f"fixed value of {name!r} must be a number, got {text!r}",
                    field="fix",
                    value=item,
                ) from None
    return values
