"""``mops run --cluster slurm`` (and ``mops calibrate``) against the real Slurm the test session
starts (``slurm`` fixture): the SIR example, the cache, a worker's job cancelled mid-run, a
calibration, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.modelops.calibration.conftest import make_line_bundle
from tests.modelops.cli.conftest import finish, run_mops, start_mops
from tests.slurm_cluster import SlurmCluster

ROOT = Path(__file__).resolve().parents[3]
SIR = ROOT / "examples" / "sir"
WAIT_S = 120.0  # bound on every wait for a Slurm event

# the scheduler, the workers and their dashboards listen on loopback only
CLUSTER_FILE = "host: 127.0.0.1\nmemory: 1GB\nqueue: debug\nwalltime: '00:20:00'\n"

BLOCKING = '''
"""Tasks that say when they start, and wait for a gate file (bounded), for a mid-run cancel."""

import os
import signal
import time
from pathlib import Path


def blocking(params, seed):
    here = Path(params["dir"])
    (here / f"started-{params['x']}-{seed}-{os.getpid()}").write_text("")
    deadline = time.monotonic() + 120
    while not (here / "gate").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(here / "calls", "a", encoding="utf-8") as calls:
        calls.write(f"{params['x']} {seed}\\n")
    return {"summary": {"value": params["x"] * 2}}
'''


@pytest.fixture
def slurm_env(slurm: SlurmCluster, tmp_path: Path) -> dict[str, str]:
    """SLURM_CONF and a user cluster.yaml (XDG_CONFIG_HOME) that keep the run on loopback."""
    config = tmp_path / "config" / "modelops"
    config.mkdir(parents=True)
    (config / "cluster.yaml").write_text(CLUSTER_FILE, encoding="utf-8")
    return {"SLURM_CONF": str(slurm.conf), "XDG_CONFIG_HOME": str(config.parent)}


def _blocking_study(tmp_path: Path, tasks: int) -> tuple[Path, Path, Path]:
    """A bundle of the blocking model, the directory its tasks signal in, and a study of
    ``tasks`` tasks: (bundle, work, study file)."""
    bundle, work, study = tmp_path / "bundle", tmp_path / "work", tmp_path / "study.json"
    bundle.mkdir()
    work.mkdir()
    (bundle / "blocking.py").write_text(BLOCKING, encoding="utf-8")
    sets = [{"x": x, "dir": str(work)} for x in range(tasks)]
    study.write_text(json.dumps({"model": "blocking.blocking", "parameter_sets": sets}))
    return bundle, work, study


def _no_jobs_left(slurm: SlurmCluster) -> None:
    """Every job the run submitted is gone from the queue (closing cancels them)."""
    deadline = time.monotonic() + WAIT_S
    while slurm.jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs() == []


def _status(store: Path, job_id: str, env: dict[str, str]) -> str:
    shown = run_mops("status", job_id, "--store", store, env=env)
    assert shown.code == 0, shown.stderr
    return shown.stdout


def test_the_sir_study_runs_on_slurm_then_is_all_cached(
    slurm: SlurmCluster, slurm_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    args = ["run", SIR / "study.yaml", "--bundle", SIR, "--store", store, "--cluster", "slurm"]
    started = time.monotonic()
    done = run_mops(*args, "--jobs", 2, env=slurm_env, timeout=300)
    wall = time.monotonic() - started
    assert done.code == 0, done.stderr
    assert "starting slurm jobs (2 at most)" in done.stderr and "slurm jobs: " in done.stderr
    job_id = done.stdout.split()[1]
    summary = pl.read_parquet(store / "jobs" / job_id / "outputs" / "summary")
    assert summary.height == 45 and summary["task_id"].n_unique() == 45
    status = _status(store, job_id, slurm_env)
    assert "backend    Dask on slurm (dask-jobqueue)" in status
    cluster_line = next(line for line in status.splitlines() if line.startswith("cluster "))
    assert cluster_line.startswith("cluster    slurm jobs ") and "none" not in cluster_line
    logs = store / "jobs" / job_id / "workers"
    assert any(p.suffix == ".err" for p in logs.iterdir()), list(logs.iterdir())
    _no_jobs_left(slurm)
    print(f"SIR study on Slurm: {wall:.1f} s wall for `mops run --cluster slurm --jobs 2`")

    seen = {job for job, _ in slurm.jobs(all_states=True)}
    again = run_mops(*args, "--jobs", 2, "--json", env=slurm_env, timeout=120)
    assert again.code == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["cached"] == 45 and result["succeeded"] == 45
    assert "starting slurm jobs" not in again.stderr  # a finished study submits nothing
    assert {job for job, _ in slurm.jobs(all_states=True)} <= seen


def test_a_cancelled_worker_job_is_replaced_and_every_row_arrives_once(
    slurm: SlurmCluster, slurm_env: dict[str, str], tmp_path: Path
) -> None:
    bundle, work, study = _blocking_study(tmp_path, 6)
    store = tmp_path / "store"
    proc = start_mops(
        "run", study, "--bundle", bundle, "--store", store, "--cluster", "slurm",
        "--jobs", 1, "--json", env=slurm_env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_S
        while not any(work.glob("started-*")) and time.monotonic() < deadline:
            time.sleep(0.05)  # the first task is running in the one worker's job
        running = [job for job, state in slurm.jobs() if state == "RUNNING"]
        assert len(running) == 1, slurm.jobs()
        subprocess.run(["scancel", running[0]], env=slurm.env(), check=True, timeout=30)
        while running[0] in dict(slurm.jobs()) and time.monotonic() < deadline:
            time.sleep(0.05)
        (work / "gate").write_text("")  # the replacement's tasks run through
        result = finish(proc, timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["succeeded"] == 6 and summary["failed"] == 0
    rows = pl.read_parquet(store / "jobs" / summary["job_id"] / "outputs" / "summary")
    assert rows.height == 6 and rows["task_id"].n_unique() == 6  # every row exactly once
    assert sorted(rows["value"].to_list()) == [0, 2, 4, 6, 8, 10]
    status = _status(store, summary["job_id"], slurm_env)
    ids = next(line for line in status.splitlines() if line.startswith("cluster ")).split()[3:]
    assert len(ids) >= 2 and running[0].rstrip(",") in " ".join(ids)  # a replacement came
    _no_jobs_left(slurm)


def test_a_calibration_runs_on_slurm(
    slurm: SlurmCluster, slurm_env: dict[str, str], tmp_path: Path
) -> None:
    line = make_line_bundle(tmp_path)
    done = run_mops(
        "calibrate", "line.Line", "--bundle", line.path, "--store", line.store,
        "--targets", line.targets, "--fix", "width=5", "--algorithm", "random", "--budget", 8,
        "--batch", 4, "--replicates", 2, "--top-k", 2, "--cluster", "slurm", "--jobs", 2,
        "--json", env=slurm_env, timeout=300,
    )  # fmt: skip
    assert done.code == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["evaluations"] == 8 and result["best"]["loss"] is not None
    workers = line.store / "calibrations" / result["calibration_id"] / "workers"
    assert any(workers.iterdir())  # the batch jobs' logs sit beside the journal
    _no_jobs_left(slurm)


def test_jobs_that_never_start_time_out_and_are_cancelled(
    slurm: SlurmCluster, slurm_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    done = run_mops(
        "run", SIR / "study.yaml", "--bundle", SIR, "--store", store, "--cluster", "slurm",
        "--job-extra", "--begin=now+1hour", "--start-timeout", 3, env=slurm_env, timeout=120,
    )  # fmt: skip
    assert done.code == 2, (done.stdout, done.stderr)
    error = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "no slurm job started within 3 s" in error[0], done.stderr
    assert "pending" in error[0]
    _no_jobs_left(slurm)
    listed = run_mops("jobs", "--store", store)
    assert listed.stdout.strip() in ("no jobs", "") or listed.code == 2  # nothing registered


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "slurm", "--queue", "nope"], "Slurm has no partition 'nope'"),
        (["--cluster", "slurm", "--walltime", "1h"], "walltime must look like HH:MM:SS"),
        (["--cluster", "slurm", "--memory", "lots"], "memory must be an amount"),
        (["--cluster", "k8s"], "unknown batch system 'k8s'"),
        (["--jobs", "2"], "--jobs need --cluster slurm"),
        (["--cluster", "slurm", "--workers", "2"], "its jobs and cores"),
        (["--cluster", "slurm", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
    ],
)
def test_bad_cluster_input_is_one_line_and_exit_2(
    slurm_env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    store = tmp_path / "store"
    done = run_mops(
        "run", SIR / "study.yaml", "--bundle", SIR, "--store", store, *args, env=slurm_env
    )
    assert done.code == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (store / "jobs").exists()  # nothing half-written in the store


def test_no_sbatch_on_path_is_one_line(slurm_env: dict[str, str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()  # a PATH with python but without Slurm's commands
    for name in ("python", "python3"):
        (bin_dir / name).symlink_to(os.path.realpath(sys.executable))
    env = {**slurm_env, "PATH": str(bin_dir)}
    done = run_mops(
        "run", SIR / "study.yaml", "--bundle", SIR, "--store", tmp_path / "store",
        "--cluster", "slurm", env=env,
    )  # fmt: skip
    assert done.code == 2
    assert done.stderr.strip().splitlines() == [
        "error: cluster slurm: sbatch is not on PATH (run on a login node of the SLURM cluster)"
    ]


def test_the_studys_cluster_section_and_the_flags_merge(
    slurm: SlurmCluster, slurm_env: dict[str, str], tmp_path: Path
) -> None:
    study = tmp_path / "study.yaml"
    text = (SIR / "study.yaml").read_text(encoding="utf-8")
    study.write_text(text + "cluster: {kind: slurm, queue: nope}\n", encoding="utf-8")
    refused = run_mops("run", study, "--bundle", SIR, "--store", tmp_path / "s", env=slurm_env)
    assert refused.code == 2 and "no partition 'nope'" in refused.stderr  # the section chose
    done = run_mops(
        "run", study, "--bundle", SIR, "--store", tmp_path / "s", "--queue", slurm.partition,
        "--json", env=slurm_env, timeout=300,
    )  # fmt: skip
    assert done.code == 0, done.stderr  # the flag won over the section
    assert json.loads(done.stdout)["succeeded"] == 45
    _no_jobs_left(slurm)


def test_ctrl_c_cancels_the_runs_jobs(
    slurm: SlurmCluster, slurm_env: dict[str, str], tmp_path: Path
) -> None:
    bundle, work, study = _blocking_study(tmp_path, 2)
    proc = start_mops(
        "run", study, "--bundle", bundle, "--store", tmp_path / "store", "--cluster", "slurm",
        env=slurm_env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_S
        while not any(work.glob("started-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(state == "RUNNING" for _, state in slurm.jobs()), slurm.jobs()
        os.killpg(proc.pid, signal.SIGINT)
        result = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result.code == 130, result.stderr
    _no_jobs_left(slurm)  # the run's jobs were cancelled on the way out
