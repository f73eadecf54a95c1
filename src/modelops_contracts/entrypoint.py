"""Entrypoint grammar: ``import.path.Object/scenario``."""

from __future__ import annotations

import re

from modelops_contracts.errors import ContractViolationError

__all__ = [
    "DEFAULT_SCENARIO",
    "format_entrypoint",
    "parse_entrypoint",
    "validate_import_path",
    "validate_scenario",
]

DEFAULT_SCENARIO = "baseline"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")
_SCENARIO_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")


def validate_import_path(import_path: str) -> str:
    """Return ``import_path`` if it is a dotted Python path with at least two parts."""
    if not isinstance(import_path, str) or not _IMPORT_PATH_RE.match(import_path):
        raise ContractViolationError(
            f"import path must be dotted Python identifiers like 'pkg.module.Model', "
            f"got {import_path!r}",
            field="import_path",
            value=import_path,
        )
    if "." not in import_path:
        raise ContractViolationError(
            f"import path must name a module and an object ('module.Object'), got {import_path!r}",
            field="import_path",
            value=import_path,
        )
    return import_path


def validate_scenario(scenario: str) -> str:
    """Return ``scenario`` if it is a lowercase slug of 1-64 chars (a-z0-9 . _ -)."""
    if not isinstance(scenario, str) or not _SCENARIO_RE.match(scenario):
        raise ContractViolationError(
            "scenario must be 1-64 chars of a-z, 0-9, '.', '_', '-', starting and ending "
            f"with a letter or digit, got {scenario!r}",
            field="scenario",
            value=scenario,
        )
    return scenario


def format_entrypoint(import_path: str, scenario: str = DEFAULT_SCENARIO) -> str:
    """Join an import path and a scenario into ``import.path.Object/scenario``."""
    return f"{validate_import_path(import_path)}/{validate_scenario(scenario)}"


def parse_entrypoint(entrypoint: str) -> tuple[str, str]:
    """Split ``import.path.Object/scenario`` into ``(import_path, scenario)``, validating both."""
    if not isinstance(entrypoint, str) or entrypoint.count("/") != 1:
        raise ContractViolationError(
            f"entrypoint must look like 'import.path.Object/scenario', got {entrypoint!r}",
            field="entrypoint",
            value=entrypoint,
        )
    import_path, scenario = entrypoint.split("/")
    return validate_import_path(import_path), validate_scenario(scenario)
