"""``mops calibrate``, ``mops calibrations`` and ``mops calibration`` through the console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.modelops.calibration.conftest import LineBundle
from tests.modelops.cli.conftest import run_mops


def _calibrate(line: LineBundle, *args: object) -> list[object]:
    return [
        "calibrate", "line.Line", "--bundle", line.path, "--store", line.store,
        "--targets", line.targets, "--fix", "width=5", "--budget", 8, "--batch", 4,
        "--replicates", 2, "--top-k", 2, "--workers", 1, *args,
    ]  # fmt: skip


def test_calibrate_prints_one_json_object_then_lists_and_shows_it(line_bundle: LineBundle) -> None:
    done = run_mops(*_calibrate(line_bundle, "--algorithm", "random", "--json"))
    assert done.code == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {
        "calibration_id", "status", "algorithm", "budget", "evaluations", "best", "store"
    }  # fmt: skip
    assert result["algorithm"] == "random" and result["evaluations"] == 8
    assert set(result["best"]) == {"params", "loss", "loss_se"}
    assert result["best"]["params"]["width"] == 5
    cal_id = result["calibration_id"]

    listed = run_mops("calibrations", "--store", line_bundle.store, "--json")
    assert listed.code == 0, listed.stderr
    assert [row["calibration_id"] for row in json.loads(listed.stdout)] == [cal_id]
    text = run_mops("calibrations", "--store", line_bundle.store)
    assert cal_id in text.stdout and "finished" in text.stdout

    shown = run_mops("calibration", cal_id, "--store", line_bundle.store, "--json")
    assert shown.code == 0, shown.stderr
    assert json.loads(shown.stdout) == result
    plain = run_mops("calibration", cal_id, "--store", line_bundle.store)
    assert "best (re-evaluated) loss" in plain.stdout and "slope = " in plain.stdout

    again = run_mops(*_calibrate(line_bundle, "--algorithm", "random", "--json"))
    assert again.code == 0 and json.loads(again.stdout) == result


def test_abc_smc_prints_its_posterior(line_bundle: LineBundle) -> None:
    args = ["--algorithm", "abc-smc", "--population", 10, "--budget", 40, "--batch", 20, "--json"]
    done = run_mops(*_calibrate(line_bundle, *args))
    assert done.code == 0, done.stderr
    posterior = json.loads(done.stdout)["posterior"]
    assert set(posterior) == {"slope", "offset"}
    assert set(posterior["slope"]) == {"mean", "q05", "q50", "q95"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algorithm", "hill-climb"], "unknown algorithm 'hill-climb'"),
        (["--budget", 0], "--budget"),
        (["--fix", "slope"], "--fix"),
        (["--fix", "slope=1", "--fix", "offset=2"], "no free parameter"),
        (["--population", 10], "population"),  # abc-smc only
        (["--targets", "missing.yaml"], "missing.yaml"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    line_bundle: LineBundle, args: list[object], message: str
) -> None:
    done = run_mops(*_calibrate(line_bundle, *args))
    assert done.code == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert message in lines[0]
    assert not (line_bundle.store / "calibrations").exists()


def test_unknown_calibration_is_one_line(line_bundle: LineBundle) -> None:
    done = run_mops("calibration", "cal-0000000000000000", "--store", line_bundle.store)
    assert done.code == 2
    assert done.stderr.startswith("error: no calibration cal-0000000000000000")
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_space_file_with_its_own_targets(line_bundle: LineBundle) -> None:
    space = line_bundle.targets.with_name("space.yaml")
    space.write_text(
        "slope: {lower: 0.0, upper: 5.0}\n"
        "offset: {lower: 1.0, upper: 100.0, scale: log}\n"
        "fixed: {width: 5}\n" + line_bundle.targets.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    common = ["--bundle", line_bundle.path, "--store", line_bundle.store, "--budget", 8]
    common += ["--batch", 4, "--replicates", 2, "--top-k", 1, "--workers", 1]
    missing = run_mops("calibrate", space, *common)
    assert missing.code == 2
    assert missing.stderr == "error: --model: a space file needs the model's import path\n"
    done = run_mops("calibrate", space, "--model", "line.Line", *common, "--json")
    assert done.code == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["evaluations"] == 8 and result["best"]["params"]["width"] == 5


def test_listing_a_directory_that_is_no_store_is_one_line(tmp_path: Path) -> None:
    done = run_mops("calibrations", "--store", tmp_path / "nowhere")
    assert done.code == 2
    assert done.stderr.startswith(f"error: no ModelOps store at {tmp_path / 'nowhere'}")
    assert len(done.stderr.strip().splitlines()) == 1


def test_calibrate_runs_the_bundle_in_its_own_environment(line_bundle: LineBundle) -> None:
    module = line_bundle.path / "line.py"
    needs = "\nimport packaging\n\nassert packaging.__version__ == '23.2', packaging.__version__\n"
    module.write_text(module.read_text(encoding="utf-8") + needs, encoding="utf-8")
    (line_bundle.path / "requirements.txt").write_text("packaging==23.2\n", encoding="utf-8")
    here = run_mops(*_calibrate(line_bundle, "--algorithm", "random", "--env", "current"))
    assert here.code == 2, here.stderr
    lines = here.stderr.strip().splitlines()
    assert lines[0].startswith("warning: the bundle requires packaging==23.2")
    assert lines[-1].startswith("error: ") and "AssertionError" in lines[-1]
    done = run_mops(*_calibrate(line_bundle, "--algorithm", "random", "--json"), timeout=300)
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["evaluations"] == 8
    bad = run_mops(*_calibrate(line_bundle, "--env", "elsewhere"))
    assert bad.code == 2 and bad.stderr.startswith("error: --env: env must be one of")
