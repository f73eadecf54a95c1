"""Provenance: versions of the installed distributions a model's code imports directly."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterable, Mapping
from types import ModuleType

from modelops.runtime.loader import bundle_modules

__all__ = ["model_packages"]

_cache: dict[str, dict[str, str]] = {}
_by_module: Mapping[str, list[str]] | None = None


def model_packages(bundle_dir: str) -> dict[str, str]:
    """``{distribution: version}`` for the top-level packages the bundle's modules refer to.

    Looks at the globals of every module imported from ``bundle_dir`` (modules, and the modules
    that functions and classes come from), so the answer depends only on the model's code, not
    on what else this process happened to import. Computed once per bundle per process.
    """
    cached = _cache.get(bundle_dir)
    if cached is None:
        modules = bundle_modules(bundle_dir)
        own = {name.partition(".")[0] for name in modules}
        tops = _referenced_tops(modules.values()) - own
        cached = {}
        for top in sorted(tops):
            for distribution in _distributions(top):
                try:
                    cached[distribution] = importlib.metadata.version(distribution)
                except importlib.metadata.PackageNotFoundError:
                    continue
        _cache[bundle_dir] = dict(sorted(cached.items()))
        cached = _cache[bundle_dir]
    return dict(cached)


def _referenced_tops(modules: Iterable[ModuleType]) -> set[str]:
    tops: set[str] = set()
    for module in modules:
        for value in list(vars(module).values()):
            try:
                name = value.__name__ if isinstance(value, ModuleType) else value.__module__
            except Exception:
                continue
            if isinstance(name, str) and name:
                tops.add(name.partition(".")[0])
    return {
        top
        for top in tops
        if top not in sys.stdlib_module_names and not top.startswith("_") and top != "builtins"
    }


def _distributions(top: str) -> list[str]:
    global _by_module
    try:
        importlib.metadata.distribution(top)
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        return [top]
    if _by_module is None:
        # Slow (reads every installed distribution's file list): only when a name does not match.
        _by_module = importlib.metadata.packages_distributions()
    return sorted(set(_by_module.get(top, ())))
