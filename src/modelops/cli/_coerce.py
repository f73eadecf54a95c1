"""Command-line values without pydantic in the common cases, so ``mops`` starts fast.

Typer 0.2x converts every parameter through a pydantic ``TypeAdapter``, built even for an absent
option; importing pydantic costs ``mops status`` more than the rest of its start-up, and it
delays ``mops run`` before its first process starts. Here a parameter of type ``str``, ``Path``,
``bool``, ``int`` or ``float`` gets a converter that gives what the adapter gives for the values
that need no parsing rules: ``None``; a str for ``str``; a bool for a flag; a str for a path
(``Path(value)``, then typer's own path checks); a number (a default, or plain decimal digits)
within the parameter's ``min``/``max``. Every other value (a flag's text, ``1e3``, a number out
of range) goes to typer's own converter, so results and error messages stay typer's. With a
typer that converts without pydantic, nothing changes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.core

__all__ = ["Command", "Group"]

_PLAIN_TYPES = (str, Path, bool, int, float)
_DIGITS = {int: re.compile(r"[0-9]{1,18}"), float: re.compile(r"[0-9]{1,15}(\.[0-9]{1,15})?")}


class _Plain:
    """A parameter's converter (typer calls ``coerce``); builds typer's own one only for a
    value it does not handle itself."""

    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor
        self._typers: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        kind = self.descriptor.annotation
        info = self.descriptor.parameter_info
        if value is None or (kind is bool and isinstance(value, bool)):
            return value
        if kind is str and isinstance(value, str):
            return value
        if kind is Path and isinstance(value, str):
            from typer._param_types import coerce_cli_path

            return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
        number = _plain_number(kind, value)
        if number is not None and not info.clamp and _within(number, info.min, info.max):
            return number
        if self._typers is None:
            from typer._coercion import build_runtime_param

            self._typers = build_runtime_param(self.descriptor)
        return self._typers.coerce(value, param=param, ctx=ctx)


def _plain_number(kind: Any, value: Any) -> int | float | None:
    """``value`` as an ``int`` or ``float`` parameter takes it, if that needs no parsing rules."""
    if kind not in _DIGITS or isinstance(value, bool):
        return None
    if type(value) is kind:
        return value  # type: ignore[no-any-return]
    if isinstance(value, str) and _DIGITS[kind].fullmatch(value):
        return kind(value)  # type: ignore[no-any-return]
    return None


def _within(number: float, low: float | None, high: float | None) -> bool:
    return (low is None or number >= low) and (high is None or number <= high)


def _convert_plainly(param: Any) -> None:
    """Give ``param`` the plain converter if it takes one value of a plain type, no parser."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", False) is not None:
        return  # a typer without the pydantic coercion layer, or converted already
    info = descriptor.parameter_info
    if descriptor.annotation not in _PLAIN_TYPES or descriptor.file_annotation is not None:
        return
    if info.parser is not None or info.path_type is not None or param.multiple or param.nargs != 1:
        return
    param._runtime_param = _Plain(descriptor)


class Command(typer.core.TyperCommand):
    """A typer command whose plain parameters convert without pydantic."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # with the --help option, made when asked for
        for param in params:
            _convert_plainly(param)
        return params


class Group(typer.core.TyperGroup):
    """A typer group (``mops``, ``mops bundle``) whose own options convert without pydantic."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            _convert_plainly(param)
        return params
