"""JSON Schemas of the study and job file formats; ``python -m modelops_contracts.schema DIR``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from modelops_contracts._job_format import job_json_schema
from modelops_contracts.study import SimulationStudy

__all__ = ["schemas", "write_schemas"]


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema for every format ModelOps reads and writes."""
    study = SimulationStudy.model_json_schema()
    study["title"] = "SimulationStudy"
    return {"study.schema.json": study, "job.schema.json": job_json_schema()}


def write_schemas(directory: str | Path) -> list[Path]:
    """Write every schema into ``directory`` (created if needed); return the paths written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = out / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - thin CLI
    for p in write_schemas(sys.argv[1] if len(sys.argv) > 1 else "schemas"):
        print(p)
