"""The backend contract suite (modelops.testing) run against every backend, and its selection.

Each class includes the suites its backend's capabilities call for; the suite itself checks that
the choice matches what the backend declares.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from modelops.services import (
    BackendCapabilities,
    ChunkBackend,
    DaskSimulationService,
    InProcessSimulationService,
    LocalSimulationService,
    TaskPort,
    backend_for,
)
from modelops.testing import (
    BackendTests,
    ContractStore,
    CrashTests,
    EnvironmentTests,
    TimeoutTests,
    read_output,
    write_contract_store,
    write_environment_bundles,
)
from modelops_contracts import BundleError, ContractViolationError
from tests.modelops.services.conftest import DaskCluster


@pytest.fixture(name="contract_store")
def _contract_store(tmp_path: Path) -> ContractStore:
    return write_contract_store(tmp_path / "contract")


class TestLocalPool(BackendTests, CrashTests, TimeoutTests, EnvironmentTests):
    @pytest.fixture
    def backend(self, contract_store: ContractStore) -> Iterator[ChunkBackend]:
        backend = LocalSimulationService(2, store=contract_store.root)
        yield backend
        backend.close()


class TestInProcess(BackendTests):
    @pytest.fixture
    def backend(self, contract_store: ContractStore) -> Iterator[ChunkBackend]:
        backend = InProcessSimulationService(store=contract_store.root)
        yield backend
        backend.close()


@pytest.mark.slow
class TestDaskCluster(BackendTests, CrashTests, TimeoutTests, EnvironmentTests):
    @pytest.fixture
    def backend(
        self, dask_cluster: DaskCluster, contract_store: ContractStore
    ) -> Iterator[ChunkBackend]:
        backend = DaskSimulationService(dask_cluster.address, store=contract_store.root)
        yield backend
        backend.close()


def test_each_backend_declares_its_capabilities() -> None:
    assert LocalSimulationService.capabilities == BackendCapabilities(
        enforces_timeouts=True,
        isolates_crashes=True,
        needs_shared_filesystem=True,
        chunks_per_worker=1,
        runs_environments=True,
    )
    assert DaskSimulationService.capabilities == BackendCapabilities(
        enforces_timeouts=True,
        isolates_crashes=True,
        needs_shared_filesystem=False,
        chunks_per_worker=2,
        runs_environments=True,
    )
    assert InProcessSimulationService.capabilities == BackendCapabilities(
        enforces_timeouts=False,
        isolates_crashes=False,
        needs_shared_filesystem=True,
        chunks_per_worker=1,
    )


def test_the_port_methods_need_a_store(contract_store: ContractStore) -> None:
    tasks = contract_store.tasks("rows", [{"x": 1}])
    for backend in (LocalSimulationService(1), InProcessSimulationService()):
        with pytest.raises(BundleError, match="needs a store to find bundle snapshots"):
            backend.submit_batch(tasks)
        assert backend.submit_batch([]) == []
        backend.close()


def test_gather_rejects_futures_the_port_never_saw(contract_store: ContractStore) -> None:
    backend = InProcessSimulationService(store=contract_store.root)
    port = TaskPort(backend, store=contract_store.root)
    ours = port.submit_batch(contract_store.tasks("rows", [{"x": 1}]))
    with pytest.raises(ContractViolationError, match="1 of the futures were not submitted"):
        port.gather([*ours, Future()])
    assert port.gather(ours)[0].ok


# -- choosing a backend --------------------------------------------------------------------


def test_backend_for_no_scheduler_is_the_local_pool() -> None:
    backend = backend_for(scheduler=None, workers=3)
    assert isinstance(backend, LocalSimulationService)
    assert backend.workers == 3
    default = backend_for(scheduler=None, workers=None)
    assert isinstance(default, LocalSimulationService) and default.workers >= 1


def test_backend_for_local_is_a_local_dask_cluster() -> None:
    backend = backend_for(scheduler="local", workers=3)
    assert isinstance(backend, DaskSimulationService)
    assert backend.description == "Dask LocalCluster (not started), 3 worker threads"
    assert backend_for(scheduler="local", workers=None).workers == 2


def test_backend_for_an_address_is_that_cluster() -> None:
    backend = backend_for(scheduler="tcp://127.0.0.1:8786", workers=None)
    assert isinstance(backend, DaskSimulationService)
    assert backend.description == "Dask cluster tcp://127.0.0.1:8786, 1 worker thread"


def test_backend_for_rejects_what_cannot_apply() -> None:
    with pytest.raises(ContractViolationError, match="at least 1, got 0"):
        backend_for(scheduler=None, workers=0)
    with pytest.raises(ContractViolationError, match="set where its workers are started"):
        backend_for(scheduler="tcp://127.0.0.1:8786", workers=4)


def test_services_messages_name_no_cli_flags() -> None:
    import modelops.services as services

    root = services.__file__.rsplit("/", 1)[0]
    for name in (
        "dask.py",
        "_dask_worker.py",
        "local.py",
        "_pool.py",
        "_port.py",
        "_select.py",
        "batch.py",
    ):
        with open(f"{root}/{name}", encoding="utf-8") as handle:
            text = handle.read()
        for flag in ("--scheduler", "--workers", "--store", "--task-timeout", "--retries"):
            assert flag not in text, (name, flag)


def test_public_names_resolve_and_modelops_never_imports_the_test_suite() -> None:
    import modelops.services as services

    assert services.__all__ == sorted(services.__all__)
    for name in services.__all__:
        assert getattr(services, name) is not None
    code = (
        "import sys, modelops, modelops.services as s\n"
        "[getattr(s, n) for n in s.__all__]\n"
        "assert 'modelops.testing' not in sys.modules and 'pytest' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("kept", [1, 2])
def test_the_local_pool_keeps_as_many_warm_environments_as_asked(tmp_path: Path, kept: int) -> None:
    store = write_contract_store(tmp_path / "contract")
    refs = list(write_environment_bundles(store).values())
    backend = LocalSimulationService(1, store=store.root, environments=kept)
    pids: list[int] = []
    try:
        for ref in refs + refs:  # A, B, then A again: warm only when two pools are kept
            task = store.tasks("version", [{"x": 1}], bundle_ref=ref, module="env_model")
            (ret,) = backend.gather(backend.submit_batch(task))
            pids.append(read_output(ret, "summary")["pid"].to_pylist()[0])
    finally:
        backend.close()
    assert len(set(pids)) == (4 if kept == 1 else 2), pids
    with pytest.raises(ContractViolationError, match="environments must be at least 1"):
        LocalSimulationService(1, environments=0)
