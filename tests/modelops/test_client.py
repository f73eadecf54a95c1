"""JobSubmissionClient: submit a SimJob; status, wait, cancel and results, on real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from modelops.bundle import compute_digest
from modelops.client import JobSubmissionClient
from modelops.services import InProcessSimulationService
from modelops.services.local import LocalSimulationService
from modelops.store import ResultStore
from modelops_contracts import BundleError, SimJob, StoreError
from tests.conftest import TOY_SERIES_ROWS, ToyBundle, needs_proc_fd, open_files_under


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A file the ``toy.gated`` tasks with x >= 4 wait for; created at teardown at the latest."""
    path = tmp_path / "gate"
    yield path
    path.touch()


def gated_job(toy: ToyBundle, gate: Path, xs: range = range(12)) -> SimJob:
    study = toy.study("gated", xs=xs, replicates=1, extra={"gate": str(gate)})
    return study.to_simjob(compute_digest(toy.path))


def make_client(toy: ToyBundle, *, bundle: bool = True) -> JobSubmissionClient:
    return JobSubmissionClient(
        toy.store, service=LocalSimulationService(2), bundle=toy.path if bundle else None
    )


def test_submit_returns_at_once_then_wait_and_results(toy_bundle: ToyBundle, gate: Path) -> None:
    client = make_client(toy_bundle)
    job = gated_job(toy_bundle, gate)

    job_id = client.submit_simjob(job)

    assert job_id == job.job_id
    # the job cannot finish before the gate opens, so submit did not wait for it
    status = client.status(job_id)
    assert status["state"] == "running"
    assert status["total"] == 12
    with pytest.raises(TimeoutError):
        client.wait(job_id, timeout=0.2)
    gate.touch()
    summary = client.wait(job_id, timeout=60)
    assert (summary.state, summary.succeeded, summary.total) == ("completed", 12, 12)
    assert client.status(job_id)["state"] == "completed"
    results = client.results(job_id, "series")
    assert isinstance(results, pl.DataFrame)
    assert results.height == 12 * TOY_SERIES_ROWS
    assert sorted(client.results(job_id, "summary")["x"].to_list()) == list(range(12))


def test_cancel_stops_the_job_and_resubmit_resumes(toy_bundle: ToyBundle, gate: Path) -> None:
    client = make_client(toy_bundle)
    job = gated_job(toy_bundle, gate)
    job_id = client.submit_simjob(job)

    client.cancel(job_id)
    summary = client.wait(job_id, timeout=30)
    assert summary.state == "cancelled"
    assert client.status(job_id)["counts"]["pending"] > 0

    gate.touch()
    client.submit_simjob(job)
    summary = client.wait(job_id, timeout=60)
    assert (summary.state, summary.succeeded) == ("completed", 12)
    assert client.results(job_id, "summary")["task_id"].n_unique() == 12


def test_submitting_a_running_job_again_is_refused(toy_bundle: ToyBundle, gate: Path) -> None:
    client = make_client(toy_bundle)
    job = gated_job(toy_bundle, gate)
    client.submit_simjob(job)
    try:
        with pytest.raises(StoreError, match="already running"):
            client.submit_simjob(job)
    finally:
        gate.touch()
        client.wait(job.job_id, timeout=60)


def test_bundle_must_be_in_the_store_or_given(toy_bundle: ToyBundle, tmp_path: Path) -> None:
    job = toy_bundle.study("ok", xs=[1]).to_simjob(compute_digest(toy_bundle.path))
    with pytest.raises(BundleError, match="not in store"):
        make_client(toy_bundle, bundle=False).submit_simjob(job)

    other = tmp_path / "other-code"
    other.mkdir()
    (other / "toy.py").write_text("def ok(params, seed):\n    return {}\n")
    with pytest.raises(BundleError, match="digest"):
        JobSubmissionClient(toy_bundle.store, bundle=other).submit_simjob(job)


def test_bundle_already_in_the_store_needs_no_directory(toy_bundle: ToyBundle) -> None:
    job = toy_bundle.study("ok", xs=[1, 2]).to_simjob(compute_digest(toy_bundle.path))
    first = make_client(toy_bundle)
    first.submit_simjob(job)
    assert first.wait(job.job_id, timeout=60).succeeded == 4

    second = make_client(toy_bundle, bundle=False)
    second.submit_simjob(job)
    summary = second.wait(job.job_id, timeout=60)
    assert (summary.state, summary.cached) == ("completed", 4)


@needs_proc_fd
def test_polling_a_job_does_not_leak_file_descriptors(toy_bundle: ToyBundle) -> None:
    client = JobSubmissionClient(
        toy_bundle.store, service=InProcessSimulationService(), bundle=toy_bundle.path
    )
    job = toy_bundle.study("ok", xs=[1]).to_simjob(compute_digest(toy_bundle.path))
    client.submit_simjob(job)
    client.wait(job.job_id, timeout=60)
    client.status(job.job_id)
    client.results(job.job_id, "summary")
    client.cancel(job.job_id)
    before = open_files_under(toy_bundle.store)
    for _ in range(20):
        client.status(job.job_id)
        client.results(job.job_id, "summary")
        client.cancel(job.job_id)
    assert open_files_under(toy_bundle.store) == before


def test_unknown_jobs(toy_bundle: ToyBundle) -> None:
    client = make_client(toy_bundle)
    with pytest.raises(StoreError, match="not submitted by this client"):
        client.wait("job-nope")
    with pytest.raises(StoreError, match="no job"):
        client.status("job-nope")


def test_submit_fails_at_once_when_another_run_holds_the_store(toy_bundle: ToyBundle) -> None:
    job = toy_bundle.study("ok", xs=[1]).to_simjob(compute_digest(toy_bundle.path))
    client = make_client(toy_bundle)
    other = ResultStore(toy_bundle.store)
    with other.run_lock(), pytest.raises(StoreError, match="in use by another"):
        client.submit_simjob(job)
    other.close()
    # nothing was registered: the job is unknown to the store
    with pytest.raises(StoreError, match="no job"):
        client.status(job.job_id)


def test_a_store_inside_the_bundle_directory_is_not_part_of_the_code(
    toy_bundle: ToyBundle,
) -> None:
    store = toy_bundle.path / ".modelops"
    job = toy_bundle.study("ok", xs=[1, 2]).to_simjob(
        compute_digest(toy_bundle.path, exclude=[store])
    )
    client = JobSubmissionClient(
        store, service=InProcessSimulationService(), bundle=toy_bundle.path
    )
    client.submit_simjob(job)
    summary = client.wait(job.job_id, timeout=60)
    assert (summary.state, summary.succeeded) == ("completed", 4)
    # a second job in the same store: the first one's results now sit inside the bundle dir
    again = toy_bundle.study("ok", xs=[3]).to_simjob(
        compute_digest(toy_bundle.path, exclude=[store])
    )
    client.submit_simjob(again)
    assert client.wait(again.job_id, timeout=60).succeeded == 2
