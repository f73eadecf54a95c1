"""End to end through the ``mops`` console script: results --aggregate, score, plot, report."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import polars as pl

from tests.modelops.analysis.conftest import GappyJob, SirJob, run_gappy_job
from tests.modelops.cli.conftest import run_mops


def mops(job: SirJob, *args: object) -> tuple[int, str, str]:
    result = run_mops(*args, "--store", job.store)
    return result.code, result.stdout, result.stderr


def test_results_aggregate(sir_job: SirJob, tmp_path: Path) -> None:
    out = tmp_path / "agg.csv"
    code, stdout, stderr = mops(
        sir_job, "results", sir_job.job_id, "incidence", "--aggregate", "--by", "day", "-o", out
    )
    assert code == 0, stderr
    assert "wrote 900 rows" in stdout
    frame = pl.read_csv(out)
    assert {"beta", "gamma", "day", "n", "new_cases_mean", "new_cases_q95"} <= set(frame.columns)


def test_score(scored_sir_job: SirJob) -> None:
    code, stdout, stderr = mops(
        scored_sir_job, "score", scored_sir_job.job_id, "--targets", scored_sir_job.targets_file
    )
    assert code == 0, stderr
    assert "loss_cases" in stdout and "scores.parquet" in stdout
    code, _, stderr = mops(scored_sir_job, "score", "job-nope")
    assert code == 2 and stderr.startswith("error: no job")


def test_score_names_the_sets_with_missing_points(gappy_job: GappyJob, tmp_path: Path) -> None:
    result = run_mops(
        "score", gappy_job.job_id, "--targets", gappy_job.targets_file, "--store", gappy_job.store
    )
    assert result.code == 0, result.stderr
    assert "1 parameter set(s) have missing points" in result.stdout
    assert "missing_points" in result.stdout


def test_plot(scored_sir_job: SirJob, tmp_path: Path) -> None:
    png = tmp_path / "cases.png"
    args = ("plot", scored_sir_job.job_id, "incidence", "--x", "day", "--y", "new_cases")
    code, stdout, stderr = mops(scored_sir_job, *args, "-o", png)
    assert code == 0, stderr
    assert mpimg.imread(png).shape[:2] == (450, 800)
    code, stdout, stderr = mops(scored_sir_job, "plot", scored_sir_job.job_id, "--loss")
    assert code == 0, stderr
    assert stdout.strip().endswith("loss.png")
    code, _, stderr = mops(scored_sir_job, "plot", scored_sir_job.job_id, "incidence")
    assert code == 2 and "--x" in stderr


def test_loss_plot_of_an_unscored_job_says_how_to_score_it(tmp_path: Path) -> None:
    job = run_gappy_job(tmp_path)
    result = run_mops("plot", job.job_id, "--loss", "--store", job.store)
    assert result.code == 2
    assert result.stderr.splitlines() == [
        f"error: job {job.job_id} has no scores yet: score it first (run 'mops score {job.job_id}')"
    ]


def test_report(scored_sir_job: SirJob, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, stdout, stderr = mops(scored_sir_job, "report", scored_sir_job.job_id, "-o", page)
    assert code == 0, stderr
    assert f"wrote {page}" in stdout
    assert "data:image/png;base64," in page.read_text()


def test_targets_declared_in_the_study_file_are_scored_without_flags(tmp_path: Path) -> None:
    import shutil

    from tests.modelops.analysis.conftest import EXAMPLE

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copy(EXAMPLE / "sir_model.py", bundle)
    studies = tmp_path / "studies"  # data paths are relative to the study file, not the cwd
    studies.mkdir()
    shutil.copy(EXAMPLE / "observed.csv", studies / "observed.csv")
    study = studies / "study.yaml"
    study.write_text(
        "model: sir_model.SIR\n"
        "n_replicates: 2\n"
        "parameter_sets: [{beta: 0.3, gamma: 0.1}, {beta: 0.9, gamma: 0.05}]\n"
        "targets:\n"
        "  - {name: cases, output: incidence, data: observed.csv, on: [day],\n"
        "     value: new_cases, observed: cases, loss: poisson_nll}\n"
    )
    store = tmp_path / "store"
    ran = run_mops("run", study, "--bundle", bundle, "--store", store, "--workers", "2", "--json")
    assert ran.code == 0, ran.stderr
    job_id = json.loads(ran.stdout)["job_id"]
    scored = run_mops("score", job_id, "--store", store)
    assert scored.code == 0, scored.stderr
    table = pl.read_parquet(store / "jobs" / job_id / "scores.parquet")
    assert table.height == 2 and table["loss_cases"].null_count() == 0
    best = table.sort("loss").row(0, named=True)
    assert (best["beta"], best["gamma"]) == (0.3, 0.1)
