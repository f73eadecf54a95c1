from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from modelops_contracts.schema import schemas, write_schemas

CHECKED_IN = Path(__file__).parents[2] / "schemas"


def test_checked_in_schemas_are_current() -> None:
    for name, schema in schemas().items():
        on_disk = json.loads((CHECKED_IN / name).read_text())
        assert on_disk == schema, f"schemas/{name} is stale: run `mops schema schemas`"


def test_module_entry_point_writes_the_schemas(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "modelops_contracts.schema", str(tmp_path)], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.schema.json", "study.schema.json"]
    assert write_schemas(tmp_path / "x")[0].exists()


def test_study_schema_describes_the_fields() -> None:
    study = schemas()["study.schema.json"]
    assert {"model", "parameter_sets", "n_replicates"} <= set(study["properties"])
    assert "model" in study["required"]
