"""``mops run`` end to end: summary, ``--json``, the cache, and the flags that change a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelops.store import FailureRecord, ResultStore
from tests.modelops.cli.conftest import (
    FAIL_X,
    SERIES_ROWS,
    FinishedJob,
    Result,
    Workspace,
    write_bundle,
    write_study,
)

SUMMARY_KEYS = {
    "job_id",
    "state",
    "total",
    "succeeded",
    "failed",
    "timed_out",
    "cached",
    "wall_seconds",
    "store",
}
XS = [1, 2, 5]
REPLICATES = 2
TASKS = len(XS) * REPLICATES


def summary_of(result: Result) -> dict[str, Any]:
    """The one JSON object ``mops run --json`` prints; fails on anything else on stdout."""
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    summary = json.loads(result.stdout)
    assert isinstance(summary, dict)
    assert set(summary) == SUMMARY_KEYS
    return summary


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path, Result]:
    """One text-mode run of ``toy.fast`` (3 parameter sets x 2 replicates) in its own store."""
    root = tmp_path_factory.mktemp("fast-run")
    ws = Workspace(root, write_bundle(root / "bundle"), root / "store")
    study = ws.study("fast.json", "toy.fast", XS, n_replicates=REPLICATES)
    return ws, study, ws.run(study)


def failures_of(ws: Workspace, job_id: str) -> list[FailureRecord]:
    """The job's failed and timed-out tasks, read from the ledger."""
    with ResultStore(ws.store) as store:
        return store.ledger.failures(job_id)


def test_run_prints_job_id_summary_and_plain_progress(
    fast_run: tuple[Workspace, Path, Result],
) -> None:
    ws, _, result = fast_run
    assert result.code == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("job job-") and " completed: " in first
    job_id = first.split()[1]
    assert f"{TASKS}/{TASKS} tasks succeeded (0 cached), 0 failed, 0 timed out" in first
    assert f"series ({TASKS * SERIES_ROWS} rows)" in result.stdout
    assert f"summary ({TASKS} rows)" in result.stdout
    # not a terminal: plain progress lines on stderr, no rich escape codes anywhere
    assert f"job {job_id}: {TASKS} tasks" in result.stderr
    assert f"{TASKS}/{TASKS} tasks" in result.stderr
    assert "\x1b[" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert (ws.store / "ledger.sqlite").is_file()


def test_rerun_json_is_one_object_and_all_cached(
    fast_run: tuple[Workspace, Path, Result],
) -> None:
    ws, study, first = fast_run
    assert first.code == 0
    result = ws.run(study, "--json")
    assert result.code == 0, result.stderr
    summary = summary_of(result)
    assert summary["state"] == "completed"
    assert summary["total"] == summary["cached"] == summary["succeeded"] == TASKS
    assert summary["failed"] == summary["timed_out"] == 0
    assert Path(summary["store"]) == ws.store
    assert summary["job_id"] in first.stdout
    assert "\x1b[" not in result.stderr


def test_no_cache_runs_every_task_again_without_duplicating_rows(
    fast_run: tuple[Workspace, Path, Result],
) -> None:
    ws, study, _ = fast_run
    result = ws.run(study, "--json", "--no-cache")
    assert result.code == 0, result.stderr
    summary = summary_of(result)
    assert summary["cached"] == 0
    assert summary["succeeded"] == TASKS
    with ResultStore(ws.store) as store:  # the newer rows replace the old ones, once each
        series = store.read_results(summary["job_id"], "series")
    assert series.height == TASKS * SERIES_ROWS
    assert series["task_id"].n_unique() == TASKS


def test_job_id_names_the_job_and_reuses_cached_tasks(
    fast_run: tuple[Workspace, Path, Result],
) -> None:
    ws, study, _ = fast_run
    result = ws.run(study, "--json", "--job-id", "named-run")
    assert result.code == 0, result.stderr
    summary = summary_of(result)
    assert summary["job_id"] == "named-run"
    assert summary["cached"] == TASKS  # same task ids, done by the default-named job
    with ResultStore(ws.store) as store:
        record = store.ledger.get_job("named-run")
        assert record is not None and record.state == "completed"
        assert store.output_counts("named-run") == {"series": TASKS * SERIES_ROWS, "summary": TASKS}


def test_failed_task_exits_1(failed_job: FinishedJob) -> None:
    assert failed_job.result.code == 1, failed_job.result.stderr
    summary = summary_of(failed_job.result)
    assert summary["state"] == "failed"
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (8, 6, 2)
    # `mops failures` on this job: see test_cli_read.py


def test_fail_fast_stops_at_the_first_failure(workspace: Workspace) -> None:
    # The failing task first, then 2 s of work that would succeed. One worker, so the failing
    # task is in the first chunk that finishes (with two, a late-starting worker may hold it).
    sets = [{"x": FAIL_X}] + [{"x": x, "sleep": 0.05} for x in range(10, 50)]
    study = write_study(workspace.root / "ff.json", "toy.failing", sets)
    result = workspace.run(study, "--json", "--fail-fast", workers=1)
    assert result.code == 1, result.stderr
    summary = summary_of(result)
    assert summary["state"] == "failed"
    assert summary["failed"] == 1
    assert summary["succeeded"] < summary["total"] - 1  # the run stopped early
    with ResultStore(workspace.store) as store:
        assert store.ledger.counts(summary["job_id"])["pending"] > 0


def test_retries_rerun_tasks_whose_worker_died(workspace: Workspace) -> None:
    markers = [workspace.root / f"deaths-{i}" for i in range(3)]
    study = write_study(
        workspace.root / "flaky.json",
        "toy.flaky",
        [
            {"x": 1, "deaths": 0, "marker": str(markers[0])},
            {"x": 2, "deaths": 1, "marker": str(markers[1])},
            {"x": 3, "deaths": 2, "marker": str(markers[2])},
        ],
    )
    # one retry: a task whose worker dies once succeeds, one that kills two workers fails
    # (the default of 2 retries would have saved it)
    result = workspace.run(study, "--json", "--retries", "1")
    assert result.code == 1, result.stderr
    summary = summary_of(result)
    assert (summary["succeeded"], summary["failed"]) == (2, 1)
    assert not markers[0].exists()
    assert markers[1].read_text() == "1"
    assert markers[2].read_text() == "2"  # run exactly twice: the first try and one retry
    [failure] = failures_of(workspace, summary["job_id"])
    assert (failure.error_type, failure.attempts) == ("WorkerDied", 2)
    assert "exit code 3" in (failure.message or "")


def test_task_timeout_kills_a_stuck_task(workspace: Workspace) -> None:
    study = write_study(
        workspace.root / "sleepy.json",
        "toy.sleepy",
        [{"x": 1, "sleep": 0}, {"x": 2, "sleep": 60}, {"x": 3, "sleep": 0}],
    )
    result = workspace.run(study, "--json", "--task-timeout", "1", timeout=40)
    assert result.code == 1, result.stderr
    summary = summary_of(result)
    assert summary["timed_out"] == 1
    assert summary["succeeded"] == 2
    assert summary["failed"] == 0
    assert summary["wall_seconds"] < 30
    [failure] = failures_of(workspace, summary["job_id"])
    assert (failure.status, failure.error_type) == ("timeout", "TaskTimeout")
