"""The calibration report, from Python and from ``mops report ID``, on real calibrations."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

import modelops
from modelops.calibration import Calibration
from modelops.calibration._report import write_calibration_report
from tests.modelops.calibration.conftest import LineBundle, make_line_bundle
from tests.modelops.cli.conftest import run_mops, write_study

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TARGET_NAME = "fit <b> & co"  # the page must escape it
TARGETS = (
    "targets:\n"
    f"  - {{name: '{TARGET_NAME}', output: series, data: observed.csv, on: [t], value: y}}\n"
)


def calibrate(line: LineBundle, **kwargs: Any) -> Calibration:
    args: dict[str, Any] = {"replicates": 2, "seed": 5, "fix": line.fix, **kwargs}
    return modelops.calibrate("line.Line", line.targets, bundle=line.path, store=line.store, **args)


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> LineBundle:
    return make_line_bundle(tmp_path_factory.mktemp("report"), TARGETS)


@pytest.fixture(scope="module")
def tpe(line: LineBundle) -> Calibration:
    return calibrate(line, algorithm="tpe", budget=12, batch=4, top_k=2, workers=2)


@pytest.fixture(scope="module")
def abc(line: LineBundle) -> Calibration:
    return calibrate(
        line,
        algorithm="abc-smc",
        budget=80,
        batch=20,
        top_k=2,
        workers=1,
        settings={"population": 20},
    )


def images(page: str) -> list[bytes]:
    """Every inline image of the page, decoded."""
    found = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    return [base64.b64decode(data) for data in found]


def test_report_of_an_optimizer(tpe: Calibration) -> None:
    best = tpe.best
    assert best is not None
    path = write_calibration_report(tpe)
    assert path == tpe.directory / "report.html"
    page = path.read_text(encoding="utf-8")
    assert f"<h1>Calibration {tpe.calibration_id}</h1>" in page
    assert "<td>algorithm</td><td>tpe</td>" in page
    assert "<td>status</td><td>finished</td>" in page
    assert "<td>budget</td><td>12 points</td>" in page
    for value in best["params"].values():
        assert f"<td>{value:.6g}</td>" in page
    assert f"<td>{best['loss']:.6g}</td>" in page
    assert f"<td>{best['search_loss']:.6g}</td>" in page
    assert "Re-evaluated candidates (2)" in page
    assert best["job_id"] in page
    assert html.escape(TARGET_NAME) in page and TARGET_NAME not in page
    assert "Posterior" not in page
    shown = images(page)
    assert len(shown) == 3  # trace, losses, predictive check
    assert all(image.startswith(PNG_SIGNATURE) for image in shown)
    assert "alt='predictive check'" in page


def test_report_of_abc_smc_has_the_posterior(abc: Calibration, tmp_path: Path) -> None:
    summary = abc.posterior_summary()
    assert summary is not None
    path = write_calibration_report(abc, tmp_path / "abc.html")
    assert path == tmp_path / "abc.html"
    page = path.read_text(encoding="utf-8")
    assert abc.calibration_id in page
    assert "<td>algorithm</td><td>abc-smc</td>" in page
    assert "<td>population</td><td>20</td>" in page  # the settings table
    for name, values in summary.items():
        cells = "".join(f"<td>{values[k]:.6g}</td>" for k in ("mean", "q05", "q50", "q95"))
        assert f"<tr><td>{name}</td>{cells}</tr>" in page
    assert "<h2>Populations</h2>" in page
    shown = images(page)
    assert len(shown) == 4  # trace, losses, posterior, predictive check
    assert all(image.startswith(PNG_SIGNATURE) for image in shown)
    assert "alt='posterior'" in page


def test_report_of_an_unfinished_calibration(tpe: Calibration, tmp_path: Path) -> None:
    copy = tmp_path / "store" / "calibrations" / tpe.calibration_id
    shutil.copytree(tpe.directory, copy)
    (copy / "best.json").unlink()
    record = json.loads((copy / "calibration.json").read_text(encoding="utf-8"))
    record["status"] = "running"
    del record["result"]
    (copy / "calibration.json").write_text(json.dumps(record), encoding="utf-8")
    page = write_calibration_report(Calibration(tpe.calibration_id, tmp_path / "store"))
    text = page.read_text(encoding="utf-8")
    assert "<td>status</td><td>running</td>" in text
    assert "Not finished yet" in text
    assert len(images(text)) == 2  # trace and losses; no predictive check yet


def test_mops_report_of_a_calibration(tpe: Calibration, line: LineBundle, tmp_path: Path) -> None:
    done = run_mops("report", tpe.calibration_id, "--store", line.store)
    assert done.code == 0, done
    default = tpe.directory / "report.html"
    assert done.stdout.strip() == f"wrote {default}"
    assert tpe.calibration_id in default.read_text(encoding="utf-8")
    chosen = tmp_path / "out" / "cal.html"
    done = run_mops("report", tpe.calibration_id, "--store", line.store, "-o", chosen)
    assert done.code == 0, done
    assert len(images(chosen.read_text(encoding="utf-8"))) == 3
    beside = tpe.directory / "mine.html"  # an HTML file beside the journal is fine
    assert run_mops("report", tpe.calibration_id, "--store", line.store, "-o", beside).code == 0
    assert beside.is_file()


def test_mops_report_refuses_to_overwrite_the_journal(tpe: Calibration, line: LineBundle) -> None:
    best = tpe.directory / "best.json"
    before = best.read_bytes()
    done = run_mops("report", tpe.calibration_id, "--store", line.store, "-o", best)
    assert done.code == 2
    assert "would overwrite the store's own data" in done.stderr
    assert best.read_bytes() == before


def test_mops_report_of_an_unknown_calibration(tpe: Calibration, line: LineBundle) -> None:
    done = run_mops("report", "cal-0000000000000000", "--store", line.store)
    assert done.code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: no calibration cal-0000000000000000 in ")


def test_a_job_named_like_a_calibration_still_gets_its_job_report(
    line: LineBundle, tmp_path: Path
) -> None:
    name = "cal-0123456789abcdef"  # --job-id may name a job anything
    study = write_study(
        tmp_path / "study.json", "line.Line", [{"slope": 1.0, "offset": 2.0, "width": 5}]
    )
    ran = run_mops(
        "run", study, "--bundle", line.path, "--store", line.store, "--workers", 1,
        "--job-id", name,
    )  # fmt: skip
    assert ran.code == 0, ran
    done = run_mops("report", name, "--store", line.store)
    assert done.code == 0, done
    assert done.stdout.strip() == f"wrote {line.store / 'jobs' / name / 'report.html'}"
    assert f"<h1>Job {name}</h1>" in (line.store / "jobs" / name / "report.html").read_text()
