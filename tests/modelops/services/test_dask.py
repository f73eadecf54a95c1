"""The Dask backend against a real scheduler and real worker processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import modelops
from modelops.api import JobHandle, compile_study, open_store
from modelops.bundle import BundleStore
from modelops.engine import Progress, RunOptions
from modelops.runtime.chunk import ChunkSpec, ChunkTask
from modelops.services import LocalSimulationService
from modelops.services.batch import BatchSettings
from modelops.services.dask import ClusterError, DaskSimulationService
from modelops_contracts import ContractViolationError, SimulationStudy
from modelops_contracts.task import bundle_digest
from tests.conftest import TOY_BAD_X, TOY_SERIES_ROWS, ToyBundle
from tests.modelops.services.conftest import DaskCluster, running_cluster

pytestmark = pytest.mark.slow

XS = [0, TOY_BAD_X, 1, 2, 4, 5]  # the bad task sits inside the first chunk


def run_on(backend: Any, toy: ToyBundle, study: SimulationStudy, **kwargs: Any) -> JobHandle:
    return modelops.run(study, bundle=toy.path, store=toy.store, backend=backend, **kwargs)


def statuses(handle: JobHandle) -> dict[str, int]:
    return {k: v for k, v in handle.status()["counts"].items() if v}


def sorted_rows(handle: JobHandle, output: str) -> pl.DataFrame:
    frame = handle.results(output)
    keys = ["task_id", "step"] if "step" in frame.columns else ["task_id"]
    return frame.sort(keys)


def assert_each_task_once(handle: JobHandle, tasks: int) -> None:
    summary = handle.results("summary")
    assert summary.height == tasks
    assert summary["task_id"].n_unique() == tasks
    counts = handle.results("series").group_by("task_id").len()
    assert counts.height == tasks
    assert set(counts["len"].to_list()) == {TOY_SERIES_ROWS}


def replaced_worker(cluster: DaskCluster, victim: int) -> None:
    """Wait until the nanny has replaced the worker process ``victim``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = cluster.worker_pids()
        if victim not in pids.values() and len(pids) == cluster.workers:
            return
        time.sleep(0.2)
    raise AssertionError(f"worker {victim} was not replaced")


def busy_children(cluster: DaskCluster) -> dict[str, int]:
    """How many chunks each worker is running right now."""

    def count() -> int:  # nested, so that it travels to the workers by value
        from modelops.services import _dask_worker

        return len(_dask_worker._busy)

    with cluster.client() as client:
        return dict(client.run(count))


def gate_study(toy: ToyBundle, gate: Path, n: int) -> SimulationStudy:
    """Tasks with x >= 4 wait until ``gate`` exists (the toy ``gated`` model)."""
    return toy.study("gated", xs=range(n), replicates=1, extra={"gate": str(gate)})


# -- same results as the local pool ---------------------------------------------------------------


def test_dask_rows_equal_the_local_pool_rows(
    dask_cluster: DaskCluster, toy_bundle: ToyBundle, tmp_path: Path
) -> None:
    study = toy_bundle.study("ok", xs=range(10), replicates=3)
    on_dask = run_on(DaskSimulationService(dask_cluster.address), toy_bundle, study)
    local_store = ToyBundle(toy_bundle.path, tmp_path / "local-store")
    on_pool = run_on(LocalSimulationService(2), local_store, study)

    assert on_dask.job_id == on_pool.job_id
    assert on_dask.summary is not None
    assert (on_dask.summary.state, on_dask.summary.succeeded) == ("completed", 30)
    assert_each_task_once(on_dask, 30)
    for output in ("summary", "series"):
        assert sorted_rows(on_dask, output).equals(sorted_rows(on_pool, output))
    backend = on_dask.status()["provenance"]["backend"]
    assert backend == f"Dask cluster {dask_cluster.address}, 2 worker threads"


def test_model_output_reaches_the_job_log_from_remote_workers(
    dask_cluster: DaskCluster, toy_bundle: ToyBundle
) -> None:
    study = toy_bundle.study("chatty", xs=range(3), replicates=1)
    handle = run_on(DaskSimulationService(dask_cluster.address), toy_bundle, study)

    assert statuses(handle) == {"done": 3}
    log = Path(handle.status()["log"]).read_text()
    for x in range(3):
        assert f"stdout: toy-stdout x={x}" in log
        assert f"stderr: toy-stderr x={x}" in log


# -- faults ---------------------------------------------------------------------------------------


def test_worker_killed_mid_chunk_every_row_arrives_once(
    dask_cluster: DaskCluster, toy_bundle: ToyBundle, tmp_path: Path
) -> None:
    before = dask_cluster.worker_pids()
    gate = tmp_path / "gate"
    killed: list[int] = []

    def kill_one_worker(progress: Progress) -> None:
        # once the first chunk (x < 4) is done, kill a worker whose chunk waits at the gate
        if progress.succeeded < 4 or killed:
            return
        running = [address for address, n in busy_children(dask_cluster).items() if n]
        if running:
            victim = before[running[0]]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            replaced_worker(dask_cluster, victim)  # it joins mid-job, to take the lost chunk
            gate.touch()

    study = gate_study(toy_bundle, gate, 40)
    handle = run_on(
        DaskSimulationService(dask_cluster.address),
        toy_bundle,
        study,
        options=RunOptions(retries=0),
        on_progress=kill_one_worker,
    )

    assert killed, "the run ended before the kill"
    assert handle.summary is not None
    assert handle.summary.state == "completed"
    assert statuses(handle) == {"done": 40}
    assert_each_task_once(handle, 40)
    # the newcomer received the bundle by itself
    digest = bundle_digest(compile_study(study, toy_bundle.path, store=toy_bundle.store).bundle_ref)

    def has_bundle(dask_worker: Any) -> bool:
        return (Path(dask_worker.local_directory) / "modelops" / "bundles" / digest).is_dir()

    with dask_cluster.client() as client:
        assert set(client.run(has_bundle).values()) == {True}


def test_task_that_kills_its_worker_fails_after_the_retries(
    dask_cluster: DaskCluster, toy_bundle: ToyBundle
) -> None:
    before = dask_cluster.worker_pids()
    study = toy_bundle.study("die", xs=XS, replicates=1)
    handle = run_on(
        DaskSimulationService(dask_cluster.address),
        toy_bundle,
        study,
        options=RunOptions(retries=1),
    )

    assert handle.summary is not None
    assert handle.summary.state == "failed"
    assert statuses(handle) == {"done": 5, "failed": 1}
    (failure,) = handle.failures()
    assert failure.error_type == "WorkerDied"
    assert "exit code 3" in (failure.message or "")
    assert failure.attempts == 2
    assert sorted(handle.results("summary")["x"].to_list()) == [0, 1, 2, 4, 5]
    # the model's process died, not the Dask workers
    assert dask_cluster.worker_pids() == before


def test_task_timeout_holds_on_dask(dask_cluster: DaskCluster, toy_bundle: ToyBundle) -> None:
    before = dask_cluster.worker_pids()
    study = SimulationStudy(
        model="toy.sleepy",
        parameter_sets=[{"x": 0, "t": 0}, {"x": 1, "t": 60}, {"x": 2, "t": 0}, {"x": 3, "t": 0}],
        outputs=["summary"],
    )
    handle = run_on(
        DaskSimulationService(dask_cluster.address),
        toy_bundle,
        study,
        options=RunOptions(task_timeout=1.0),
    )

    assert statuses(handle) == {"done": 3, "timeout": 1}
    (failure,) = handle.failures()
    assert (failure.status, failure.error_type) == ("timeout", "TaskTimeout")
    assert "1 s" in (failure.message or "")
    assert sorted(handle.results("summary")["x"].to_list()) == [0, 2, 3]
    assert dask_cluster.worker_pids() == before


def test_kill_stops_the_chunks_running_on_the_workers(
    dask_cluster: DaskCluster, toy_bundle: ToyBundle
) -> None:
    ref = BundleStore(toy_bundle.store).put(toy_bundle.path)
    spec = ChunkSpec(
        bundle_dir="",
        entrypoint="toy.sleepy/baseline",
        outputs=None,
        config=None,
        tasks=[ChunkTask(0, "a" * 64, "b" * 64, 0, 1, {"x": 0, "t": 60})],
    )
    backend = DaskSimulationService(dask_cluster.address)
    backend.start(
        bundle_ref=ref,
        bundle_zip=BundleStore(toy_bundle.store).path(ref),
        cache_dir=BundleStore(toy_bundle.store).cache_dir,
        log_path=None,
    )
    backend.submit_chunk(replace(spec, bundle_dir=backend.bundle_dir()), task_timeout=None)

    def busy() -> int:
        return sum(busy_children(dask_cluster).values())

    wait_for(lambda: busy() == 1, "the chunk to start")
    assert backend.poll(0.1) == []
    backend.close(kill=True)
    wait_for(lambda: busy() == 0, "the chunk to stop")  # not after its 60 s


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_lost_scheduler_is_a_clear_error_and_the_job_resumes_elsewhere(
    dask_cluster: DaskCluster, toy_bundle: ToyBundle, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    study = gate_study(toy_bundle, gate, 12)
    with running_cluster(tmp_path / "doomed", workers=1) as doomed:

        def kill_scheduler(progress: Progress) -> None:
            if progress.succeeded >= 4 and doomed.scheduler and doomed.scheduler.poll() is None:
                doomed.kill_scheduler()

        with pytest.raises(ClusterError) as caught:
            run_on(
                DaskSimulationService(doomed.address), toy_bundle, study, on_progress=kill_scheduler
            )
    message = str(caught.value)
    assert f"lost the Dask scheduler at {doomed.address}" in message
    assert "resumable" in message
    store = open_store(toy_bundle.store)
    (job,) = store.ledger.list_jobs()
    assert job.state == "interrupted"
    counts = store.ledger.counts(job.job_id)
    assert counts["done"] >= 4
    assert counts["done"] + counts["pending"] == 12

    gate.touch()
    handle = run_on(DaskSimulationService(dask_cluster.address), toy_bundle, study)

    assert handle.job_id == job.job_id
    assert handle.summary is not None
    assert handle.summary.state == "completed"
    assert handle.summary.cached == counts["done"]  # nothing done before ran again
    assert_each_task_once(handle, 12)


def test_unreachable_scheduler_is_a_cluster_error(toy_bundle: ToyBundle) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = DaskSimulationService(f"tcp://127.0.0.1:{port}", connect_timeout=1.0)
    with pytest.raises(
        ClusterError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"
    ):
        run_on(backend, toy_bundle, toy_bundle.study("ok", xs=range(2), replicates=1))


# -- LocalCluster, arguments -------------------------------------------------------------


def test_local_cluster_runs_a_study_and_has_a_dashboard(toy_bundle: ToyBundle) -> None:
    backend = DaskSimulationService(local=True, workers=2)
    links: list[str | None] = []
    study = toy_bundle.study("ok", xs=range(6), replicates=2)
    handle = run_on(
        backend, toy_bundle, study, on_progress=lambda p: links.append(backend.dashboard_link)
    )

    assert handle.summary is not None
    assert (handle.summary.state, handle.summary.succeeded) == ("completed", 12)
    assert_each_task_once(handle, 12)
    assert any(link and link.startswith("http://127.0.0.1:") for link in links)
    assert handle.status()["provenance"]["backend"].startswith("Dask LocalCluster tcp://127.0.0.1:")
    assert backend.dashboard_link is None  # closed with the run


def test_constructor_checks_its_arguments() -> None:
    one = "one of a scheduler address, local=True or batch="
    with pytest.raises(ContractViolationError, match=one):
        DaskSimulationService()
    with pytest.raises(ContractViolationError, match=one):
        DaskSimulationService("tcp://127.0.0.1:8786", local=True)
    with pytest.raises(ContractViolationError, match=one):
        DaskSimulationService(local=True, batch=BatchSettings())
    with pytest.raises(ContractViolationError, match="workers applies to local=True"):
        DaskSimulationService("tcp://127.0.0.1:8786", workers=2)
    backend = DaskSimulationService("local", workers=3)
    assert backend.workers == 3
    assert backend.description == "Dask LocalCluster (not started), 3 worker threads"


def test_mops_run_with_scheduler_flag_and_env(
    dask_cluster: DaskCluster, toy_bundle: ToyBundle, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    study_file = tmp_path / "study.json"
    study_file.write_text(toy_bundle.study("ok", xs=range(6), replicates=2).to_json())
    mops = Path(sys.executable).with_name("mops")
    base = [str(mops), "run", str(study_file), "--bundle", str(toy_bundle.path)]
    store = ["--store", str(toy_bundle.store)]
    first = subprocess.run(
        [*base, *store, "--scheduler", dask_cluster.address, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["state"], summary["succeeded"], summary["cached"]) == ("completed", 12, 0)
    # the same run named through the environment: everything is already in the store
    again = subprocess.run(
        [*base, *store, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MODELOPS_SCHEDULER": dask_cluster.address},
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["cached"] == 12
    status = subprocess.run(
        [str(mops), "status", summary["job_id"], *store, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["provenance"]["backend"].startswith("Dask cluster tcp://")
