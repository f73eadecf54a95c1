"""What runs inside a worker: load a model from a bundle, run chunks of tasks, build tables.

Imports only the standard library, numpy, pyarrow and the contracts, so a worker starts fast;
pandas and polars are touched only when a model returns their frames.
"""

from __future__ import annotations

from modelops.runtime.chunk import ChunkResult, ChunkSpec, ChunkTask, TaskOutcome, run_chunk
from modelops.runtime.loader import (
    ModelInfo,
    Runner,
    bundle_modules,
    load_entrypoint,
    resolve_entrypoint,
    unload_bundles,
)
from modelops.runtime.tables import KEY_COLUMNS, check_output_name, scalar_row, to_table

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
