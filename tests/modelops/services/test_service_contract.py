"""The SimulationService contract, run against every backend (like Optuna's storage tests).

One test class; the ``service`` fixture is parametrized over the backends. Backend-specific
behaviour (isolation from a dying worker) is tested below the class.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from modelops.bundle import BundleStore
from modelops.services import InProcessSimulationService, LocalSimulationService
from modelops.services._port import ServicePort
from modelops_contracts import SimReturn, SimTask, SimulationService
from tests.conftest import TOY_BAD_X, TOY_SERIES_ROWS, ToyBundle

BACKENDS = ["local", "inprocess"]


def make_service(kind: str, store: Path) -> ServicePort:
    if kind == "local":
        return LocalSimulationService(2, store=store)
    return InProcessSimulationService(store=store)


@pytest.fixture
def stored_bundle(toy_bundle: ToyBundle) -> ToyBundle:
    """The toy bundle, snapshotted into its store (where the port methods look for it)."""
    BundleStore(toy_bundle.store).put(toy_bundle.path)
    return toy_bundle


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, stored_bundle: ToyBundle) -> Iterator[ServicePort]:
    backend = make_service(request.param, stored_bundle.store)
    yield backend
    backend.close()


def tasks_of(
    toy: ToyBundle,
    model: str,
    xs: list[int],
    replicates: int = 1,
    outputs: tuple[str, ...] = ("summary", "series"),
) -> list[SimTask]:
    ref = BundleStore(toy.store).put(toy.path)
    study = toy.study(model, xs=xs, replicates=replicates, outputs=outputs)
    return list(study.to_simjob(ref).tasks)


def read(ret: SimReturn, output: str) -> pa.Table:
    return pa.ipc.open_stream(ret.outputs[output]).read_all()


class TestSimulationService:
    def test_is_a_simulation_service(self, service: ServicePort) -> None:
        assert isinstance(service, SimulationService)

    def test_gather_returns_one_result_per_task_in_order(
        self, service: ServicePort, stored_bundle: ToyBundle
    ) -> None:
        tasks = tasks_of(stored_bundle, "ok", [0, 1, 2, 4, 5], replicates=2)
        futures = service.submit_batch(tasks)
        assert len(futures) == len(tasks)

        results = service.gather(futures)

        assert [r.task_id for r in results] == [t.task_id for t in tasks]
        for task, ret in zip(tasks, results, strict=True):
            assert ret.ok, ret.error
            assert set(ret.outputs) == {"summary", "series"}
            series = read(ret, "series")
            assert series.num_rows == TOY_SERIES_ROWS
            assert set(series.column("task_id").to_pylist()) == {task.task_id}
            assert series.column("x").to_pylist() == [task.params.params["x"]] * TOY_SERIES_ROWS
            assert series.column("seed").to_pylist() == [task.seed] * TOY_SERIES_ROWS
            summary = read(ret, "summary")
            assert summary.num_rows == 1
            assert summary.column("x_twice").to_pylist() == [2 * task.params.params["x"]]
            assert summary.column("seed_mod").to_pylist() == [task.seed % 1000]

    def test_submit_one_task(self, service: ServicePort, stored_bundle: ToyBundle) -> None:
        (task,) = tasks_of(stored_bundle, "ok", [7])
        future = service.submit(task)
        (ret,) = service.gather([future])
        assert future.done()
        assert ret.task_id == task.task_id
        assert read(ret, "summary").column("x_twice").to_pylist() == [14]

    def test_empty_batch(self, service: ServicePort) -> None:
        assert service.submit_batch([]) == []
        assert service.gather([]) == []

    def test_model_exception_is_an_error_result(
        self, service: ServicePort, stored_bundle: ToyBundle
    ) -> None:
        tasks = tasks_of(stored_bundle, "boom", [0, TOY_BAD_X, 1])
        results = service.gather(service.submit_batch(tasks))

        assert [r.ok for r in results] == [True, False, True]
        error = results[1].error
        assert error is not None
        assert error.error_type == "ValueError"
        assert error.message == f"x must not be {TOY_BAD_X}"
        assert error.traceback is not None
        assert "toy.py" in error.traceback
        assert not error.retryable
        assert results[1].outputs == {}

    def test_each_task_gets_its_own_rows_even_none(
        self, service: ServicePort, stored_bundle: ToyBundle
    ) -> None:
        tasks = tasks_of(stored_bundle, "sparse", [2, 0, 3], outputs=("series",))
        results = service.gather(service.submit_batch(tasks))
        assert [r.ok for r in results] == [True, True, True]
        for task, ret, rows in zip(tasks, results, [2, 0, 3], strict=True):
            series = read(ret, "series")
            assert series.num_rows == rows
            assert series.column("step").to_pylist() == list(range(rows))
            assert set(series.column("task_id").to_pylist()) <= {task.task_id}
            assert "step" in series.column_names  # an empty table still has the columns

    def test_a_large_batch(self, service: ServicePort, stored_bundle: ToyBundle) -> None:
        tasks = tasks_of(stored_bundle, "ok", list(range(800)))
        results = service.gather(service.submit_batch(tasks))
        assert [r.task_id for r in results] == [t.task_id for t in tasks]
        for task, ret in zip(tasks, results, strict=True):
            series = read(ret, "series")
            assert series.column("task_id").to_pylist() == [task.task_id] * TOY_SERIES_ROWS
            assert series.column("x").to_pylist() == [task.params.params["x"]] * TOY_SERIES_ROWS

    def test_batches_interleave(self, service: ServicePort, stored_bundle: ToyBundle) -> None:
        first = tasks_of(stored_bundle, "ok", [0, 1, 2])
        second = tasks_of(stored_bundle, "ok", [10, 11])
        f1 = service.submit_batch(first)
        f2 = service.submit_batch(second)
        r2 = service.gather(f2)
        r1 = service.gather(f1)
        assert [r.task_id for r in r1] == [t.task_id for t in first]
        assert [r.task_id for r in r2] == [t.task_id for t in second]
        assert all(r.ok for r in r1 + r2)

    def test_same_task_same_bytes_on_every_backend(
        self, service: ServicePort, stored_bundle: ToyBundle
    ) -> None:
        tasks = tasks_of(stored_bundle, "ok", [1, 2], replicates=2)
        here = service.gather(service.submit_batch(tasks))
        reference = InProcessSimulationService(store=stored_bundle.store)
        there = reference.gather(reference.submit_batch(tasks))
        reference.close()
        again = service.gather(service.submit_batch(tasks))
        for a, b, c in zip(here, there, again, strict=True):
            assert a.outputs == b.outputs == c.outputs
            assert a.outputs  # not vacuous


def test_dying_worker_is_a_retryable_error_and_spares_the_others(
    stored_bundle: ToyBundle,
) -> None:
    tasks = tasks_of(stored_bundle, "die", [0, TOY_BAD_X, 1, 2, 4])
    with LocalSimulationService(2, store=stored_bundle.store) as service:
        results = service.gather(service.submit_batch(tasks))

    assert [r.task_id for r in results] == [t.task_id for t in tasks]
    assert [r.ok for r in results] == [True, False, True, True, True]
    error = results[1].error
    assert error is not None
    assert error.error_type == "WorkerDied"
    assert error.retryable
    for ret in results[:1] + results[2:]:
        assert read(ret, "summary").num_rows == 1


def test_port_needs_a_store_for_bundles(stored_bundle: ToyBundle) -> None:
    from modelops_contracts import BundleError

    tasks = tasks_of(stored_bundle, "ok", [1])
    for service in (LocalSimulationService(1), InProcessSimulationService()):
        with pytest.raises(BundleError, match="needs a store"):
            service.submit_batch(tasks)
        service.close()


VARIANT = """

def ok(params, seed):  # replaces the toy's ok: marks which bundle ran
    return {"summary": {"variant": 1}, "series": {"variant": [1]}}
"""


def test_batches_of_different_bundles_keep_their_own_code(
    stored_bundle: ToyBundle, tmp_path: Path
) -> None:
    variant = tmp_path / "variant"
    variant.mkdir()
    (variant / "toy.py").write_text((stored_bundle.path / "toy.py").read_text() + VARIANT)
    ref_b = BundleStore(stored_bundle.store).put(variant)
    original = tasks_of(stored_bundle, "ok", list(range(6)))
    changed = list(stored_bundle.study("ok", xs=[1]).to_simjob(ref_b).tasks)

    with LocalSimulationService(2, store=stored_bundle.store) as service:
        first = service.submit_batch(original[:2])  # fills both workers
        queued = service.submit_batch(original[2:])  # waits for a free worker
        other = service.submit_batch(changed)
        results = service.gather(first + queued + other)

    assert all(r.ok for r in results), [r.error for r in results]
    for ret in results[:6]:
        assert "x_twice" in read(ret, "summary").column_names, "ran with the other bundle"
    assert read(results[6], "summary").column("variant").to_pylist() == [1]
