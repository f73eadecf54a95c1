"""Commands on files: ``mops bundle digest``, ``mops schema`` and ``mops migrate``."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from modelops.bundle import compute_digest
from modelops_contracts import SimJob, SimulationStudy
from tests.modelops.cli.conftest import Result, run_mops, write_bundle

REPO = Path(__file__).resolve().parents[3]
LEGACY = REPO / "tests" / "fixtures" / "legacy"


def one_error_line(result: Result, *needles: str) -> None:
    assert result.code == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_bundle_digest_matches_the_api_and_ignores_mtimes(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle")
    expected = compute_digest(bundle)
    for path in bundle.iterdir():  # every file a day older: the digest must not move
        stat = path.stat()
        os.utime(path, (stat.st_atime - 86400, stat.st_mtime - 86400))
    result = run_mops("bundle", "digest", bundle)
    assert result.code == 0, result.stderr
    assert result.stdout == expected + "\n"
    assert expected.startswith("sha256:") and len(expected) == 7 + 64

    (bundle / "toy.py").write_text((bundle / "toy.py").read_text() + "\n# edited\n")
    changed = run_mops("bundle", "digest", bundle)
    assert changed.stdout.strip() == compute_digest(bundle) != expected

    one_error_line(run_mops("bundle", "digest", tmp_path / "missing"), "missing")


def test_schema_writes_the_checked_in_schemas(tmp_path: Path) -> None:
    result = run_mops("schema", tmp_path / "schemas")
    assert result.code == 0, result.stderr
    written = sorted(Path(line) for line in result.stdout.splitlines())
    assert [p.name for p in written] == ["job.schema.json", "study.schema.json"]
    for path in written:
        json.loads(path.read_text())
        assert path.read_text() == (REPO / "schemas" / path.name).read_text()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("job_one_batch.json", "job"),
        ("job_two_batches.json", "job"),
        ("study_parameter_set_wrappers.json", "study"),
    ],
)
def test_migrate_rewrites_old_files_in_the_current_format(
    tmp_path: Path, name: str, kind: str
) -> None:
    old = LEGACY / name
    new = tmp_path / "new.json"
    result = run_mops("migrate", old, "-o", new)
    assert result.code == 0, result.stderr
    assert result.stderr.splitlines() == [f"{kind} converted from the old layout -> {new}"]
    assert result.stdout == ""
    data = json.loads(new.read_text())
    assert "batches" not in data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new file loads without a DeprecationWarning
        if kind == "job":
            migrated = SimJob.from_json(new.read_text())
            old_data = json.loads(old.read_text())
            old_tasks = [t for batch in old_data["batches"] for t in batch["tasks"]]
            assert migrated.task_count() == len(old_tasks)
            assert [t.seed for t in migrated.tasks] == [t["seed"] for t in old_tasks]
        else:
            study = SimulationStudy.from_json(new.read_text())
            assert study.parameter_count() == len(json.loads(old.read_text())["parameter_sets"])


def test_migrate_to_stdout_and_a_current_file_round_trips(tmp_path: Path) -> None:
    first = run_mops("migrate", LEGACY / "job_two_batches.json")
    assert first.code == 0, first.stderr
    current = tmp_path / "current.json"
    current.write_text(first.stdout)
    again = run_mops("migrate", current)
    assert again.code == 0, again.stderr
    assert "already current" in again.stderr
    assert json.loads(again.stdout) == json.loads(first.stdout)


def test_migrate_refuses_what_is_neither_job_nor_study(tmp_path: Path) -> None:
    neither = tmp_path / "neither.json"
    neither.write_text(json.dumps({"hello": "world"}))
    out = tmp_path / "out.json"
    one_error_line(run_mops("migrate", neither, "-o", out), "not a ModelOps job")
    assert not out.exists()
    one_error_line(run_mops("migrate", LEGACY / "job_bad_param_id.json"), "param_id")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    one_error_line(run_mops("migrate", garbage), "not valid JSON")
