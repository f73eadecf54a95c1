"""Bad input to ``mops run``: one ``error:`` line, exit 2, no traceback, and no store written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.modelops.cli.conftest import Workspace, run_mops, write_study

# Each case prepares a workspace and returns (extra CLI arguments, study path); the error line
# must contain the needle.
Case = Callable[[Workspace], tuple[list[object], Path]]


def _study(
    ws: Workspace,
    model: str = "toy.fast",
    *,
    n_replicates: int = 1,
    outputs: list[str] | None = None,
    scenario: str = "baseline",
) -> Path:
    return write_study(
        ws.root / "study.json",
        model,
        [{"x": 1}, {"x": 2}],
        n_replicates=n_replicates,
        outputs=outputs,
        scenario=scenario,
    )


def _text(ws: Workspace, text: str) -> Path:
    path = ws.root / "study.yaml"
    path.write_text(text, encoding="utf-8")
    return path


CASES: dict[str, tuple[Case, str]] = {
    "study file missing": (lambda ws: ([], ws.root / "absent.yaml"), "absent.yaml"),
    "unparseable yaml": (
        lambda ws: ([], _text(ws, "model: toy.fast\nparameter_sets: [{x: 1}\n")),
        "not valid YAML",
    ),
    "zero replicates": (lambda ws: ([], _study(ws, n_replicates=0)), "n_replicates"),
    "nan parameter": (
        lambda ws: (
            [],
            _text(ws, "model: toy.fast\nsampling_method: grid\nparameter_sets:\n  - {x: .nan}\n"),
        ),
        "'x' must be finite",
    ),
    "unknown model object": (lambda ws: ([], _study(ws, "toy.nothere")), "nothere"),
    "model import error": (
        lambda ws: ([], _study(ws, "broken.fn")),
        "No module named 'modelops_no_such_package_xyz'",
    ),
    "unknown scenario": (lambda ws: ([], _study(ws, "toy.Toy", scenario="nope")), "nope"),
    "unknown output": (lambda ws: ([], _study(ws, "toy.Toy", outputs=["nope"])), "nope"),
    "zero workers": (lambda ws: (["--workers", 0], _study(ws)), "--workers"),
    "missing bundle": (
        lambda ws: (["--bundle", ws.root / "no-bundle"], _study(ws)),
        "no-bundle",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_writes_no_store(workspace: Workspace, name: str) -> None:
    prepare, needle = CASES[name]
    extra, study = prepare(workspace)
    result = run_mops(
        "run", study, "--bundle", workspace.bundle, "--store", workspace.store, *extra
    )
    assert result.code == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert needle in lines[0]
    assert result.stdout == ""
    assert not workspace.store.exists()


def test_store_path_that_is_a_file_is_refused_and_left_alone(workspace: Workspace) -> None:
    store = workspace.root / "store.txt"
    store.write_text("not a store\n")
    result = run_mops(
        "run", _study(workspace), "--bundle", workspace.bundle, "--store", store, "--json"
    )
    assert result.code == 2, result
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "not a directory" in result.stderr
    assert store.read_text() == "not a store\n"


def test_an_error_while_workers_boot_leaves_nothing_on_the_terminal(workspace: Workspace) -> None:
    """Workers boot while the study compiles; a compile error must not leave a half-started
    worker printing a traceback as the CLI exits (the run waits for the boot, then stops it)."""
    study = _study(workspace, "toy.Toy", outputs=["nope"])  # fails once the model is imported
    for _ in range(5):
        result = run_mops(
            "run", study, "--bundle", workspace.bundle, "--store", workspace.store, "--workers", 2
        )
        assert result.code == 2, result
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result
