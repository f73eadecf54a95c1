"""What runs inside a worker: load a model from a bundle, run chunks of tasks, build tables.

Imports only the standard library, numpy, pyarrow and the contracts, so a worker starts fast;
pandas and polars are touched only when a model returns their frames. Names load lazily, so the
driver can use :mod:`modelops.runtime.spec` without loading what runs models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelops_contracts._lazy import lazy_getattr

if TYPE_CHECKING:
    from modelops.runtime.chunk import run_chunk
    from modelops.runtime.loader import (
        ModelInfo,
        Runner,
        bundle_modules,
        load_entrypoint,
        resolve_entrypoint,
        unload_bundles,
    )
    from modelops.runtime.spec import ChunkResult, ChunkSpec, ChunkTask, TaskOutcome
    from modelops.runtime.tables import KEY_COLUMNS, check_output_name, scalar_row, to_table

_EXPORTS = {
    "KEY_COLUMNS": "modelops.runtime.tables",
    "ChunkResult": "modelops.runtime.spec",
    "ChunkSpec": "modelops.runtime.spec",
    "ChunkTask": "modelops.runtime.spec",
    "ModelInfo": "modelops.runtime.loader",
    "Runner": "modelops.runtime.loader",
    "TaskOutcome": "modelops.runtime.spec",
    "bundle_modules": "modelops.runtime.loader",
    "check_output_name": "modelops.runtime.tables",
    "load_entrypoint": "modelops.runtime.loader",
    "resolve_entrypoint": "modelops.runtime.loader",
    "run_chunk": "modelops.runtime.chunk",
    "scalar_row": "modelops.runtime.tables",
    "to_table": "modelops.runtime.tables",
    "unload_bundles": "modelops.runtime.loader",
}

__all__ = [
    "KEY_COLUMNS",
    "ChunkResult",
    "ChunkSpec",
    "ChunkTask",
    "ModelInfo",
    "Runner",
    "TaskOutcome",
    "bundle_modules",
    "check_output_name",
    "load_entrypoint",
    "resolve_entrypoint",
    "run_chunk",
    "scalar_row",
    "to_table",
    "unload_bundles",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
