"""PNG plots: each file opens, has the expected size and is not blank."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np
import pytest

import modelops
from modelops.analysis import plot_loss, plot_output, write_report
from modelops.api import JobHandle
from modelops_contracts import ContractViolationError
from tests.conftest import ToyBundle
from tests.modelops.analysis.conftest import SirJob


def assert_png(path: Path, width: int, height: int) -> None:
    image = mpimg.imread(path)
    assert image.shape[:2] == (height, width)
    rgb = image[..., :3]
    drawn = np.any(rgb < 0.9, axis=-1).mean()  # share of pixels that are not (near) white
    assert 0.01 < drawn < 0.9, drawn
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 10  # lines, bands, text: many colours


def test_output_plot(scored_sir_job: SirJob, tmp_path: Path) -> None:
    path = plot_output(
        scored_sir_job.handle, "incidence", "day", "new_cases", tmp_path / "p" / "cases.png",
        best=3,
    )  # fmt: skip
    assert_png(path, 800, 450)


def test_loss_plot(scored_sir_job: SirJob, tmp_path: Path) -> None:
    assert_png(plot_loss(scored_sir_job.handle, tmp_path / "loss.png"), 800, 450)


def test_loss_plot_needs_scores(toy_bundle_job: tuple[JobHandle], tmp_path: Path) -> None:
    with pytest.raises(ContractViolationError, match="no scores yet"):
        plot_loss(toy_bundle_job[0], tmp_path / "loss.png")


def test_report_is_one_self_contained_page(scored_sir_job: SirJob, tmp_path: Path) -> None:
    page = write_report(scored_sir_job.handle, tmp_path / "report.html").read_text()
    assert scored_sir_job.job_id in page
    assert page.count("data:image/png;base64,") == 2  # the loss plot and the cases target
    assert "Loss table (best 9 of 9)" in page and "Failures (0)" in page
    assert "src='http" not in page and "<script" not in page and "<link" not in page


@pytest.fixture
def toy_bundle_job(toy_bundle: ToyBundle) -> tuple[JobHandle]:
    """A job that was never scored."""
    study = toy_bundle.study("ok", xs=[1])
    return (modelops.run(study, bundle=toy_bundle.path, store=toy_bundle.store, workers=1),)
