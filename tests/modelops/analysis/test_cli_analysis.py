"""End to end through the ``mops`` console script: results --aggregate, score, plot, report."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import polars as pl

from tests.modelops.analysis.conftest import SirJob
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


def test_report(scored_sir_job: SirJob, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, stdout, stderr = mops(scored_sir_job, "report", scored_sir_job.job_id, "-o", page)
    assert code == 0, stderr
    assert f"wrote {page}" in stdout
    assert "data:image/png;base64," in page.read_text()
