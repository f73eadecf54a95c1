"""Commands that read a store: status, jobs, results, failures, and cancel on a finished job.

All of them read the one session-wide job of :func:`failed_job` (8 tasks, 2 failed) and must not
change it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq

from modelops.bundle import compute_digest
from tests.modelops.cli.conftest import (
    FAIL_X,
    SERIES_ROWS,
    FinishedJob,
    Result,
    mops_executable,
    run_mops,
)

DONE = 6
SERIES = DONE * SERIES_ROWS
KEY_COLUMNS = {"task_id", "param_id", "replicate", "seed", "x"}


def one_error_line(result: Result, *needles: str) -> None:
    """Exit 2, nothing on stdout, one ``error:`` line on stderr containing every needle."""
    assert result.code == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_status_without_job_shows_the_latest_job(failed_job: FinishedJob) -> None:
    result = failed_job.workspace.mops("status")
    assert result.code == 0, result.stderr
    out = result.stdout
    assert f"job        {failed_job.job_id}" in out
    assert "state      failed" in out
    assert "8 total: 6 done, 0 cached, 2 failed, 0 timed out, 0 pending" in out
    assert "entrypoint toy.failing/baseline" in out
    assert f"output     series: {SERIES} rows" in out
    assert "python     3." in out and "modelops   " in out and "host       " in out


def test_status_json_has_counts_outputs_and_provenance(failed_job: FinishedJob) -> None:
    result = failed_job.workspace.mops("status", failed_job.job_id, "--json")
    assert result.code == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["job_id"] == failed_job.job_id
    assert status["state"] == "failed"
    assert status["total"] == 8
    assert status["counts"]["done"] == DONE and status["counts"]["failed"] == 2
    assert status["outputs"] == {"series": SERIES, "summary": DONE}
    assert status["bundle_ref"] == compute_digest(failed_job.workspace.bundle)
    assert status["provenance"]["python"].startswith("3.")
    assert status["started_at"] and status["finished_at"]


def test_jobs_lists_the_job(failed_job: FinishedJob) -> None:
    result = failed_job.workspace.mops("jobs")
    assert result.code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (failed_job.job_id, "failed", "8", str(DONE), "2")
    ]


def test_results_lists_outputs_with_row_counts(failed_job: FinishedJob) -> None:
    result = failed_job.workspace.mops("results", failed_job.job_id)
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [f"series\t{SERIES} rows", f"summary\t{DONE} rows"]


def test_results_prints_a_table(failed_job: FinishedJob) -> None:
    result = failed_job.workspace.mops("results", failed_job.job_id, "summary")
    assert result.code == 0, result.stderr
    assert f"shape: ({DONE}, " in result.stdout
    for column in ("task_id", "replicate", "seed", "total"):
        assert column in result.stdout


def test_results_to_parquet_and_csv(failed_job: FinishedJob, tmp_path: Path) -> None:
    ws = failed_job.workspace
    parquet, table_csv = tmp_path / "summary.parquet", tmp_path / "series.csv"
    result = ws.mops("results", failed_job.job_id, "summary", "-o", parquet)
    assert result.code == 0, result.stderr
    assert f"wrote {DONE} rows" in result.stdout
    table = pq.read_table(parquet)
    assert table.num_rows == DONE
    assert KEY_COLUMNS | {"total"} <= set(table.column_names)
    assert len(set(table.column("task_id").to_pylist())) == DONE
    assert FAIL_X not in table.column("x").to_pylist()

    result = ws.mops("results", failed_job.job_id, "series", "-o", table_csv)
    assert result.code == 0, result.stderr
    with table_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == SERIES
    assert KEY_COLUMNS | {"step", "value"} <= set(rows[0])


def test_results_bad_output_job_or_format_is_one_error_line(
    failed_job: FinishedJob, tmp_path: Path
) -> None:
    ws = failed_job.workspace
    one_error_line(ws.mops("results", failed_job.job_id, "nope"), "nope", "series, summary")
    one_error_line(ws.mops("results", "no-such-job"), "no-such-job")
    one_error_line(
        ws.mops("results", failed_job.job_id, "series", "-o", tmp_path / "x.xlsx"), ".parquet"
    )
    assert not (tmp_path / "x.xlsx").exists()


def test_failures_show_type_message_and_stderr_tail(failed_job: FinishedJob) -> None:
    result = failed_job.workspace.mops("failures", failed_job.job_id)
    assert result.code == 0, result.stderr
    out = result.stdout
    assert out.count(f"ValueError: x must not be {FAIL_X}") == 2
    assert "stderr (tail):" in out and "toy model diagnostic: x is cursed" in out
    assert "replicate 0" in out and "replicate 1" in out


def test_cancel_a_finished_job_is_refused(failed_job: FinishedJob) -> None:
    ledger = failed_job.workspace.store / "ledger.sqlite"
    before = ledger.read_bytes()
    one_error_line(failed_job.workspace.mops("cancel", failed_job.job_id), "not running", "failed")
    one_error_line(failed_job.workspace.mops("cancel", "no-such-job"), "no-such-job")
    assert ledger.read_bytes() == before


def test_read_commands_on_a_missing_store_write_nothing(tmp_path: Path) -> None:
    store = tmp_path / "nowhere"
    one_error_line(run_mops("status", "--store", store), "no ModelOps store")
    assert not store.exists()


def test_every_read_command_works_on_a_read_only_mount(
    failed_job: FinishedJob, tmp_path: Path
) -> None:
    """status, jobs, results, failures, aggregate and plots read a store mounted read-only;
    a command that must write into it (plot to its job directory, cancel) says so in one line."""
    store, mount = failed_job.workspace.store, tmp_path / "mnt"
    mount.mkdir()
    job = failed_job.job_id
    commands = [
        ["status", job],
        ["jobs"],
        ["results", job, "summary"],
        ["failures", job],
        ["results", job, "series", "--aggregate", "--by", "step"],
        ["plot", job, "series", "--x", "step", "--y", "value", "-o", tmp_path / "out.png"],
        ["plot", job, "series", "--x", "step", "--y", "value"],
        ["cancel", job],
    ]
    mops = mops_executable()
    script = f"mount --bind '{store}' '{mount}' && mount -o remount,bind,ro '{mount}' || exit 99\n"
    for i, args in enumerate(commands):
        line = " ".join(f"'{a}'" for a in [mops, *args, "--store", mount])
        script += (
            f"{line} >'{tmp_path}/{i}.out' 2>'{tmp_path}/{i}.err'; echo $? >'{tmp_path}/{i}.rc'\n"
        )
    flags = "-m" if os.geteuid() == 0 else "-rm"
    before = sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in store.rglob("*"))
    done = subprocess.run(["unshare", flags, "sh", "-c", script], check=False, timeout=120)
    assert done.returncode == 0

    def result(i: int) -> Result:
        code = int((tmp_path / f"{i}.rc").read_text())
        return Result(
            code, (tmp_path / f"{i}.out").read_text(), (tmp_path / f"{i}.err").read_text()
        )

    for i in range(6):
        assert result(i).code == 0, (commands[i], result(i))
    assert "state      failed" in result(0).stdout
    assert "2 failed task(s)" in result(3).stdout
    assert (tmp_path / "out.png").stat().st_size > 0
    one_error_line(result(6), "cannot write", "Read-only file system")
    one_error_line(result(7), "not writable")
    after = sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in store.rglob("*"))
    assert after == before
