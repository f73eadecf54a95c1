"""The model bundles the backend contract tests run: small functions with known behaviour.

``contract_model`` (every function takes an int ``x``):

- ``rows``: one ``summary`` row (``x_twice``, ``seed_mod``) and ``SERIES_ROWS`` ``series`` rows
  (``step``, ``value`` = 10 x + step);
- ``sparse``: ``x`` rows of ``series`` (none for x = 0);
- ``boom``: raises ``ValueError`` for x == ``BAD_X``; ``die``: ``os._exit(DIE_EXIT)`` for it;
- ``sleepy``: sleeps ``params["t"]`` seconds;
- ``tagged``: one ``summary`` row naming its scenario (``scenario_name``) and ``config["mode"]``;
- ``chatty``: prints a line naming x.

The runtime adds the task's keys and parameters to every row, so no model names them itself.

``crash_at_import`` ends its process while it is imported (``os._exit(IMPORT_EXIT)``), before
any task starts. The variant bundle holds a ``contract_model`` whose ``rows`` marks its rows
``variant = 1``, to tell two snapshots of the same module apart.

The environment bundles (:func:`write_environment_bundles`), one per ``ENV_VERSIONS`` pin of
``packaging``, hold ``env_model.version``: one ``summary`` row with the ``packaging`` version the
task imported and the ``pid`` of the process it ran in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.bundle import BundleStore, materialize
from modelops.envs import Environment, environment_for
from modelops_contracts import SimTask

__all__ = [
    "BAD_X",
    "DIE_EXIT",
    "ENV_VERSIONS",
    "IMPORT_EXIT",
    "SERIES_ROWS",
    "ContractStore",
    "environment_of",
    "write_contract_store",
    "write_environment_bundles",
]

SERIES_ROWS = 3
BAD_X = 3
DIE_EXIT = 3
IMPORT_EXIT = 4
ENV_VERSIONS = ("23.2", "24.1")

_MODEL = f'''
"""Models of the backend contract tests (written by modelops.testing)."""

import os
import time

import numpy as np


def rows(params, seed):
    x = params["x"]
    steps = list(range({SERIES_ROWS}))
    return {{
        "summary": {{"x_twice": 2 * x, "seed_mod": seed % 1000}},
        "series": {{"step": steps, "value": [x * 10 + s for s in steps]}},
    }}


def sparse(params, seed):
    return {{"series": {{"step": np.arange(params["x"], dtype=np.int64)}}}}


def boom(params, seed):
    if params["x"] == {BAD_X}:
        raise ValueError("x must not be {BAD_X}")
    return rows(params, seed)


def die(params, seed):
    if params["x"] == {BAD_X}:
        os._exit({DIE_EXIT})
    return rows(params, seed)


def sleepy(params, seed):
    time.sleep(params["t"])
    return {{"summary": {{"slept": params["t"]}}}}


def tagged(params, seed, scenario, config):
    mode = (config or {{}}).get("mode", "")
    return {{"summary": {{"scenario_name": scenario, "mode": mode}}}}


def chatty(params, seed):
    print(f"contract-chatty x={{params['x']}}")
    return {{"summary": {{"said": 1}}}}
'''

_VARIANT = '''
"""The variant snapshot: the same module, other code."""


def rows(params, seed):
    return {"summary": {"variant": 1}}
'''

_CRASH_AT_IMPORT = f'''
"""Ends the process that imports it, before any task of a chunk starts."""

import os

os._exit({IMPORT_EXIT})


def run(params, seed):
    return {{}}
'''


_ENV_MODEL = '''
"""Names the packaging release it imported and the process it ran in."""
import os

import packaging


def version(params, seed):
    return {"summary": {"packaging": packaging.__version__, "pid": os.getpid()}}
'''


@dataclass(frozen=True)
class ContractStore:
    """A store root holding the contract bundle and its variant, and how to make their tasks."""

    root: Path
    bundle_ref: str
    variant_ref: str

    @property
    def cache_dir(self) -> Path:
        """Where backends that share the filesystem extract the snapshots."""
        return BundleStore(self.root).cache_dir

    def zip_of(self, bundle_ref: str) -> Path:
        """The stored snapshot of ``bundle_ref``."""
        return BundleStore(self.root).path(bundle_ref)

    def tasks(
        self,
        function: str,
        params: Sequence[dict[str, Any]],
        *,
        scenario: str = "baseline",
        outputs: Sequence[str] | None = None,
        config: dict[str, Any] | None = None,
        bundle_ref: str | None = None,
        module: str = "contract_model",
    ) -> list[SimTask]:
        """One task per parameter set of ``module.function``, seeds 1, 2, ..."""
        return [
            SimTask.from_components(
                f"{module}.{function}",
                scenario,
                bundle_ref or self.bundle_ref,
                p,
                seed,
                outputs=outputs,
                config=config,
            )
            for seed, p in enumerate(params, start=1)
        ]


def write_contract_store(directory: Path) -> ContractStore:
    """Write both bundles under ``directory`` and snapshot them into ``directory/store``."""
    main, variant = directory / "contract-bundle", directory / "contract-variant"
    for path, files in (
        (main, {"contract_model.py": _MODEL, "crash_at_import.py": _CRASH_AT_IMPORT}),
        (variant, {"contract_model.py": _VARIANT}),
    ):
        path.mkdir(parents=True)
        for name, text in files.items():
            (path / name).write_text(text, encoding="utf-8")
    bundles = BundleStore(directory / "store")
    return ContractStore(directory / "store", bundles.put(main), bundles.put(variant))


def write_environment_bundles(store: ContractStore) -> dict[str, str]:
    """Snapshot one bundle per ``ENV_VERSIONS`` pin into ``store``; the bundle ref of each."""
    bundles = BundleStore(store.root)
    refs = {}
    for version in ENV_VERSIONS:
        path = store.root.parent / f"env-bundle-{version}"
        path.mkdir(parents=True)
        (path / "env_model.py").write_text(_ENV_MODEL, encoding="utf-8")
        (path / "requirements.txt").write_text(f"packaging=={version}\n", encoding="utf-8")
        refs[version] = bundles.put(path)
    return refs


def environment_of(store: ContractStore, bundle_ref: str) -> Environment:
    """The environment of a stored bundle that declares requirements, built under
    ``store.root / "envs"`` unless it already is (with uv, from PyPI)."""
    bundle = materialize(bundle_ref, store.zip_of(bundle_ref), store.cache_dir)
    environment = environment_for(bundle, store.root / "envs", "auto")
    if environment is None:
        raise ValueError(f"bundle {bundle_ref} declares no requirements")
    return environment
