"""Analyses saved beside their job: names, the two files, and reading them back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelops.sensitivity._result import SensitivityResult
from modelops.sensitivity._saved import (
    SavedAnalysis,
    analysis_name,
    save_analysis,
    saved_analyses,
)
from modelops.store import ResultStore
from tests.modelops.sensitivity.test_plots import by_result, daily, morris_result, sobol_result

JOB = "job-1"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultStore]:
    with ResultStore(tmp_path / "store") as opened:
        yield opened


def folder(store: ResultStore) -> Path:
    return store.job_dir(JOB) / "sensitivity"


def test_names() -> None:
    assert analysis_name(sobol_result()) == "sobol-summary-attack_rate"
    assert analysis_name(sobol_result(output=None, value="loss")) == "sobol-loss-loss"
    keys = [{"day": 1, "age group": "old"}]
    spaced = by_result("morris", keys, ("day", "age group"), daily)
    assert analysis_name(spaced) == "morris-incidence-new_cases-by-day-age_group"
    odd = SensitivityResult(JOB, "sobol", "out/put", "a b:c", (), 8, (), False, ())
    assert analysis_name(odd) == "sobol-out_put-a_b_c"


def test_save_writes_the_json_and_the_picture(store: ResultStore) -> None:
    result = sobol_result(job_id=JOB, warnings=("S1 of c is negative beyond its interval",))
    json_path, png_path = save_analysis(result, store)
    assert json_path == folder(store) / "sobol-summary-attack_rate.json"
    assert png_path == folder(store) / "sobol-summary-attack_rate.png"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = json_path.read_text(encoding="utf-8")
    meta = json.loads(text)
    assert meta == {
        "job_id": JOB,
        "method": "sobol",
        "output": "summary",
        "value": "attack_rate",
        "by": [],
        "n": 1024,
        "result": json.loads(json.dumps(result.to_json())),
    }
    assert text == json.dumps(meta, sort_keys=True, indent=2) + "\n"
    assert sorted(p.name for p in folder(store).iterdir()) == [json_path.name, png_path.name]


def test_saved_analyses_read_back_sorted(store: ResultStore) -> None:
    assert saved_analyses(store, JOB) == []  # no directory yet
    by_day = by_result("sobol", [{"day": 0}, {"day": 1}], ("day",), daily, job_id=JOB)
    for result in (sobol_result(job_id=JOB), morris_result(job_id=JOB), by_day):
        save_analysis(result, store)
    found = saved_analyses(store, JOB)
    assert [s.name for s in found] == [
        "morris-summary-attack_rate",
        "sobol-incidence-new_cases-by-day",
        "sobol-summary-attack_rate",
    ]
    assert all(s.png is not None and s.png.stat().st_size > 0 for s in found)
    assert found[1].meta["by"] == ["day"]
    assert found[1].meta["result"] == json.loads(json.dumps(by_day.to_json()))


def test_saving_again_replaces_both_files(store: ResultStore) -> None:
    save_analysis(sobol_result(job_id=JOB, noise=0.5), store)
    json_path, _ = save_analysis(sobol_result(job_id=JOB, noise=0.25), store)
    assert json.loads(json_path.read_text())["result"]["noise_fraction"] == 0.25
    assert len(list(folder(store).iterdir())) == 2


def test_damaged_files_are_skipped(store: ResultStore) -> None:
    save_analysis(sobol_result(job_id=JOB), store)
    (folder(store) / "broken.json").write_text("{not json", encoding="utf-8")
    (folder(store) / "list.json").write_text("[1, 2]", encoding="utf-8")
    (folder(store) / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (folder(store) / ".tmp-1234-half.json").write_text("{}", encoding="utf-8")
    (folder(store) / "no-picture.json").write_text('{"method": "sobol"}', encoding="utf-8")
    odd = {"method": 3, "by": "day", "result": [{"warnings": 7}, "x"], "n": None}
    (folder(store) / "odd.json").write_text(json.dumps(odd), encoding="utf-8")
    found = saved_analyses(store, JOB)
    assert [s.name for s in found] == ["no-picture", "odd", "sobol-summary-attack_rate"]
    assert found[0].png is None
    assert found[1].caption() == "3 of None, None trajectories"  # readable, if odd
    assert found[1].warnings == []


def test_caption_and_warnings() -> None:
    meta = {
        "method": "sobol",
        "output": "summary",
        "value": "attack_rate",
        "by": [],
        "n": 1024,
        "result": {"noise_fraction": 0.123, "warnings": ["ST of b: wide interval"]},
    }
    saved = SavedAnalysis("x", meta, None)
    assert saved.caption() == (
        "Sobol' indices of attack_rate (summary), N=1024, noise fraction 12%"
    )
    assert saved.warnings == ["ST of b: wide interval"]


def test_caption_and_warnings_by_group(store: ResultStore) -> None:
    result = by_result(
        "morris", [{"day": 1}, {"day": 2}], ("day",), daily,
        noise=[None, 0.04], warnings=[("mu* of a: wide interval",), ()], job_id=JOB,
    )  # fmt: skip
    save_analysis(result, store)
    (saved,) = saved_analyses(store, JOB)
    assert saved.caption() == (
        "Morris elementary effects of new_cases (incidence) by day, 256 trajectories, "
        "noise fraction 4%"
    )
    assert saved.warnings == result.warnings == ["day=1: mu* of a: wide interval"]
    loss = SavedAnalysis("y", {"method": "sobol", "output": None, "value": "loss", "n": 8}, None)
    assert loss.caption() == "Sobol' indices of loss, N=8"
    assert loss.warnings == []
