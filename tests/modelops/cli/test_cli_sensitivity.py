"""``mops sensitivity`` through the console script: output, files, report, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.modelops.cli.conftest import run_mops
from tests.modelops.sensitivity.conftest import FUNCTIONS


@pytest.fixture(scope="module")
def functions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("functions") / "bundle"
    bundle.mkdir()
    (bundle / "functions.py").write_text(FUNCTIONS, encoding="utf-8")
    return bundle


@pytest.fixture(scope="module")
def design_job(functions_dir: Path) -> tuple[str, Path]:
    """A run Saltelli design over functions.Series (N=16, 2 replicates): (job id, store).

    Shared by the module's tests, which only read it (and save analyses beside it)."""
    functions_bundle = functions_dir
    study, store = functions_dir.parent / "series.json", functions_dir.parent / "store"
    sampled = run_mops(
        "sample", "saltelli", "functions.Series", "--bundle", functions_bundle, "--n", 16,
        "--replicates", 2, "--seed", 3, "-o", study,
    )  # fmt: skip
    assert sampled.code == 0, sampled.stderr
    ran = run_mops("run", study, "--bundle", functions_bundle, "--store", store, "--json")
    assert ran.code == 0, ran.stderr
    return json.loads(ran.stdout)["job_id"], store


def test_prints_the_indices_saves_them_and_the_report_shows_them(
    design_job: tuple[str, Path], tmp_path: Path
) -> None:
    job_id, store = design_job
    done = run_mops("sensitivity", job_id, "total", "--value", "sum", "--store", store)
    assert done.code == 0, done.stderr
    assert f"Sobol' indices of sum of total, job {job_id} (N=16)" in done.stdout
    assert "replicate noise:" in done.stdout and "S1_conf" in done.stdout
    picture = store / "jobs" / job_id / "sensitivity" / "sobol-total-sum.png"
    assert f"wrote {picture}" in done.stdout and picture.stat().st_size > 0

    report = run_mops("report", job_id, "--store", store)
    assert report.code == 0, report.stderr
    page = (store / "jobs" / job_id / "report.html").read_text(encoding="utf-8")
    assert "<h2>Sensitivity</h2>" in page and page.count("data:image/png;base64") >= 1


def test_json_by_day_and_files(design_job: tuple[str, Path], tmp_path: Path) -> None:
    job_id, store = design_job
    args = ["sensitivity", job_id, "series", "--value", "y", "--by", "day", "--store", store]
    done = run_mops(*args, "--json")
    assert done.code == 0, done.stderr
    days = json.loads(done.stdout)
    assert [d["day"] for d in days] == [0, 1, 2, 3, 4]
    for day in days:
        assert {"method", "output", "value", "n", "noise_fraction", "indices"} <= set(day)
        assert set(day["indices"]) == {"a", "b"}
        assert set(day["indices"]["a"]) == {"S1", "S1_conf", "ST", "ST_conf"}
    for suffix in ("csv", "parquet", "json", "png"):
        out = tmp_path / f"indices.{suffix}"
        written = run_mops(*args, "-o", out)
        assert written.code == 0, written.stderr
        assert out.stat().st_size > 0
    table = pl.read_csv(tmp_path / "indices.csv")
    assert table.columns[:2] == ["day", "parameter"] and table.height == 10
    assert pl.read_parquet(tmp_path / "indices.parquet").height == 10
    assert json.loads((tmp_path / "indices.json").read_text()) == days


def test_an_unwritable_job_directory_still_answers(design_job: tuple[str, Path]) -> None:
    job_id, store = design_job
    blocked = store / "jobs" / job_id / "sensitivity"
    kept = blocked.with_name("kept-aside")
    if blocked.exists():
        blocked.rename(kept)
    blocked.write_text("not a directory")  # so nothing can be saved beside the job
    try:
        done = run_mops("sensitivity", job_id, "total", "--value", "sum", "--store", store)
    finally:
        blocked.unlink()
        if kept.exists():
            kept.rename(blocked)
    assert done.code == 0, done.stderr
    assert "S1_conf" in done.stdout and "wrote" not in done.stdout
    assert "warning: the analysis is not kept beside the job: cannot write" in done.stderr


def test_the_scored_loss(design_job: tuple[str, Path], tmp_path: Path) -> None:
    job_id, store = design_job
    data = tmp_path / "observed.csv"
    data.write_text("day,y\n" + "".join(f"{t},{0.5 * t}\n" for t in range(5)))
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "targets:\n  - {name: s, output: series, data: observed.csv, on: [day], value: y, "
        "loss: mse_of_mean}\n"
    )
    assert run_mops("score", job_id, "--targets", targets, "--store", store).code == 0
    done = run_mops("sensitivity", job_id, "--loss", "--store", store)
    assert done.code == 0, done.stderr
    assert "Sobol' indices of the total loss" in done.stdout
    assert "replicate noise: none (the loss is one number per parameter set)" in done.stdout
    assert (store / "jobs" / job_id / "sensitivity" / "sobol-loss-loss.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["total"], "needs OUTPUT --value COLUMN"),
        (["total", "--value", "sum", "--loss"], "--loss analyses the scored total loss"),
        (["total", "--value", "sum", "-o", "x.txt"], "must end in .json, .csv"),
        (["series", "--value", "y"], "several rows per task"),
        (["total", "--value", "sum", "--method", "morris"], "needs a morris design"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    design_job: tuple[str, Path], args: list[str], message: str
) -> None:
    job_id, store = design_job
    done = run_mops("sensitivity", job_id, *args, "--store", store)
    assert done.code == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_a_job_without_a_design_names_the_samplers(functions_dir: Path, tmp_path: Path) -> None:
    study = tmp_path / "plain.yaml"
    study.write_text(
        "model: functions.Ranked\nparameter_sets:\n  - {a: 0.1, b: 0.2, c: 0.3, d: 0.4}\n"
    )
    ran = run_mops("run", study, "--bundle", functions_dir, "--store", tmp_path / "s", "--json")
    assert ran.code == 0, ran.stderr
    job_id = json.loads(ran.stdout)["job_id"]
    done = run_mops("sensitivity", job_id, "y", "--value", "f", "--store", tmp_path / "s")
    assert done.code == 2
    assert done.stderr.strip().splitlines() == [
        f"error: job {job_id} was not run from a sensitivity design: make one with "
        "'mops sample saltelli|morris', then run it"
    ]
