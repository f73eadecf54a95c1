"""End to end: the model's process is the model's, and workers see only the bundle snapshot.

Each test runs the real ``mops`` against a small hostile bundle: code that ``.modelopsignore``
leaves out, a model that rewrites its own snapshot, exits or hangs at import, signals its parent
or group, or leaves children behind.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import polars as pl
import pytest

from modelops.api import compile_study
from modelops_contracts.errors import ModelError
from tests.modelops.cli.conftest import Result, run_mops, wait_for, write_study


def hostile(tmp_path: Path, files: dict[str, str]) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name, text in files.items():
        (bundle / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return bundle


def mops_run(tmp_path: Path, bundle: Path, model: str, *args: object, xs: int = 2) -> Result:
    study = write_study(tmp_path / "study.json", model, [{"x": x} for x in range(xs)])
    store = tmp_path / "store"
    return run_mops(
        "run", study, "--bundle", bundle, "--store", store, "--workers", 2, "--json", *args
    )


def values(tmp_path: Path) -> list[str]:
    parts = sorted((tmp_path / "store" / "jobs").glob("*/outputs/out/*.parquet"))
    return sorted(pl.read_parquet(parts)["v"].to_list())


def one_error_line(result: Result) -> str:
    assert result.code == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


HELPER = "VALUE = 'live'\n"
IGNORE = "helper.py\n"


def test_a_module_imported_at_import_but_ignored_rejects_the_study(tmp_path: Path) -> None:
    bundle = hostile(
        tmp_path,
        {
            "model.py": "import helper\n\ndef fn(params, seed):\n    return {}\n",
            "helper.py": HELPER,
            ".modelopsignore": IGNORE,
        },
    )
    line = one_error_line(mops_run(tmp_path, bundle, "model.fn"))
    assert "ModuleNotFoundError" in line and "helper" in line
    assert not (tmp_path / "store").exists()


def test_a_module_imported_in_a_task_but_ignored_fails_the_task(tmp_path: Path) -> None:
    bundle = hostile(
        tmp_path,
        {
            "model.py": """
                def fn(params, seed):
                    import helper
                    return {"out": {"v": [helper.VALUE]}}
            """,
            "helper.py": HELPER,
            ".modelopsignore": IGNORE,
        },
    )
    result = mops_run(tmp_path, bundle, "model.fn")
    assert result.code == 1, result
    assert json.loads(result.stdout)["failed"] == 2
    failures = run_mops(
        "failures", json.loads(result.stdout)["job_id"], "--store", tmp_path / "store"
    )
    assert "ModuleNotFoundError" in failures.stdout, failures


def test_a_model_rewriting_its_snapshot_does_not_poison_the_next_job(tmp_path: Path) -> None:
    bundle = hostile(
        tmp_path,
        {
            "model.py": """
                VALUE = "original"

                def fn(params, seed):
                    with open(__file__, "w") as source:
                        source.write(
                            "VALUE = 'poisoned'\\n"
                            "def fn(params, seed):\\n"
                            "    return {'out': {'v': [VALUE]}}\\n"
                        )
                    return {"out": {"v": [VALUE]}}
            """,
        },
    )
    first = mops_run(tmp_path, bundle, "model.fn", xs=1)
    assert first.code == 0, first
    again = mops_run(tmp_path, bundle, "model.fn", "--no-cache", xs=1)
    assert again.code == 0, again
    assert values(tmp_path) == ["original", "original"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [("raise SystemExit(5)\n", "SystemExit: 5"), ("import os\nos._exit(7)\n", "exit code 7")],
    ids=["system-exit", "os-exit"],
)
def test_a_model_exiting_at_import_is_one_error_line(
    tmp_path: Path, source: str, expected: str
) -> None:
    bundle = hostile(tmp_path, {"model.py": source + "\ndef fn(params, seed):\n    return {}\n"})
    assert expected in one_error_line(mops_run(tmp_path, bundle, "model.fn"))
    assert not (tmp_path / "store").exists()


def test_a_model_hanging_at_import_fails_the_check_in_time(tmp_path: Path) -> None:
    bundle = hostile(
        tmp_path,
        {"model.py": "import time\ntime.sleep(600)\n\ndef fn(params, seed):\n    return {}\n"},
    )
    study = write_study(tmp_path / "study.json", "model.fn", [{"x": 1}])
    with pytest.raises(ModelError, match=r"longer than 0\.5 s"):
        compile_study(study, bundle, store=tmp_path / "store", import_timeout=0.5)


def test_a_model_that_sigterms_its_parent_does_not_stop_the_run(tmp_path: Path) -> None:
    bundle = hostile(
        tmp_path,
        {
            "model.py": """
                import os, signal

                def fn(params, seed):
                    os.kill(os.getppid(), signal.SIGTERM)
                    return {"out": {"v": [str(params["x"])]}}
            """,
        },
    )
    result = mops_run(tmp_path, bundle, "model.fn", xs=4)
    assert result.code == 0, result
    assert json.loads(result.stdout)["succeeded"] == 4


def test_a_model_that_signals_its_group_fails_only_its_tasks(tmp_path: Path) -> None:
    bundle = hostile(
        tmp_path,
        {
            "model.py": """
                import os, signal

                def fn(params, seed):
                    if params["x"] == 0:
                        os.killpg(0, signal.SIGTERM)
                    return {"out": {"v": [str(params["x"])]}}
            """,
        },
    )
    result = mops_run(tmp_path, bundle, "model.fn", xs=3)
    assert result.code == 1, result
    summary = json.loads(result.stdout)
    assert (summary["succeeded"], summary["failed"]) == (2, 1)


def _processes_with(argument: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if argument.encode() in args and state != "Z":
                found.append(int(entry.name))
    return found


def test_children_a_model_starts_do_not_outlive_the_run(tmp_path: Path) -> None:
    tag = f"1000.{os.getpid()}123"
    bundle = hostile(
        tmp_path,
        {
            "model.py": f"""
                import subprocess

                def fn(params, seed):
                    subprocess.Popen(["sleep", "{tag}"])
                    return {{"out": {{"v": [str(params["x"])]}}}}
            """,
        },
    )
    result = mops_run(tmp_path, bundle, "model.fn", xs=3)
    assert result.code == 0, result
    # killed before mops exits; wait only for the kernel to finish the SIGKILL
    wait_for(lambda: _processes_with(tag) == [], timeout=5.0, what=f"no 'sleep {tag}' left")
