"""``mops sample saltelli|morris``: design studies written by the CLI, and the flags it refuses."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from modelops.sampling import ParameterSpace
from modelops.sensitivity import morris, saltelli
from modelops_contracts import SimulationStudy
from tests.modelops.cli.conftest import Result, run_mops
from tests.modelops.sensitivity.conftest import FUNCTIONS

ISHIGAMI = "functions.Ishigami"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle holding ``functions.py`` (Ishigami, Ranked, Series)."""
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "functions.py").write_text(FUNCTIONS, encoding="utf-8")
    return root


def sample(bundle: Path, *args: object) -> Result:
    """``mops sample ARGS --bundle B``, run in the bundle's parent directory."""
    return run_mops("sample", *args, "--bundle", bundle, cwd=bundle.parent)


def design_of(path: Path) -> tuple[SimulationStudy, dict[str, Any]]:
    study = SimulationStudy.from_yaml(path.read_text(encoding="utf-8"))
    design: dict[str, Any] = (study.metadata or {})["design"]
    return study, design


def ishigami_space(bundle: Path) -> ParameterSpace:
    """The Ishigami model's space, imported here from the bundle, with ``noise`` fixed at 0."""
    spec = importlib.util.spec_from_file_location("functions", bundle / "functions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return ParameterSpace.from_model(module.Ishigami).with_fixed({"noise": 0})


def test_saltelli_writes_a_design_study(bundle: Path) -> None:
    args = ["saltelli", ISHIGAMI, "--n", 8, "--fix", "noise=0", "--seed", 1]
    first = sample(bundle, *args, "-o", "s.yaml")
    assert first.code == 0, first.stderr
    assert first.stderr == ""
    study, design = design_of(bundle.parent / "s.yaml")
    assert design["method"] == "saltelli" and design["n"] == 8
    assert design["second_order"] is False
    assert design["parameters"] == ["x1", "x2", "x3"]
    assert len(design["rows"]) == 40
    assert study.sampling_method == "saltelli" and study.model == ISHIGAMI
    assert (study.metadata or {})["seed"] == 1
    assert all(params["noise"] == 0 for params in study.parameter_sets)
    summary = first.stdout.splitlines()
    assert "saltelli design: N=8 base samples, 40 rows" in first.stdout
    assert any("mops sensitivity" in line for line in summary)
    assert summary[-1] == f"wrote s.yaml; run it with: mops run s.yaml --bundle {bundle}"

    again = sample(bundle, *args, "-o", "again.yaml")
    assert again.code == 0, again.stderr
    assert (bundle.parent / "again.yaml").read_bytes() == (bundle.parent / "s.yaml").read_bytes()

    # the CLI is a thin layer: the file is the study the Python API makes
    expected = saltelli(ishigami_space(bundle), 8, seed=1, model=ISHIGAMI)
    assert study.to_json() == expected.to_json()


def test_saltelli_second_order(bundle: Path) -> None:
    args = ["saltelli", ISHIGAMI, "--n", 8, "--second-order", "--fix", "noise=0", "--seed", 1]
    result = sample(bundle, *args, "-o", "s2.yaml")
    assert result.code == 0, result.stderr
    _, design = design_of(bundle.parent / "s2.yaml")
    assert design["second_order"] is True
    assert len(design["rows"]) == 64
    assert "N=8 base samples, 64 rows" in result.stdout


def test_morris_writes_a_design_study(bundle: Path) -> None:
    args = ["morris", ISHIGAMI, "--trajectories", 4, "--levels", 4, "--fix", "noise=0"]
    result = sample(bundle, *args, "--seed", 3, "--replicates", 2, "-o", "m.json")
    assert result.code == 0, result.stderr
    text = (bundle.parent / "m.json").read_text(encoding="utf-8")
    study = SimulationStudy.from_json(text)
    design = json.loads(text)["metadata"]["design"]
    assert design["method"] == "morris"
    assert design["trajectories"] == 4 and design["levels"] == 4
    assert len(design["rows"]) == 16 and len(design["unit"]) == 16
    assert study.n_replicates == 2 and study.sampling_method == "morris"
    assert "morris design: 4 trajectories on 4 levels, 16 rows" in result.stdout
    assert "mops sensitivity" in result.stdout
    space = ishigami_space(bundle)
    expected = morris(space, 4, levels=4, seed=3, replicates=2, model=ISHIGAMI)
    assert study.to_json() == expected.to_json()


def test_without_output_the_study_goes_to_stdout(bundle: Path) -> None:
    result = sample(bundle, "saltelli", ISHIGAMI, "--n", 4, "--fix", "noise=0", "--seed", 2)
    assert result.code == 0, result.stderr
    study = SimulationStudy.from_yaml(result.stdout)
    assert len((study.metadata or {})["design"]["rows"]) == 20
    assert "mops sensitivity" in result.stderr  # the summary moves to stderr


def test_n_not_a_power_of_two_warns(bundle: Path) -> None:
    args = ["saltelli", ISHIGAMI, "--n", 1000, "--fix", "noise=0", "--seed", 1]
    result = sample(bundle, *args, "-o", "s.yaml")
    assert result.code == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("warning: saltelli: N=1000 is not a power of two")
    assert "512" in lines[0] and "1024" in lines[0]
    _, design = design_of(bundle.parent / "s.yaml")
    assert len(design["rows"]) == 5000


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["morris", "--n", 8, "--trajectories", 4], "morris takes --trajectories T, not --n"),
        (["morris", "--n", 8], "morris takes --trajectories T, not --n"),
        (["morris"], "morris needs --trajectories"),
        (["morris", "--levels", 4], "morris needs --trajectories"),
        (["saltelli"], "saltelli needs --n"),
        (["saltelli", "--trajectories", 4], "for morris designs only"),
        (["saltelli", "--n", 8, "--levels", 4], "--trajectories and --levels are for morris"),
        (["lhs", "--n", 8, "--second-order"], "--second-order is for saltelli designs only"),
        (["morris", "--trajectories", 4, "--second-order"], "--second-order is for saltelli"),
        (["sobol", "--n", 8, "--trajectories", 4], "--trajectories and --levels are for morris"),
        (["fast", "--n", 8], "saltelli, morris"),
        (["saltelli", "--n", 2], "n must be an integer of at least 4, got 2"),
        (["morris", "--trajectories", 3], "trajectories must be an integer of at least 4"),
        (["morris", "--trajectories", 4, "--levels", 3], "levels must be an even integer"),
    ],
)
def test_bad_combinations_exit_2_with_one_line(
    bundle: Path, args: list[object], words: str
) -> None:
    method, *flags = args
    result = sample(bundle, method, ISHIGAMI, *flags, "-o", "bad.yaml")
    assert result.code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert words in lines[0]
    assert not (bundle.parent / "bad.yaml").exists()
