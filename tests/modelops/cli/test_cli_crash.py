"""Crash safety of ``mops run``: SIGKILL, Ctrl-C, ``mops cancel`` and two runs on one store.

Each test runs the real console script with 2 workers on ``toy.gated`` tasks, which finish only
when the test lets them, so that "while the job runs" is certain rather than a race. The store is
checked afterwards through the reader and by opening every Parquet file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from modelops.store import ResultStore
from modelops_contracts import SimJob
from tests.modelops.cli.conftest import (
    SERIES_ROWS,
    Workspace,
    alive,
    descendants,
    finish,
    wait_for,
)

pytestmark = pytest.mark.slow

Procs = list[subprocess.Popen[str]]


def counts(store: Path, job_id: str) -> dict[str, int] | None:
    """The job's task counts per status, or None before the run has registered it."""
    if not (store / "ledger.sqlite").is_file():
        return None
    with ResultStore(store) as result_store:
        if result_store.ledger.get_job(job_id) is None:
            return None
        return result_store.ledger.counts(job_id)


def committed(store: Path, job_id: str) -> int:
    """Tasks whose results are durable (done or cached)."""
    c = counts(store, job_id)
    return 0 if c is None else c["done"] + c["cached"]


def job_state(store: Path, job_id: str) -> str | None:
    """The job's state in the ledger, or None before the run has registered it."""
    if not (store / "ledger.sqlite").is_file():
        return None
    with ResultStore(store) as result_store:
        record = result_store.ledger.get_job(job_id)
    return None if record is None else record.state


def start_and_wait(
    ws: Workspace, study: Path, job_id: str, *, committed_over: int
) -> subprocess.Popen[str]:
    """Start ``mops run`` and wait until more than ``committed_over`` tasks are committed."""
    proc = ws.start(study, "--job-id", job_id)

    def progressed() -> bool:
        return proc.poll() is not None or committed(ws.store, job_id) > committed_over

    wait_for(progressed, timeout=60, what=f"more than {committed_over} committed tasks")
    assert proc.poll() is None, f"the run ended before the test could stop it: {finish(proc)}"
    return proc


def kill_hard(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the driver; every process it started must be gone within a few seconds."""
    children = descendants(proc.pid)
    assert len(children) >= 2, "expected the driver to have worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    wait_for(lambda: not alive(children), timeout=10, what="the killed run's workers to exit")


def assert_complete_exactly_once(store: Path, job_id: str, tasks: int) -> None:
    """Every task's rows appear once, and every Parquet file in the store opens."""
    with ResultStore(store) as result_store:
        job = SimJob.from_json(result_store.read_job_file(job_id))
        expected = {t.task_id for t in job.tasks}
        assert len(expected) == tasks
        assert result_store.ledger.counts(job_id)["pending"] == 0
        for output, per_task in (("series", SERIES_ROWS), ("summary", 1)):
            frame = result_store.read_results(job_id, output)
            rows = Counter(frame["task_id"].to_list())
            assert set(rows) == expected, f"{output}: tasks missing or unknown"
            wrong = {t: n for t, n in rows.items() if n != per_task}
            assert not wrong, f"{output}: tasks without exactly {per_task} rows: {wrong}"
            assert frame.height == tasks * per_task
        recorded = {store / path for path in result_store.ledger.shard_paths()}
    on_disk = set(store.rglob("*.parquet"))
    assert on_disk == recorded, f"shards on disk but not in the ledger: {on_disk - recorded}"
    for path in on_disk:
        pq.read_table(path)  # raises on a torn or corrupt file


def test_sigkill_early_and_mid_run_then_resume(workspace: Workspace, reap: Procs) -> None:
    tasks, job_id = 300, "crash"
    # the gate decides how far each run can get, so each kill lands mid-run however fast the
    # machine is: workers are inside tasks that cannot finish yet
    study, gate = workspace.gated_study(tasks, open_below=100)

    # kill point 1: as soon as the first batch of tasks is committed
    proc = start_and_wait(workspace, study, job_id, committed_over=0)
    reap.append(proc)
    kill_hard(proc)
    first = committed(workspace.store, job_id)
    assert 0 < first <= 100

    # kill point 2: in the middle of the resumed run, after it committed work of its own
    gate.write_text("200")
    proc = start_and_wait(workspace, study, job_id, committed_over=first)
    reap.append(proc)
    kill_hard(proc)
    second = committed(workspace.store, job_id)
    assert first < second <= 200

    gate.unlink()
    result = workspace.run(study, "--job-id", job_id, "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "completed"
    assert summary["cached"] == second  # what was committed before the kill is not run again
    assert summary["succeeded"] == tasks
    assert_complete_exactly_once(workspace.store, job_id, tasks)


def wait_running(ws: Workspace, proc: subprocess.Popen[str], job_id: str) -> None:
    """Wait until the run has registered the job as running and started its workers."""

    def running() -> bool:
        if proc.poll() is not None:
            return True
        return job_state(ws.store, job_id) == "running" and len(descendants(proc.pid)) >= 2

    wait_for(running, timeout=60, what="the run to start its workers")
    assert proc.poll() is None, f"the run ended early: {finish(proc)}"


def test_ctrl_c_exits_130_and_rerun_resumes(workspace: Workspace, reap: Procs) -> None:
    tasks, can_finish, job_id = 60, 20, "interrupted"
    study, gate = workspace.gated_study(tasks, open_below=can_finish)
    proc = start_and_wait(workspace, study, job_id, committed_over=0)
    reap.append(proc)
    children = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    result = finish(proc, timeout=30)
    assert result.code == 130, result
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == "error: interrupted"
    wait_for(lambda: not alive(children), timeout=10, what="workers to exit after Ctrl-C")
    assert job_state(workspace.store, job_id) == "interrupted"
    # what was committed stays; open tasks that shared a chunk with gated ones run again
    done = committed(workspace.store, job_id)
    assert 0 < done <= can_finish

    gate.unlink()
    rerun = workspace.run(study, "--job-id", job_id, "--json")
    assert rerun.code == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert (summary["state"], summary["cached"], summary["succeeded"]) == (
        "completed",
        done,
        tasks,
    )
    assert_complete_exactly_once(workspace.store, job_id, tasks)


def test_second_run_on_the_same_store_is_refused(workspace: Workspace, reap: Procs) -> None:
    tasks = 10
    study, gate = workspace.gated_study(tasks, open_below=0)  # nothing finishes until told
    first = workspace.start(study, "--job-id", "first", "--json")
    reap.append(first)
    wait_running(workspace, first, "first")
    status = workspace.mops("status", "first", "--json")  # readers are welcome meanwhile
    assert status.code == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "running"

    second = workspace.run(study, "--job-id", "second")
    assert second.code == 2, second
    lines = second.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), second.stderr
    assert "in use by another `mops run`" in lines[0]
    assert first.poll() is None

    gate.unlink()
    result = finish(first)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["succeeded"] == tasks
    with ResultStore(workspace.store) as result_store:
        assert [j.job_id for j in result_store.ledger.list_jobs()] == ["first"]
    assert_complete_exactly_once(workspace.store, "first", tasks)


def test_cancel_stops_a_running_job(workspace: Workspace, reap: Procs) -> None:
    tasks, job_id = 10, "to-cancel"
    study, _ = workspace.gated_study(tasks, open_below=0)
    proc = workspace.start(study, "--job-id", job_id)
    reap.append(proc)
    wait_running(workspace, proc, job_id)
    children = descendants(proc.pid)
    cancel = workspace.mops("cancel", job_id)
    assert cancel.code == 0, cancel.stderr
    assert f"cancel requested for job {job_id}" in cancel.stdout
    result = finish(proc, timeout=30)
    assert result.code == 130, result
    assert f"job {job_id} cancelled" in result.stdout
    wait_for(lambda: not alive(children), timeout=10, what="workers to exit after the cancel")
    status = json.loads(workspace.mops("status", job_id, "--json").stdout)
    assert status["state"] == "cancelled"
    assert status["counts"]["pending"] == tasks


def test_a_killed_run_is_not_reported_running(workspace: Workspace, reap: Procs) -> None:
    job_id = "killed"
    study, _ = workspace.gated_study(10, open_below=0)
    proc = workspace.start(study, "--job-id", job_id)
    reap.append(proc)
    wait_running(workspace, proc, job_id)
    kill_hard(proc)
    status = workspace.mops("status", job_id, "--json")
    assert status.code == 0, status.stderr
    assert json.loads(status.stdout)["state"] != "running", "a killed run is reported running"
    cancel = workspace.mops("cancel", job_id)
    assert cancel.code == 2, f"cancel accepted for a run that no process is running: {cancel}"
