"""The driver: per-task failures, dead and stuck workers, fail-fast, chunking, window, cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import modelops
from modelops.api import JobHandle, compile_study
from modelops.bundle import BundleStore
from modelops.engine import Progress, RunOptions, RunSummary, execute
from modelops.runtime import ChunkSpec
from modelops.services import ChunkBackend, ChunkEvent, InProcessSimulationService
from modelops.services.local import LocalSimulationService
from modelops.store import ResultStore
from modelops_contracts import SimJob, SimulationStudy
from tests.conftest import TOY_BAD_X, ToyBundle

# x = TOY_BAD_X sits in the middle of the first chunk, so its chunk-mates ran before and after it
XS = [0, TOY_BAD_X, 1, 2, 4, 5]


_OPTION_NAMES = ("retries", "task_timeout", "fail_fast", "use_cache")


def run_toy(toy: ToyBundle, study: SimulationStudy, **kwargs: Any) -> JobHandle:
    kwargs.setdefault("workers", 2)
    options = {name: kwargs.pop(name) for name in _OPTION_NAMES if name in kwargs}
    return modelops.run(
        study, bundle=toy.path, store=toy.store, options=RunOptions(**options), **kwargs
    )


def statuses(handle: JobHandle) -> dict[str, int]:
    return {k: v for k, v in handle.status()["counts"].items() if v}


def run_direct(
    toy: ToyBundle,
    study: SimulationStudy,
    backend: ChunkBackend,
    options: RunOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunSummary:
    """compile + execute on ``backend``, as modelops.run does, without its default pool."""
    job = compile_study(study, toy.path, store=toy.store)
    with ResultStore(toy.store) as store:
        return execute(
            job, store, backend, bundle=toy.path, options=options, on_progress=on_progress
        )


class RecordingInProcess(InProcessSimulationService):
    """In-process backend that takes ``workers`` chunks at once and records what it was sent."""

    def __init__(self, workers: int = 2) -> None:
        super().__init__()
        self.workers = workers
        self.sizes: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def free_slots(self) -> int:
        return self.workers - len(self._queue)

    def submit_chunk(self, spec: ChunkSpec, *, task_timeout: float | None) -> int:
        assert self.free_slots() > 0, "the engine submitted to a full backend"
        self.sizes.append(len(spec.tasks))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return super().submit_chunk(spec, task_timeout=task_timeout)

    def poll(self, timeout: float) -> list[ChunkEvent]:
        events = super().poll(timeout)  # every queued chunk ends in this one poll
        self.in_flight -= len(events)
        return events


class RecordingLocal(LocalSimulationService):
    """The real process pool, counting the chunks in flight as the engine sees them."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.in_flight: set[int] = set()
        self.max_in_flight = 0
        self.sizes: list[int] = []

    def submit_chunk(self, spec: ChunkSpec, *, task_timeout: float | None) -> int:
        ticket = super().submit_chunk(spec, task_timeout=task_timeout)
        self.sizes.append(len(spec.tasks))
        self.in_flight.add(ticket)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        return ticket

    def poll(self, timeout: float) -> list[ChunkEvent]:
        events = super().poll(timeout)
        for event in events:
            self.in_flight.remove(event.ticket)
        return events


# -- failures ---------------------------------------------------------------------------------


def test_model_exception_fails_only_that_task(toy_bundle: ToyBundle) -> None:
    handle = run_toy(toy_bundle, toy_bundle.study("boom", xs=XS, replicates=1))

    assert handle.summary is not None
    assert handle.summary.state == "failed"
    assert (handle.summary.failed, handle.summary.succeeded) == (1, 5)
    assert statuses(handle) == {"done": 5, "failed": 1}
    assert handle.status()["state"] == "failed"
    (failure,) = handle.store.ledger.failures(handle.job_id)
    assert failure.status == "failed"
    assert failure.error_type == "ValueError"
    assert failure.message == f"x must not be {TOY_BAD_X}"
    assert failure.traceback is not None
    assert "toy.py" in failure.traceback
    assert "in boom" in failure.traceback
    assert "ValueError: x must not be" in failure.traceback
    assert failure.attempts == 1
    assert sorted(handle.results("summary")["x"].to_list()) == [0, 1, 2, 4, 5]


def test_dead_worker_is_retried_then_failed(toy_bundle: ToyBundle) -> None:
    handle = run_toy(toy_bundle, toy_bundle.study("die", xs=XS, replicates=1), retries=1)

    assert handle.summary is not None
    assert handle.summary.state == "failed"
    assert statuses(handle) == {"done": 5, "failed": 1}
    (failure,) = handle.failures()
    assert failure.error_type == "WorkerDied"
    assert failure.message is not None
    assert "worker process died" in failure.message
    assert "exit code 3" in failure.message
    assert failure.attempts == 2  # retries + 1
    # the chunk-mates of the dying task, before and after it, still have their rows
    assert sorted(handle.results("summary")["x"].to_list()) == [0, 1, 2, 4, 5]
    assert handle.results("series")["task_id"].n_unique() == 5


def test_segfault_is_a_worker_death(toy_bundle: ToyBundle) -> None:
    handle = run_toy(toy_bundle, toy_bundle.study("segv", xs=XS, replicates=1), retries=0)

    assert statuses(handle) == {"done": 5, "failed": 1}
    (failure,) = handle.failures()
    assert failure.error_type == "WorkerDied"
    assert "SIGSEGV" in (failure.message or "")
    assert failure.attempts == 1


def test_task_timeout_kills_and_replaces_the_worker(toy_bundle: ToyBundle) -> None:
    study = SimulationStudy(
        model="toy.sleepy",
        parameter_sets=[{"x": 0, "t": 0}, {"x": 1, "t": 60}, {"x": 2, "t": 0}, {"x": 3, "t": 0}],
        outputs=["summary"],
    )
    handle = run_toy(toy_bundle, study, workers=1, task_timeout=1.5)

    assert handle.summary is not None
    assert handle.summary.state == "failed"
    assert handle.summary.timed_out == 1
    assert statuses(handle) == {"done": 3, "timeout": 1}
    (failure,) = handle.failures()
    assert failure.status == "timeout"
    assert failure.error_type == "TaskTimeout"
    assert "1.5 s" in (failure.message or "")
    # one worker only: the stuck task's chunk-mates ran again in a fresh process
    pids = set(handle.results("summary")["pid"].to_list())
    assert failure.worker is not None
    assert len(pids) == 1
    assert not failure.worker.endswith(f":{pids.pop()}")


def test_fail_fast_stops_early(toy_bundle: ToyBundle, tmp_path: Path) -> None:
    # x = 0..3 run in the first chunk and x = 3 fails; x >= 4 wait for a gate that never opens
    extra = {"gate": str(tmp_path / "never"), "bad": TOY_BAD_X}
    study = toy_bundle.study("gated", xs=range(40), replicates=1, extra=extra)
    handle = run_toy(toy_bundle, study, fail_fast=True)

    assert handle.summary is not None
    assert handle.summary.state == "failed"
    assert statuses(handle) == {"done": 3, "failed": 1, "pending": 36}
    assert handle.status()["state"] == "failed"
    assert handle.summary.wall_seconds < 20  # the stuck tasks were killed, not waited for


def test_fail_fast_with_several_chunks_ending_together(toy_bundle: ToyBundle) -> None:
    backend = RecordingInProcess(workers=2)
    summary = run_direct(
        toy_bundle,
        toy_bundle.study("boom", xs=range(40), replicates=1),
        backend,
        RunOptions(fail_fast=True),
    )
    assert summary.state == "failed"
    assert summary.failed == 1
    assert summary.succeeded < 40 - 1


def test_job_failures_do_not_stop_the_job_without_fail_fast(toy_bundle: ToyBundle) -> None:
    summary = run_direct(
        toy_bundle, toy_bundle.study("boom", xs=range(12), replicates=2), RecordingInProcess(2)
    )
    assert (summary.state, summary.failed, summary.succeeded) == ("failed", 2, 22)


# -- chunking and the window -----------------------------------------------------------------


def test_tiny_tasks_travel_in_chunks(toy_bundle: ToyBundle) -> None:
    backend = RecordingInProcess(workers=2)
    study = toy_bundle.study("counted", xs=range(1000), replicates=2, outputs=("summary",))
    options = RunOptions(commit_seconds=60)  # one commit at the end
    summary = run_direct(toy_bundle, study, backend, options)

    assert summary.succeeded == 2000
    assert sum(backend.sizes) == 2000
    assert len(backend.sizes) < 60  # not 2,000 round trips
    assert max(backend.sizes) >= 200
    assert backend.sizes[:2] == [4, 4]  # cautious start
    assert backend.sizes[-1] < max(backend.sizes)  # smaller chunks at the tail
    assert backend.max_in_flight == 2
    # one shard for the whole batch, never a file per task
    assert len(list(toy_bundle.store.glob("jobs/*/outputs/summary/*.parquet"))) == 1


def test_consecutive_tasks_run_in_the_same_worker(toy_bundle: ToyBundle) -> None:
    study = toy_bundle.study("counted", xs=range(400), replicates=1, outputs=("summary",))
    handle = run_toy(toy_bundle, study)
    rows = handle.results("summary").sort("x")
    assert rows.height == 400
    pids, calls = rows["pid"].to_list(), rows["call"].to_list()
    # a run: consecutive tasks of the job that one process ran one right after the other
    runs = 1 + sum(
        1
        for i in range(1, len(pids))
        if not (pids[i] == pids[i - 1] and calls[i] == calls[i - 1] + 1)
    )
    assert len(set(pids)) == 2
    assert runs <= 40, runs  # at least 10 tasks per round trip on average


def test_window_never_exceeds_the_workers(toy_bundle: ToyBundle) -> None:
    backend = RecordingLocal(workers=2)
    study = toy_bundle.study("counted", xs=range(300), replicates=1, outputs=("summary",))
    summary = run_direct(toy_bundle, study, backend)

    assert summary.succeeded == 300
    assert backend.max_in_flight == 2
    assert len(backend.sizes) > 2
    assert sum(backend.sizes) == 300
    # the first chunks' round trips include starting the workers and importing the model;
    # tiny tasks must not look slow because of it (the third chunk grows, it does not shrink)
    assert backend.sizes[:2] == [4, 4]
    assert backend.sizes[2] >= 16, backend.sizes


def test_in_process_backend_runs_a_job(toy_bundle: ToyBundle) -> None:
    summary = run_direct(toy_bundle, toy_bundle.study("ok"), InProcessSimulationService())
    assert (summary.state, summary.succeeded) == ("completed", 8)


def test_progress_reports_finish_with_the_totals(toy_bundle: ToyBundle) -> None:
    seen: list[Progress] = []

    def record(progress: Progress) -> None:
        seen.append(Progress(**vars(progress)))

    study = toy_bundle.study("boom", xs=range(6), replicates=1)
    run_direct(toy_bundle, study, RecordingInProcess(2), on_progress=record)
    assert seen
    last = seen[-1]
    assert (last.total, last.succeeded, last.failed, last.finished) == (6, 5, 1, 6)


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_from_another_connection_then_resume(toy_bundle: ToyBundle, tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # tasks with x >= 4 wait for this file: the first run cannot finish
    study = toy_bundle.study("gated", xs=range(40), replicates=1, extra={"gate": str(gate)})
    job_id = compile_study(study, toy_bundle.path, store=toy_bundle.store).job_id
    first_done = threading.Event()
    result: dict[str, Any] = {}

    def on_progress(progress: Progress) -> None:
        if progress.succeeded:
            first_done.set()  # the first chunk, x = 0..3, is done; x = 4..7 are stuck

    def target() -> None:
        try:
            result["summary"] = run_toy(toy_bundle, study, on_progress=on_progress).summary
        except BaseException as err:
            result["error"] = err
        finally:
            first_done.set()

    thread = threading.Thread(target=target)
    thread.start()
    try:
        assert first_done.wait(30)
        with ResultStore(toy_bundle.store) as other:
            other.ledger.request_cancel(job_id)
        thread.join(30)
        assert not thread.is_alive()
    finally:
        gate.touch()
        thread.join(60)
    assert "error" not in result, result.get("error")

    summary: RunSummary = result["summary"]
    assert summary.state == "cancelled"
    first = JobHandle(job_id, ResultStore(toy_bundle.store))
    assert first.status()["state"] == "cancelled"
    counts = first.status()["counts"]
    assert counts == {"pending": 36, "done": 4, "cached": 0, "failed": 0, "timeout": 0}
    assert first.results("summary").height == 4

    again = run_toy(toy_bundle, study)
    assert again.job_id == first.job_id
    assert again.summary is not None
    assert again.summary.state == "completed"
    assert again.summary.cached == 4
    assert again.summary.succeeded == 40
    rows = again.results("summary")
    assert rows.height == 40
    assert rows["task_id"].n_unique() == 40


def test_a_fully_cached_job_starts_no_workers(toy_bundle: ToyBundle, tmp_path: Path) -> None:
    study = toy_bundle.study("ok", xs=[1], replicates=1)
    run_direct(toy_bundle, study, InProcessSimulationService())

    class Unstartable(InProcessSimulationService):
        def start(
            self, *, bundle_ref: str, bundle_zip: Path, cache_dir: Path, log_path: Path | None
        ) -> None:
            raise AssertionError("started workers for a fully cached job")

    summary = run_direct(toy_bundle, study, Unstartable())
    assert (summary.state, summary.cached) == ("completed", 1)


def test_ctrl_c_keeps_finished_tasks_and_leaves_the_job_resumable(toy_bundle: ToyBundle) -> None:
    # 0.6 s of work; progress is reported every 0.2 s, so Ctrl-C comes mid-run
    study = toy_bundle.study("sleepy", xs=range(30), replicates=1, extra={"t": 0.02})

    def interrupt(progress: Progress) -> None:
        if progress.succeeded:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_direct(toy_bundle, study, RecordingInProcess(2), on_progress=interrupt)
    handle = JobHandle(
        compile_study(study, toy_bundle.path, store=toy_bundle.store).job_id,
        ResultStore(toy_bundle.store),
    )
    status = handle.status()
    assert status["state"] == "interrupted"
    done = status["counts"]["done"]
    assert 0 < done < 30
    assert handle.results("summary").height == done

    summary = run_direct(toy_bundle, study, RecordingInProcess(2))
    assert (summary.state, summary.cached, summary.succeeded) == ("completed", done, 30)


def test_interrupt_before_any_task_runs(toy_bundle: ToyBundle) -> None:
    study = toy_bundle.study("ok", xs=range(4), replicates=1)

    def interrupt(progress: Progress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_direct(toy_bundle, study, RecordingInProcess(2), on_progress=interrupt)
    job_id = compile_study(study, toy_bundle.path, store=toy_bundle.store).job_id
    assert JobHandle(job_id, ResultStore(toy_bundle.store)).status()["state"] == "interrupted"


def test_job_mixing_entrypoints_is_cut_into_matching_chunks(toy_bundle: ToyBundle) -> None:
    ref = BundleStore(toy_bundle.store).put(toy_bundle.path)
    plain = list(toy_bundle.study("ok", xs=[1, 2], replicates=1).to_simjob(ref).tasks)
    declared = toy_bundle.study("Toy", xs=[1, 2], replicates=1, scenario="doubled")
    model = list(declared.to_simjob(ref).tasks)
    job = SimJob("mixed-job", [plain[0], *model, plain[1]])

    handle = modelops.run(job, bundle=toy_bundle.path, store=toy_bundle.store, workers=2)

    assert handle.summary is not None
    assert (handle.summary.state, handle.summary.succeeded) == ("completed", 4)
    summary = handle.results("summary")
    assert summary.height == 4
    by_task = {row["task_id"]: row for row in summary.iter_rows(named=True)}
    for task in model:
        assert by_task[task.task_id]["scaled"] == 2.0 * float(task.params.params["x"])
    for task in plain:
        assert by_task[task.task_id]["scaled"] is None


# -- one type per output column, whichever commit a task lands in ------------------------------

TYPES_MODULE = """
def mixed(params, seed):
    return {"out": {"v": [1] if seed % 2 == 0 else ["x"]}}


def boolint(params, seed):
    return {"out": {"v": 1 if seed % 2 == 0 else True}}


def widen(params, seed):
    return {"out": {"v": 1 if seed % 2 == 0 else 2.5}}
"""

# a chunk of all tasks; one commit of one-task chunks; a commit per task
_PACKING = {
    "one-chunk": RunOptions(commit_seconds=3600),
    "one-commit": RunOptions(max_chunk=1, commit_seconds=3600),
    "commit-per-task": RunOptions(max_chunk=1, commit_seconds=0),
}


def _parity_study(model: str) -> tuple[SimulationStudy, list[int]]:
    """A study whose first task has an even seed and whose tasks have both parities."""
    from modelops_contracts import make_param_id, replicate_seeds

    xs = [x for x in range(40) if replicate_seeds(make_param_id({"x": x}), 1)[0] % 2 == 0][:1]
    xs += [x for x in range(40) if x not in xs][:7]
    seeds = [replicate_seeds(make_param_id({"x": x}), 1)[0] for x in xs]
    assert seeds[0] % 2 == 0 and {s % 2 for s in seeds} == {0, 1}
    return SimulationStudy(model=f"typemix.{model}", parameter_sets=[{"x": x} for x in xs]), seeds


def _run_types(tmp_path: Path, model: str, options: RunOptions) -> JobHandle:
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "typemix.py").write_text(TYPES_MODULE, encoding="utf-8")
    study, _ = _parity_study(model)
    backend = InProcessSimulationService(store=tmp_path / "store")
    return modelops.run(
        study, bundle=bundle, store=tmp_path / "store", options=options, backend=backend
    )


@pytest.mark.parametrize("packing", list(_PACKING))
@pytest.mark.parametrize(("model", "late"), [("mixed", "string"), ("boolint", "bool")])
def test_tasks_of_another_output_type_fail_and_the_rest_commit(
    tmp_path: Path, packing: str, model: str, late: str
) -> None:
    _, seeds = _parity_study(model)
    even = sorted(s for s in seeds if s % 2 == 0)
    for attempt in range(2):  # the re-run starts with odd tasks: the shards fix the type
        handle = _run_types(tmp_path, model, _PACKING[packing])
        assert handle.summary is not None and handle.summary.state == "failed", attempt
        assert statuses(handle) == {"done": len(even), "failed": len(seeds) - len(even)}
        failures = handle.store.ledger.failures(handle.job_id)
        assert {f.error_type for f in failures} == {"OutputTypeError"}
        assert {f.message for f in failures} == {
            f"output 'out': column 'v' is {late} here but int64 in earlier results of the job "
            "(a column keeps one type; only null, int widths and int to float widen)"
        }
        rows = handle.store.read_results(handle.job_id, "out")
        assert sorted(rows["seed"].to_list()) == even
        assert str(rows.schema["v"]) == "Int64" and set(rows["v"].to_list()) == {1}
    shards = list((tmp_path / "store" / "jobs" / handle.job_id / "outputs" / "out").iterdir())
    # the odd tasks re-ran alone in later commits without shards; the even ones spread or not
    assert (len(shards) > 1) == (packing == "commit-per-task")


@pytest.mark.parametrize("packing", list(_PACKING))
def test_ints_then_floats_widen_to_float_across_commits(tmp_path: Path, packing: str) -> None:
    handle = _run_types(tmp_path, "widen", _PACKING[packing])
    _, seeds = _parity_study("widen")
    assert handle.summary is not None and handle.summary.state == "completed"
    rows = handle.store.read_results(handle.job_id, "out").sort("seed")
    assert str(rows.schema["v"]) == "Float64"
    assert rows["v"].to_list() == [1.0 if s % 2 == 0 else 2.5 for s in sorted(seeds)]


def test_the_local_pool_applies_the_same_rule(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "typemix.py").write_text(TYPES_MODULE, encoding="utf-8")
    study, seeds = _parity_study("mixed")
    options = RunOptions(max_chunk=1, commit_seconds=0)
    handle = modelops.run(
        study, bundle=bundle, store=tmp_path / "store", workers=1, options=options
    )
    assert statuses(handle) == {
        "done": sum(s % 2 == 0 for s in seeds),
        "failed": sum(s % 2 for s in seeds),
    }
    assert handle.store.read_results(handle.job_id, "out")["v"].to_list() == [1] * sum(
        s % 2 == 0 for s in seeds
    )


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        ([{"a": 1}, {"a": "x"}], "parameter 'a' is int in parameter_sets[0] but str in"),
        ([{"a": True}, {"a": 2}], "parameter 'a' is bool in parameter_sets[0] but int in"),
        ([{"a": 1}, {"a": 2**70}], "outside the 64-bit int range"),
    ],
)
def test_mops_run_refuses_bad_parameter_kinds_in_one_line(
    tmp_path: Path, sets: list[dict[str, Any]], needle: str
) -> None:
    from tests.modelops.cli.conftest import run_mops, write_bundle, write_study

    study = write_study(tmp_path / "study.json", "toy.fast", sets)
    bundle = write_bundle(tmp_path / "bundle")
    result = run_mops("run", study, "--bundle", bundle, "--store", tmp_path / "store")
    assert result.code == 2, result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result
    assert needle in result.stderr and "Traceback" not in result.stderr
