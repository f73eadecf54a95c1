"""SIGKILL of the driver in the middle of one large commit (100,000 tasks): exactly-once rows.

The run commits all its tasks at once (commit thresholds set above the job's size), so the
kills land inside that commit: while its shard is being written, and once the shard is in
place but perhaps before the ledger transaction that records it has ended. Whatever the moment,
a reader sees all of the commit or none of it, and the run that follows completes the job with
every task's row exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import modelops
from modelops.store import ResultStore
from modelops.store._fs import TEMP_PREFIX
from modelops_contracts import SimJob
from tests.modelops.cli.conftest import alive, descendants, wait_for

pytestmark = pytest.mark.slow

SETS, REPLICATES = 1_000, 100  # 100,000 tasks
JOB = "big-commit"

MODEL = "def one(params, seed):\n    return {'summary': {'y': params['x'] * 2.0}}\n"

RUN = textwrap.dedent(
    """
    import sys
    from modelops.api import run
    from modelops.engine import RunOptions
    options = RunOptions(commit_rows=10**7, commit_seconds=3600.0, commit_bytes=2**31)
    run(sys.argv[1], bundle=sys.argv[2], store=sys.argv[3], workers=2, job_id=sys.argv[4],
        options=options)
    """
)


def start(tmp_path: Path) -> subprocess.Popen[str]:
    args = [str(tmp_path / "study.json"), str(tmp_path / "bundle"), str(tmp_path / "store"), JOB]
    return subprocess.Popen(
        [sys.executable, "-c", RUN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def shards(store: Path, *, temporary: bool) -> list[Path]:
    directory = store / "jobs" / JOB / "outputs" / "summary"
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX) == temporary]


def kill_when(proc: subprocess.Popen[str], condition: object, what: str) -> None:
    def ready() -> bool:
        return proc.poll() is not None or bool(condition())  # type: ignore[operator]

    wait_for(ready, timeout=120, what=what, interval=0.001)
    assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()}"
    children = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    wait_for(lambda: not alive(children), timeout=10, what="the killed run's workers to exit")


def committed(store: Path) -> tuple[int, int]:
    """(done tasks in the ledger, rows a reader sees) after a kill."""
    with ResultStore(store) as result_store:
        done = result_store.ledger.counts(JOB)["done"]
        rows = result_store.read_results(JOB, "summary").height if done else 0
    return done, rows


def test_sigkill_inside_a_100k_task_commit_keeps_rows_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "m.py").write_text(MODEL)
    study = {
        "model": "m.one",
        "scenario": "baseline",
        "sampling_method": "manual",
        "n_replicates": REPLICATES,
        "parameter_sets": [{"x": float(i)} for i in range(SETS)],
    }
    (tmp_path / "study.json").write_text(json.dumps(study))
    store, total = tmp_path / "store", SETS * REPLICATES

    # 1. while the commit's shard is being written
    proc = start(tmp_path)
    kill_when(proc, lambda: shards(store, temporary=True), "the commit's temporary shard")
    assert committed(store) == (0, 0)

    # 2. as soon as the shard is in place: the ledger transaction may or may not have ended
    proc = start(tmp_path)
    kill_when(proc, lambda: shards(store, temporary=False), "the commit's shard in place")
    assert committed(store) in ((0, 0), (total, total))  # all of the commit or none of it

    # 3. the next run completes the job, and every task has its one row
    proc = start(tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    with ResultStore(store) as result_store:
        job = SimJob.from_json(result_store.read_job_file(JOB))
        assert result_store.ledger.counts(JOB) == {
            "pending": 0, "done": total, "cached": 0, "failed": 0, "timeout": 0,
        }  # fmt: skip
        frame = result_store.read_results(JOB, "summary")
        rows = Counter(frame["task_id"].to_list())
        assert set(rows) == {t.task_id for t in job.tasks}
        assert set(rows.values()) == {1} and frame.height == total
        recorded = {store / path for path in result_store.ledger.shard_paths()}
    on_disk = set(store.rglob("*.parquet"))
    assert on_disk == recorded  # the killed commits' files were cleaned up
    for path in on_disk:
        pq.read_table(path)

    # 4. the same tasks under another job id come from the cache index, built by those runs
    other = modelops.run(
        tmp_path / "study.json", bundle=tmp_path / "bundle", store=store, workers=1,
        job_id="same-tasks",
    )  # fmt: skip
    assert other.summary is not None and other.summary.cached == total
    assert other.results("summary").height == total
