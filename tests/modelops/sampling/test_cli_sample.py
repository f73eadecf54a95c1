"""``mops sample`` end to end: write a study from the SIR example, run it, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SIR_DIR = Path(__file__).resolve().parents[3] / "examples" / "sir"


def mops(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``mops`` console script of this interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "MODELOPS_STORE"}
    return subprocess.run(
        [str(Path(sys.executable).with_name("mops")), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_sample_writes_a_study_that_mops_run_takes(tmp_path: Path) -> None:
    args = ["sample", "lhs", "sir_model.SIR", "--bundle", SIR_DIR, "--n", 4, "--seed", 7]
    args += ["--replicates", 2, "--fix", "population=1000", "--fix", "initial_infected=5"]
    first = mops(*args, "-o", "study.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "4 sets x 2 replicates = 8 tasks" in first.stdout
    assert "beta" in first.stdout and "[0.05, 1.0]" in first.stdout
    assert "population        fixed  1000" in first.stdout
    again = mops(*args, "-o", "again.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "study.yaml").read_bytes() == (tmp_path / "again.yaml").read_bytes()

    ran = mops(
        "run", "study.yaml", "--bundle", SIR_DIR, "--store", tmp_path / "store",
        "--workers", 2, cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "8/8 tasks succeeded" in ran.stdout


def test_sample_from_a_space_file_and_bad_input(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("beta: {lower: 0.1, upper: 0.9}\ngamma: {lower: 0.05, upper: 0.5}\n")
    missing = mops("sample", "sobol", space, "--n", 6, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: --model: a space file needs the model's import path"
    ]

    ok = mops("sample", "sobol", space, "--n", 6, "--model", "sir_model.SIR", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("model: sir_model.SIR\n")  # no -o: the study on stdout
    assert "warning: sobol: n=6 is not a power of two" in ok.stderr
    assert "6 sets x 1 replicates = 6 tasks" in ok.stderr

    bad = mops("sample", "grid", space, "--n", 3, "--model", "m.M", "--fix", "beta", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: --fix: fixed value 'beta' is not name=value"]
