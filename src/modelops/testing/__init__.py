"""Test helpers that ship with ModelOps: the contract suite every chunk backend must pass.

Importing this package imports pytest; ModelOps itself never imports it. See
:mod:`modelops.testing.backends` for how to run the suite against a backend.
"""

from __future__ import annotations

from modelops.testing._bundle import (
    ENV_VERSIONS,
    ContractStore,
    environment_of,
    write_contract_store,
    write_environment_bundles,
)
from modelops.testing.backends import (
    BackendTests,
    CrashTests,
    EnvironmentTests,
    TimeoutTests,
    chunk_spec,
    collect_events,
    read_output,
    start_bundle,
)

__all__ = [
    "ENV_VERSIONS",
    "BackendTests",
    "ContractStore",
    "CrashTests",
    "EnvironmentTests",
    "TimeoutTests",
    "chunk_spec",
    "collect_events",
    "environment_of",
    "read_output",
    "start_bundle",
    "write_contract_store",
    "write_environment_bundles",
]
