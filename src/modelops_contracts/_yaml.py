"""Undo what YAML 1.1 does to keys, for mappings read from YAML files.

Kept apart from any YAML library: it works on what a loader returned, so importing it loads none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["restore_on_key"]


def restore_on_key(item: Mapping[Any, Any]) -> dict[str, Any]:
    """``item`` with string keys, a ``True`` key turned back into ``"on"``.

    YAML 1.1 (PyYAML) reads a bare ``on:`` key, such as a target's join columns, as the boolean
    true; every other key is converted with ``str``.
    """
    return {("on" if key is True else str(key)): value for key, value in item.items()}
