"""The contract test suite of chunk backends, run against every backend (as Optuna's storages).

Subclass the suites your backend's :class:`~modelops.services.BackendCapabilities` call for and
provide a ``backend`` fixture, built with ``store=contract_store.root`` and closed afterwards::

    class TestMyBackend(BackendTests, CrashTests, TimeoutTests):
        @pytest.fixture
        def backend(self, contract_store: ContractStore) -> Iterator[ChunkBackend]:
            backend = MyBackend(store=contract_store.root)
            yield backend
            backend.close()

- :class:`BackendTests`: what every backend promises: the chunk contract (one event per chunk,
  results in task order, the window bounded by ``chunks_per_worker``, restarts, logs) and the
  task-level port over it (batches mixing scenarios, configs, outputs and bundles).
- :class:`CrashTests`: for backends that isolate crashes: ``WorkerDied`` and its position, and
  how the port blames a death.
- :class:`TimeoutTests`: for backends that enforce timeouts: ``TaskTimedOut`` and its position.
- :class:`EnvironmentTests`: for backends that run bundle environments: each bundle's tasks
  import its own pins, and switching between environments keeps each one's processes warm
  (these build real environments with uv, from PyPI).

A test fails when a class includes a suite its backend's capabilities do not claim, or leaves
out one they do, so a backend is tested for exactly what it declares.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from modelops.envs import Environment
from modelops.runtime.spec import ChunkResult, ChunkSpec, ChunkTask
from modelops.services import (
    BackendCapabilities,
    ChunkBackend,
    ChunkDone,
    ChunkEvent,
    InProcessSimulationService,
    TaskPort,
    TaskTimedOut,
    WorkerDied,
)
from modelops.testing._bundle import (
    BAD_X,
    DIE_EXIT,
    ENV_VERSIONS,
    IMPORT_EXIT,
    SERIES_ROWS,
    ContractStore,
    environment_of,
    write_contract_store,
    write_environment_bundles,
)
from modelops_contracts import (
    BundleError,
    ContractViolationError,
    SimReturn,
    SimTask,
    SimulationService,
)
from modelops_contracts.task import bundle_digest

__all__ = [
    "BackendTests",
    "CrashTests",
    "EnvironmentTests",
    "TimeoutTests",
    "chunk_spec",
    "collect_events",
    "read_output",
    "start_bundle",
]

_WITHIN = 120.0  # seconds any test waits for its events before it fails


# -- helpers --------------------------------------------------------------------------------


def start_bundle(backend: ChunkBackend, store: ContractStore, bundle_ref: str | None = None) -> str:
    """Start ``backend`` on a stored bundle (the contract bundle by default); its bundle dir."""
    ref = bundle_ref or store.bundle_ref
    backend.start(
        bundle_ref=ref, bundle_zip=store.zip_of(ref), cache_dir=store.cache_dir, log_path=None
    )
    return backend.bundle_dir()


def chunk_spec(
    bundle_dir: str, tasks: Sequence[SimTask], log_path: Path | None = None
) -> ChunkSpec:
    """The chunk of ``tasks`` (which share entrypoint, outputs and config)."""
    first = tasks[0]
    return ChunkSpec(
        bundle_dir=bundle_dir,
        entrypoint=first.entrypoint,
        outputs=first.outputs,
        config=first.config,
        tasks=[
            ChunkTask(i, t.task_id, t.param_id, 0, t.seed, t.params.to_dict())
            for i, t in enumerate(tasks)
        ],
        log_path=None if log_path is None else str(log_path),
    )


def collect_events(
    backend: ChunkBackend, tickets: Iterable[int], within: float = _WITHIN
) -> dict[int, ChunkEvent]:
    """Poll until every ticket has its event; fails on an unknown or a second event."""
    wanted = set(tickets)
    events: dict[int, ChunkEvent] = {}
    deadline = time.monotonic() + within
    while len(events) < len(wanted):
        left = deadline - time.monotonic()
        assert left > 0, f"{len(wanted) - len(events)} of {len(wanted)} chunks never ended"
        for event in backend.poll(min(left, 1.0)):
            assert event.ticket in wanted, f"an event for a ticket never submitted: {event}"
            assert event.ticket not in events, f"a second event for a chunk: {event}"
            events[event.ticket] = event
    return events


def _run(backend: ChunkBackend, spec: ChunkSpec, task_timeout: float | None = None) -> ChunkEvent:
    assert backend.free_slots() > 0
    ticket = backend.submit_chunk(spec, task_timeout=task_timeout)
    return collect_events(backend, [ticket])[ticket]


def _result(event: ChunkEvent) -> ChunkResult:
    assert isinstance(event, ChunkDone), event
    assert isinstance(event.value, ChunkResult)
    return event.value


def read_output(ret: SimReturn, output: str) -> pa.Table:
    """One output of a task's result, as a table."""
    return pa.ipc.open_stream(ret.outputs[output]).read_all()


def _xs(values: Iterable[int]) -> list[dict[str, Any]]:
    return [{"x": x} for x in values]


# -- suites ---------------------------------------------------------------------------------


class _Suite:
    """The fixtures every suite shares; subclasses provide ``backend``."""

    @pytest.fixture
    def contract_store(self, tmp_path: Path) -> ContractStore:
        """A store holding the contract bundles (see :mod:`modelops.testing._bundle`)."""
        return write_contract_store(tmp_path / "contract")

    @pytest.fixture
    def backend(self, contract_store: ContractStore) -> Iterator[ChunkBackend]:
        """The backend under test, built with ``store=contract_store.root``; closed after."""
        raise NotImplementedError("a backend test class provides the backend fixture")
        yield  # pragma: no cover


class BackendTests(_Suite):
    """The chunk contract and the task-level port: what every backend promises."""

    # -- declaration --

    def test_the_suites_match_the_capabilities(self, backend: ChunkBackend) -> None:
        capabilities = backend.capabilities
        assert isinstance(capabilities, BackendCapabilities)
        assert capabilities.chunks_per_worker >= 1
        assert isinstance(self, CrashTests) == capabilities.isolates_crashes, (
            "include CrashTests exactly when the backend isolates crashes"
        )
        assert isinstance(self, TimeoutTests) == capabilities.enforces_timeouts, (
            "include TimeoutTests exactly when the backend enforces timeouts"
        )
        assert isinstance(self, EnvironmentTests) == capabilities.runs_environments, (
            "include EnvironmentTests exactly when the backend runs bundle environments"
        )

    def test_a_backend_without_environments_refuses_one(
        self, backend: ChunkBackend, tmp_path: Path
    ) -> None:
        backend.use_environment(None)  # the workers' own Python: every backend runs that
        if backend.capabilities.runs_environments:
            return  # EnvironmentTests holds what such a backend promises
        elsewhere = Environment("0" * 16, tmp_path / "env", {"packages": {}})
        with pytest.raises(ContractViolationError):
            backend.use_environment(elsewhere)

    def test_only_a_backend_on_the_shared_filesystem_extracts_into_the_cache_dir(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        start_bundle(backend, contract_store)
        extracted = (contract_store.cache_dir / bundle_digest(contract_store.bundle_ref)).is_dir()
        assert extracted == backend.capabilities.needs_shared_filesystem

    # -- chunks --

    def test_free_slots_are_bounded_by_chunks_per_worker(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        bundle_dir = start_bundle(backend, contract_store)
        slots = backend.free_slots()
        assert slots == backend.capabilities.chunks_per_worker * backend.workers
        tickets = []
        for i in range(slots):
            tasks = contract_store.tasks("rows", _xs([i]))
            tickets.append(backend.submit_chunk(chunk_spec(bundle_dir, tasks), task_timeout=None))
        assert backend.free_slots() == 0
        events = collect_events(backend, tickets)
        assert all(isinstance(e, ChunkDone) for e in events.values())
        assert backend.free_slots() == slots

    def test_every_chunk_ends_in_exactly_one_event(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        bundle_dir = start_bundle(backend, contract_store)
        chunks = {n: contract_store.tasks("rows", _xs(range(n, n + 3))) for n in range(0, 36, 3)}
        pending = list(chunks)
        sent: dict[int, int] = {}  # ticket -> chunk
        events: dict[int, ChunkEvent] = {}
        deadline = time.monotonic() + _WITHIN
        while len(events) < len(chunks):
            while pending and backend.free_slots() > 0:
                n = pending.pop()
                sent[backend.submit_chunk(chunk_spec(bundle_dir, chunks[n]), task_timeout=None)] = n
            assert time.monotonic() < deadline, f"{len(chunks) - len(events)} chunks never ended"
            for event in backend.poll(1.0):
                assert event.ticket in sent and event.ticket not in events, event
                events[event.ticket] = event
        assert len(sent) == len(chunks)
        for ticket, n in sent.items():
            result = _result(events[ticket])
            assert [o.task_id for o in result.outcomes] == [t.task_id for t in chunks[n]]

    def test_chunk_done_holds_the_results_in_task_order(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        tasks = contract_store.tasks("rows", _xs([5, 0, 9, 2, 7, 1, 4]))
        event = _run(backend, chunk_spec(start_bundle(backend, contract_store), tasks))
        result = _result(event)
        assert event.worker
        assert result.worker
        assert [o.task_id for o in result.outcomes] == [t.task_id for t in tasks]
        assert all(o.ok and o.duration >= 0 for o in result.outcomes)
        summary = result.tables["summary"]
        twice = dict(
            zip(summary["task_id"].to_pylist(), summary["x_twice"].to_pylist(), strict=True)
        )
        assert twice == {t.task_id: 2 * t.params["x"] for t in tasks}
        series = result.tables["series"]
        assert series.num_rows == SERIES_ROWS * len(tasks)
        assert sorted(series["task_id"].to_pylist()) == sorted(
            t.task_id for t in tasks for _ in range(SERIES_ROWS)
        )

    def test_a_model_exception_fails_its_task_not_the_chunk(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        tasks = contract_store.tasks("boom", _xs([0, BAD_X, 1]))
        result = _result(_run(backend, chunk_spec(start_bundle(backend, contract_store), tasks)))
        assert [o.ok for o in result.outcomes] == [True, False, True]
        failed = result.outcomes[1]
        assert (failed.error_type, failed.message) == ("ValueError", f"x must not be {BAD_X}")
        assert failed.traceback is not None and "contract_model.py" in failed.traceback

    def test_chunks_keep_the_snapshot_they_were_built_with(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        first = start_bundle(backend, contract_store)
        second = start_bundle(backend, contract_store, contract_store.variant_ref)
        assert first != second
        tickets = {
            backend.submit_chunk(
                chunk_spec(first, contract_store.tasks("rows", _xs([1]))), task_timeout=None
            ): "first",
            backend.submit_chunk(
                chunk_spec(
                    second,
                    contract_store.tasks("rows", _xs([1]), bundle_ref=contract_store.variant_ref),
                ),
                task_timeout=None,
            ): "second",
        }
        events = collect_events(backend, tickets)
        for ticket, which in tickets.items():
            columns = _result(events[ticket]).tables["summary"].column_names
            assert ("variant" in columns) == (which == "second"), which

    def test_model_output_reaches_the_log(
        self, backend: ChunkBackend, contract_store: ContractStore, tmp_path: Path
    ) -> None:
        log = tmp_path / "logs" / "job.log"
        tasks = contract_store.tasks("chatty", _xs(range(3)))
        _result(_run(backend, chunk_spec(start_bundle(backend, contract_store), tasks, log)))
        text = log.read_text()
        for x in range(3):
            assert f"contract-chatty x={x}" in text

    def test_close_is_prompt_and_idempotent_and_start_brings_it_back(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        bundle_dir = start_bundle(backend, contract_store)
        slow = contract_store.tasks("sleepy", [{"x": 0, "t": 60}])
        backend.submit_chunk(chunk_spec(bundle_dir, slow), task_timeout=None)
        began = time.monotonic()
        backend.close(kill=True)
        assert time.monotonic() - began < 30
        backend.close()
        bundle_dir = start_bundle(backend, contract_store)
        # every worker is free again: nothing of the killed chunk still runs (it sleeps 60 s)
        tickets = [
            backend.submit_chunk(
                chunk_spec(bundle_dir, contract_store.tasks("rows", _xs([i]))), task_timeout=None
            )
            for i in range(backend.free_slots())
        ]
        assert len(tickets) == backend.capabilities.chunks_per_worker * backend.workers
        events = collect_events(backend, tickets, within=30)
        for i, ticket in enumerate(tickets):
            assert _result(events[ticket]).tables["summary"]["x_twice"].to_pylist() == [2 * i]
        backend.close()
        backend.close()

    # -- the task-level port --

    def test_is_a_simulation_service(self, backend: ChunkBackend) -> None:
        assert isinstance(backend, SimulationService)
        assert isinstance(TaskPort(backend, store="unused"), SimulationService)

    def test_gather_returns_one_result_per_task_in_order(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        tasks = contract_store.tasks("rows", _xs([0, 1, 2, 4, 5, 1, 2]))
        futures = backend.submit_batch(tasks)
        assert len(futures) == len(tasks)
        results = backend.gather(futures)
        assert [r.task_id for r in results] == [t.task_id for t in tasks]
        for task, ret in zip(tasks, results, strict=True):
            assert ret.ok, ret.error
            assert set(ret.outputs) == {"summary", "series"}
            series = read_output(ret, "series")
            assert series["task_id"].to_pylist() == [task.task_id] * SERIES_ROWS
            x = task.params["x"]
            assert isinstance(x, int)
            assert series["value"].to_pylist() == [x * 10 + s for s in range(SERIES_ROWS)]
            summary = read_output(ret, "summary").to_pylist()
            assert summary == [
                {
                    "task_id": task.task_id,
                    "param_id": task.param_id,
                    "replicate": 0,
                    "seed": task.seed,
                    "x": x,
                    "x_twice": 2 * x,
                    "seed_mod": task.seed % 1000,
                }
            ]

    def test_submit_one_task(self, backend: ChunkBackend, contract_store: ContractStore) -> None:
        (task,) = contract_store.tasks("rows", _xs([7]))
        future = backend.submit(task)
        (ret,) = backend.gather([future])
        assert future.done()
        assert ret.task_id == task.task_id
        assert read_output(ret, "summary")["x_twice"].to_pylist() == [14]

    def test_an_empty_batch(self, backend: ChunkBackend) -> None:
        assert backend.submit_batch([]) == []
        assert backend.gather([]) == []

    def test_a_model_exception_is_an_error_result(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        tasks = contract_store.tasks("boom", _xs([0, BAD_X, 1]))
        results = backend.gather(backend.submit_batch(tasks))
        assert [r.ok for r in results] == [True, False, True]
        error = results[1].error
        assert error is not None
        assert (error.error_type, error.message) == ("ValueError", f"x must not be {BAD_X}")
        assert error.traceback is not None and "contract_model.py" in error.traceback
        assert not error.retryable
        assert results[1].outputs == {}

    def test_each_task_gets_its_own_rows_even_none(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        tasks = contract_store.tasks("sparse", _xs([2, 0, 3]), outputs=["series"])
        results = backend.gather(backend.submit_batch(tasks))
        for task, ret, rows in zip(tasks, results, [2, 0, 3], strict=True):
            assert ret.ok, ret.error
            series = read_output(ret, "series")
            assert series["step"].to_pylist() == list(range(rows))
            assert set(series["task_id"].to_pylist()) <= {task.task_id}

    def test_a_large_batch(self, backend: ChunkBackend, contract_store: ContractStore) -> None:
        tasks = contract_store.tasks("rows", _xs(range(600)))
        results = backend.gather(backend.submit_batch(tasks))
        assert [r.task_id for r in results] == [t.task_id for t in tasks]
        for task, ret in zip(tasks, results, strict=True):
            summary = read_output(ret, "summary")
            assert summary["task_id"].to_pylist() == [task.task_id]
            assert summary["x"].to_pylist() == [task.params["x"]]

    def test_a_batch_mixing_scenarios_configs_and_outputs_runs_each_task_as_itself(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        kinds: list[dict[str, Any]] = [
            {"scenario": "baseline"},
            {"scenario": "doubled"},
            {"scenario": "doubled", "config": {"mode": "fast"}},
            {"scenario": "baseline", "config": {"mode": "slow"}, "outputs": ["summary"]},
        ]
        groups = [contract_store.tasks("tagged", _xs(range(12)), **kind) for kind in kinds]
        tasks = [task for row in zip(*groups, strict=True) for task in row]  # interleaved
        results = backend.gather(backend.submit_batch(tasks))
        assert [r.task_id for r in results] == [t.task_id for t in tasks]
        for task, ret in zip(tasks, results, strict=True):
            assert ret.ok, ret.error
            row = read_output(ret, "summary").to_pylist()
            mode = (task.config or {}).get("mode", "")
            scenario = task.entrypoint.rsplit("/", 1)[1]
            assert row == [
                {
                    "task_id": task.task_id,
                    "param_id": task.param_id,
                    "replicate": 0,
                    "seed": task.seed,
                    "x": task.params["x"],
                    "scenario_name": scenario,
                    "mode": mode,
                }
            ]

    def test_a_batch_mixing_bundles_runs_each_task_on_its_own_code(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        original = contract_store.tasks("rows", _xs(range(8)))
        variant = contract_store.tasks("rows", _xs(range(8)), bundle_ref=contract_store.variant_ref)
        mixed = [task for pair in zip(original, variant, strict=True) for task in pair]
        first = backend.submit_batch(mixed[:4])
        rest = backend.submit_batch(mixed[4:])
        results = backend.gather(first + rest)
        assert [r.task_id for r in results] == [t.task_id for t in mixed]
        for task, ret in zip(mixed, results, strict=True):
            assert ret.ok, ret.error
            columns = read_output(ret, "summary").column_names
            assert ("variant" in columns) == (task.bundle_ref == contract_store.variant_ref)

    def test_a_missing_snapshot_is_a_bundle_error_and_queues_nothing(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        unknown = "sha256:" + "0" * 64
        tasks = contract_store.tasks("rows", _xs([1])) + contract_store.tasks(
            "rows", _xs([2]), bundle_ref=unknown
        )
        port = TaskPort(backend, store=contract_store.root)
        with pytest.raises(BundleError, match="is not stored"):
            port.submit_batch(tasks)
        (ret,) = port.gather(port.submit_batch(tasks[:1]))
        assert ret.ok, ret.error

    def test_batches_interleave(self, backend: ChunkBackend, contract_store: ContractStore) -> None:
        first = contract_store.tasks("rows", _xs([0, 1, 2]))
        second = contract_store.tasks("rows", _xs([10, 11]))
        f1 = backend.submit_batch(first)
        f2 = backend.submit_batch(second)
        r2 = backend.gather(f2)
        r1 = backend.gather(f1)
        assert [r.task_id for r in r1] == [t.task_id for t in first]
        assert [r.task_id for r in r2] == [t.task_id for t in second]
        assert all(r.ok for r in r1 + r2)

    def test_the_same_task_gives_the_same_bytes_as_in_process(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        tasks = contract_store.tasks("rows", _xs([1, 2, 1, 2]))
        here = backend.gather(backend.submit_batch(tasks))
        reference = InProcessSimulationService(store=contract_store.root)
        there = reference.gather(reference.submit_batch(tasks))
        reference.close()
        again = backend.gather(backend.submit_batch(tasks[::-1]))[::-1]
        for a, b, c in zip(here, there, again, strict=True):
            assert a.outputs  # not vacuous
            assert a.outputs == b.outputs == c.outputs

    def test_close_gives_unfinished_tasks_a_cancelled_result(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        tasks = contract_store.tasks("rows", _xs(range(60)))
        futures = backend.submit_batch(tasks)
        backend.close(kill=True)
        assert all(f.done() for f in futures)
        results = [f.result() for f in futures]
        cancelled = [r for r in results if not r.ok]
        assert cancelled, "every task finished before close"
        for ret in cancelled:
            assert ret.error is not None
            assert (ret.error.error_type, ret.error.retryable) == ("Cancelled", True)
        assert all(r.ok for r in results if r not in cancelled)


class CrashTests(_Suite):
    """For backends that isolate crashes: a dying task ends its chunk, never the caller."""

    def test_os_exit_is_a_worker_death_at_the_task_s_position(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        bundle_dir = start_bundle(backend, contract_store)
        tasks = contract_store.tasks("die", _xs([0, 1, BAD_X, 4]))
        event = _run(backend, chunk_spec(bundle_dir, tasks))
        assert isinstance(event, WorkerDied), event
        assert (event.position, event.exitcode) == (2, DIE_EXIT)
        # the worker was replaced: the next chunk runs
        result = _result(_run(backend, chunk_spec(bundle_dir, tasks[:2])))
        assert [o.ok for o in result.outcomes] == [True, True]

    def test_a_death_before_any_task_has_no_position(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        bundle_dir = start_bundle(backend, contract_store)
        tasks = contract_store.tasks("run", _xs([0, 1]), module="crash_at_import")
        event = _run(backend, chunk_spec(bundle_dir, tasks))
        assert isinstance(event, WorkerDied), event
        assert (event.position, event.exitcode) == (None, IMPORT_EXIT)

    def test_port_retries_the_dying_task_alone_and_spares_the_others(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        tasks = contract_store.tasks("die", _xs([0, BAD_X, 1, 2, 4]))
        port = TaskPort(backend, store=contract_store.root, retries=1)
        results = port.gather(port.submit_batch(tasks))
        assert [r.task_id for r in results] == [t.task_id for t in tasks]
        assert [r.ok for r in results] == [True, False, True, True, True]
        error = results[1].error
        assert error is not None
        assert (error.error_type, error.retryable) == ("WorkerDied", True)
        assert f"exit code {DIE_EXIT}" in error.message and "2 times" in error.message
        for ret in results[:1] + results[2:]:
            assert read_output(ret, "summary").num_rows == 1

    def test_port_charges_every_task_of_a_death_without_position(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        start_bundle(backend, contract_store)  # a cluster's size is known once it is started
        # enough tasks for chunks of four (the port's first chunks, on any number of workers)
        count = 8 * backend.workers
        tasks = contract_store.tasks("run", _xs(range(count)), module="crash_at_import")
        port = TaskPort(backend, store=contract_store.root, retries=0)
        futures = port.submit_batch(tasks)
        port.gather(futures[:1])
        # the death that ended the first task's chunk charged every task of that chunk
        assert all(f.done() for f in futures[:4])
        results = port.gather(futures)
        for ret in results:
            assert ret.error is not None
            assert ret.error.error_type == "WorkerDied"
            assert f"exit code {IMPORT_EXIT}" in ret.error.message
            assert "1 time" in ret.error.message


class TimeoutTests(_Suite):
    """For backends that enforce timeouts: the task past its limit is killed and named."""

    def test_a_task_past_its_limit_times_out_at_its_position(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        bundle_dir = start_bundle(backend, contract_store)
        tasks = contract_store.tasks(
            "sleepy", [{"x": x, "t": t} for x, t in enumerate([0, 0, 60, 0])]
        )
        began = time.monotonic()
        event = _run(backend, chunk_spec(bundle_dir, tasks), task_timeout=1.0)
        assert time.monotonic() - began < 30
        assert isinstance(event, TaskTimedOut), event
        assert event.position == 2
        result = _result(_run(backend, chunk_spec(bundle_dir, tasks[:2]), task_timeout=5.0))
        assert [o.ok for o in result.outcomes] == [True, True]

    def test_the_limit_applies_to_each_task_not_the_chunk(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        bundle_dir = start_bundle(backend, contract_store)
        tasks = contract_store.tasks("sleepy", [{"x": x, "t": 0.5} for x in range(4)])
        result = _result(_run(backend, chunk_spec(bundle_dir, tasks), task_timeout=1.5))
        assert [o.ok for o in result.outcomes] == [True] * 4

    def test_port_reports_a_timed_out_task_and_runs_the_others(
        self, backend: ChunkBackend, contract_store: ContractStore
    ) -> None:
        params = [{"x": x, "t": t} for x, t in enumerate([0, 60, 0, 0])]
        tasks = contract_store.tasks("sleepy", params)
        port = TaskPort(backend, store=contract_store.root, task_timeout=1.0)
        results = port.gather(port.submit_batch(tasks))
        assert [r.ok for r in results] == [True, False, True, True]
        error = results[1].error
        assert error is not None
        assert (error.error_type, error.retryable) == ("TaskTimeout", False)
        assert "1 s" in error.message


class EnvironmentTests(_Suite):
    """For backends that run bundle environments: a bundle's tasks import its own pins."""

    @pytest.fixture
    def environments(self, contract_store: ContractStore) -> dict[str, tuple[str, Environment]]:
        """The bundle ref and built environment of each ``ENV_VERSIONS`` pin."""
        found = {}
        for version, ref in write_environment_bundles(contract_store).items():
            environment = environment_of(contract_store, ref)
            assert environment.packages["packaging"] == version
            found[version] = (ref, environment)
        return found

    def test_switching_environments_keeps_each_one_warm(
        self,
        backend: ChunkBackend,
        contract_store: ContractStore,
        environments: dict[str, tuple[str, Environment]],
    ) -> None:
        bundle_dirs = {}
        for version, (ref, environment) in environments.items():
            backend.use_environment(environment)
            bundle_dirs[version] = start_bundle(backend, contract_store, ref)
        pids: dict[str, set[int]] = {version: set() for version in environments}
        rounds = 2 * backend.workers + 1  # more rounds than processes a warm pool would use
        for _ in range(rounds):
            for version, (ref, environment) in environments.items():
                backend.use_environment(environment)
                tasks = contract_store.tasks(
                    "version", _xs([1, 2]), bundle_ref=ref, module="env_model"
                )
                summary = _result(_run(backend, chunk_spec(bundle_dirs[version], tasks))).tables[
                    "summary"
                ]
                assert summary["packaging"].to_pylist() == [version, version]
                pids[version].update(summary["pid"].to_pylist())
        first, second = (pids[version] for version in ENV_VERSIONS)
        assert not first & second, "one process ran tasks of two environments"
        for version, seen in pids.items():
            assert len(seen) <= backend.workers, (
                f"{version}: {len(seen)} processes in {rounds} rounds: the switches re-imported"
            )
        last = ENV_VERSIONS[-1]
        recorded = backend.provenance()["environment"]
        assert recorded["packages"]["packaging"] == last
        assert recorded["key"] == environments[last][1].key

    def test_a_batch_mixing_environments_runs_each_task_with_its_own_pins(
        self,
        backend: ChunkBackend,
        contract_store: ContractStore,
        environments: dict[str, tuple[str, Environment]],
    ) -> None:
        groups = [
            contract_store.tasks("version", _xs(range(6)), bundle_ref=ref, module="env_model")
            for ref, _ in environments.values()
        ]
        tasks = [task for pair in zip(*groups, strict=True) for task in pair]
        tasks += contract_store.tasks("rows", _xs([1]))  # a bundle without requirements
        results = backend.gather(backend.submit_batch(tasks))
        assert [r.task_id for r in results] == [t.task_id for t in tasks]
        version_of = {ref: version for version, (ref, _) in environments.items()}
        for task, ret in zip(tasks, results, strict=True):
            assert ret.ok, ret.error
            row = read_output(ret, "summary").to_pylist()[0]
            if task.bundle_ref in version_of:
                assert row["packaging"] == version_of[task.bundle_ref]
            else:
                assert row["x_twice"] == 2
