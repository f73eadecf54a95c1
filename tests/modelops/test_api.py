"""modelops.run and the job handle, end to end on the real local process pool and store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

import modelops
from modelops import __version__
from modelops.api import JobHandle, compile_study, job_status
from modelops.bundle import compute_digest
from modelops.engine import RunOptions
from modelops.services import InProcessSimulationService
from modelops.store import ResultStore
from modelops_contracts import (
    BundleError,
    ContractViolationError,
    ModelError,
    SimulationStudy,
    StoreError,
)
from tests.conftest import TOY_SERIES_ROWS, ToyBundle, needs_proc_fd, open_files_under

KEYS = ["task_id", "param_id", "replicate", "seed"]


def run_toy(toy: ToyBundle, study: SimulationStudy, **kwargs: Any) -> JobHandle:
    options = {k: kwargs.pop(k) for k in ("retries", "task_timeout", "use_cache") if k in kwargs}
    return modelops.run(
        study,
        bundle=toy.path,
        store=toy.store,
        workers=2,
        options=RunOptions(**options) if options else None,
        **kwargs,
    )


def shard_files(store: Path) -> list[Path]:
    return sorted(store.glob("jobs/*/outputs/*/part-*.parquet"))


def rows_per_task(frame: pl.DataFrame) -> dict[str, int]:
    counts = frame.group_by("task_id").len()
    return dict(zip(counts["task_id"].to_list(), counts["len"].to_list(), strict=True))


def expected_keys(study: SimulationStudy, toy: ToyBundle) -> pl.DataFrame:
    """One row per task: the ids, replicate, seed and x the job says it has."""
    job = compile_study(study, toy.path, store=toy.store)
    return pl.DataFrame(
        [
            {
                "task_id": r.task_id,
                "param_id": r.param_id,
                "replicate": r.replicate,
                "seed": r.seed,
                "x": r.params["x"],
            }
            for r in job.task_rows()
        ],
        schema={
            "task_id": pl.String,
            "param_id": pl.String,
            "replicate": pl.Int64,
            "seed": pl.UInt64,
            "x": pl.Int64,
        },
    ).sort("task_id")


# -- a study runs ----------------------------------------------------------------------------


def test_study_runs_every_task_with_keys_and_parameters(toy_bundle: ToyBundle) -> None:
    study = toy_bundle.study("ok", xs=range(4), replicates=2)
    handle = run_toy(toy_bundle, study)

    summary = handle.summary
    assert summary is not None
    assert (summary.state, summary.total, summary.succeeded) == ("completed", 8, 8)
    assert (summary.failed, summary.timed_out, summary.cached) == (0, 0, 0)
    assert handle.status()["counts"]["done"] == 8
    assert handle.outputs() == {"series": 8 * TOY_SERIES_ROWS, "summary": 8}

    series = handle.results("series")
    assert isinstance(series, pl.DataFrame)
    assert series.columns[:5] == [*KEYS, "x"]
    assert series.height == 8 * TOY_SERIES_ROWS
    assert set(rows_per_task(series).values()) == {TOY_SERIES_ROWS}

    summary_rows = handle.results("summary").sort("task_id")
    expected = expected_keys(study, toy_bundle)
    assert summary_rows.select([*KEYS, "x"]).equals(expected)
    # the model saw each task's own parameters and seed
    assert summary_rows["x_twice"].to_list() == [2 * x for x in expected["x"]]
    assert summary_rows["seed_mod"].to_list() == [s % 1000 for s in expected["seed"]]
    assert sorted(summary_rows["replicate"].unique().to_list()) == [0, 1]

    frame = handle.results("summary").to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 8
    assert list(frame.columns[:5]) == [*KEYS, "x"]


def test_rerun_is_all_cached_and_writes_nothing(toy_bundle: ToyBundle) -> None:
    study = toy_bundle.study("ok", xs=range(3), replicates=2)
    first = run_toy(toy_bundle, study)
    shards = shard_files(toy_bundle.store)
    before = {p: p.stat().st_mtime_ns for p in shards}
    rows = first.outputs()

    again = run_toy(toy_bundle, study)

    assert again.job_id == first.job_id
    assert again.summary is not None
    assert again.summary.cached == again.summary.total == 6
    assert again.summary.state == "completed"
    assert again.status()["counts"]["done"] == 6  # a task done in this job stays done
    assert {p: p.stat().st_mtime_ns for p in shard_files(toy_bundle.store)} == before
    assert again.outputs() == rows
    assert rows_per_task(again.results("series")) == rows_per_task(first.results("series"))


def test_cross_job_cache_reuses_shared_parameter_sets(toy_bundle: ToyBundle) -> None:
    first = run_toy(toy_bundle, toy_bundle.study("ok", xs=[0, 1, 2, 3]))
    second_study = toy_bundle.study("ok", xs=[2, 3, 4])
    second = run_toy(toy_bundle, second_study)

    assert second.job_id != first.job_id
    assert second.summary is not None
    assert second.summary.cached == 4  # x = 2 and 3, two replicates each
    assert second.summary.succeeded == 6
    counts = second.status()["counts"]
    assert (counts["cached"], counts["done"]) == (4, 2)

    summary = second.results("summary")
    assert summary.height == 6
    assert rows_per_task(summary) == dict.fromkeys(
        expected_keys(second_study, toy_bundle)["task_id"], 1
    )
    assert sorted(summary["x"].to_list()) == [2, 2, 3, 3, 4, 4]
    series = second.results("series")
    assert set(rows_per_task(series).values()) == {TOY_SERIES_ROWS}
    # cached rows are the very rows the first job produced
    shared = first.results("series").filter(pl.col("x").is_in([2, 3])).sort("task_id", "step")
    assert series.filter(pl.col("x").is_in([2, 3])).sort("task_id", "step").equals(shared)


def test_no_cache_reruns_everything_and_keeps_rows_once(toy_bundle: ToyBundle) -> None:
    study = toy_bundle.study("ok", xs=range(3))
    first = run_toy(toy_bundle, study)
    before = shard_files(toy_bundle.store)

    again = run_toy(toy_bundle, study, use_cache=False)

    assert again.summary is not None
    assert (again.summary.cached, again.summary.succeeded) == (0, 6)
    assert len(shard_files(toy_bundle.store)) > len(before)  # it really ran again
    series = again.results("series")
    assert series.height == 6 * TOY_SERIES_ROWS
    assert set(rows_per_task(series).values()) == {TOY_SERIES_ROWS}
    assert series.sort("task_id", "step").equals(first.results("series").sort("task_id", "step"))
    assert again.results("summary")["task_id"].n_unique() == 6


def test_default_store_inside_the_bundle_keeps_the_job_id(
    toy_bundle: ToyBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELOPS_STORE", raising=False)
    monkeypatch.chdir(toy_bundle.path)
    study = toy_bundle.study("ok", xs=[1, 2], replicates=1)

    first = modelops.run(study, workers=2)  # bundle ".", store "./.modelops"
    again = modelops.run(study, workers=2)  # the store's new files are not model code

    assert (toy_bundle.path / ".modelops" / "ledger.sqlite").is_file()
    assert again.job_id == first.job_id
    assert again.summary is not None
    assert again.summary.cached == 2


def test_model_subclass_scenario_and_int_params(toy_bundle: ToyBundle) -> None:
    study = toy_bundle.study("Toy", xs=[1, 5], replicates=1, scenario="doubled")
    handle = run_toy(toy_bundle, study)
    summary = handle.results("summary").sort("x")
    assert summary["x_kind"].to_list() == ["int", "int"]
    assert summary["scaled"].to_list() == [2.0, 10.0]  # the scenario's patch was applied


def test_handle_from_a_run_in_another_thread_is_usable(toy_bundle: ToyBundle) -> None:
    handles: list[JobHandle] = []
    thread = threading.Thread(
        target=lambda: handles.append(run_toy(toy_bundle, toy_bundle.study("ok", xs=[1])))
    )
    thread.start()
    thread.join(60)
    (handle,) = handles
    assert handle.status()["state"] == "completed"
    assert handle.results("summary").height == 2


# -- provenance ------------------------------------------------------------------------------


def test_status_records_provenance(toy_bundle: ToyBundle) -> None:
    handle = run_toy(toy_bundle, toy_bundle.study("ok", xs=[1], replicates=1))
    status = job_status(handle.store, handle.job_id)

    assert status["state"] == "completed"
    assert status["bundle_ref"] == compute_digest(toy_bundle.path)
    assert status["bundle_digest"] == status["bundle_ref"].removeprefix("sha256:")
    provenance = status["provenance"]
    assert provenance["python"] == ".".join(map(str, sys.version_info[:3]))
    assert provenance["modelops"] == __version__
    assert provenance["host"] == socket.gethostname()
    assert "numpy" in provenance["packages"]  # the toy model imports numpy
    import numpy

    assert provenance["packages"]["numpy"] == numpy.__version__
    started = datetime.fromisoformat(status["started_at"])
    finished = datetime.fromisoformat(status["finished_at"])
    assert started <= finished
    json.dumps(status)  # JSON-compatible, as `mops status --json` needs


def test_status_of_unknown_job_is_a_store_error(toy_bundle: ToyBundle) -> None:
    handle = run_toy(toy_bundle, toy_bundle.study("ok", xs=[1], replicates=1))
    with pytest.raises(StoreError, match="no job"):
        job_status(handle.store, "job-nope")
    with pytest.raises(StoreError, match="no output 'nope'"):
        handle.results("nope")


# -- what the model prints -------------------------------------------------------------------


def test_model_output_goes_to_the_job_log(
    toy_bundle: ToyBundle, capfd: pytest.CaptureFixture[str]
) -> None:
    handle = run_toy(toy_bundle, toy_bundle.study("chatty", xs=[1, 3], replicates=1))

    out, err = capfd.readouterr()
    assert "toy-stdout" not in out + err
    assert "toy-stderr" not in out + err
    log = handle.store.log_path(handle.job_id).read_text()
    assert "toy-stdout x=1" in log
    assert "toy-stderr x=1" in log
    assert "toy-stderr x=3" in log
    assert "toy-fd2 x=1" in log  # written to file descriptor 2 directly, below Python
    assert "toy-fd2" not in out + err
    (failure,) = handle.failures()
    assert failure.error_type == "RuntimeError"
    assert failure.message == "chatty gave up"
    assert failure.stderr_tail is not None
    assert "toy-stderr x=3" in failure.stderr_tail
    assert "toy-stdout" not in failure.stderr_tail


RUN_SCRIPT = textwrap.dedent(
    """
    import sys

    import modelops

    from tests.conftest import ToyBundle

    if __name__ == "__main__":
        bundle, store, out = sys.argv[1:4]
        toy = ToyBundle(bundle, store)
        for model in ("chatty", "ok"):
            study = toy.study(model, xs=[1, 2])
            handle = modelops.run(study, bundle=bundle, store=store, workers=2)
        handle.results("series").write_parquet(out)
    """
)


def test_fresh_process_gives_identical_rows_and_prints_nothing(
    toy_bundle: ToyBundle, tmp_path: Path
) -> None:
    here = run_toy(toy_bundle, toy_bundle.study("ok", xs=[1, 2]))
    script = tmp_path / "run_study.py"
    script.write_text(RUN_SCRIPT)
    out = tmp_path / "series.parquet"
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "MODELOPS_STORE"}
    proc = subprocess.run(
        [sys.executable, str(script), str(toy_bundle.path), str(tmp_path / "other"), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=repo,
        env={**env, "PYTHONPATH": str(repo)},
    )
    assert proc.returncode == 0, proc.stderr
    # what a model prints, also straight to file descriptor 2, stays in the job log
    assert "toy-" not in proc.stdout + proc.stderr
    there = pl.read_parquet(out).sort("task_id", "step")
    assert there.height == 4 * TOY_SERIES_ROWS
    assert there.equals(here.results("series").sort("task_id", "step"))


# -- bad input -------------------------------------------------------------------------------


def assert_no_store(toy: ToyBundle) -> None:
    assert not toy.store.exists()


def test_unknown_scenario_is_a_model_error(toy_bundle: ToyBundle) -> None:
    with pytest.raises(ModelError, match="nope"):
        run_toy(toy_bundle, toy_bundle.study("Toy", scenario="nope"))
    with pytest.raises(ModelError, match="nope"):
        run_toy(toy_bundle, toy_bundle.study("ok", scenario="nope"))
    assert_no_store(toy_bundle)


def test_unknown_output_is_a_model_error(toy_bundle: ToyBundle) -> None:
    with pytest.raises(ModelError, match="nope"):
        run_toy(toy_bundle, toy_bundle.study("Toy", outputs=("summary", "nope")))
    assert_no_store(toy_bundle)


def test_unknown_model_and_import_error_are_model_errors(toy_bundle: ToyBundle) -> None:
    with pytest.raises(ModelError, match="modelops_toy_missing_dependency"):
        run_toy(toy_bundle, SimulationStudy(model="broken.ok", parameter_sets=[{"x": 1}]))
    with pytest.raises(ModelError, match="no_such_thing"):
        run_toy(toy_bundle, toy_bundle.study("no_such_thing"))
    assert_no_store(toy_bundle)


def test_bad_parameter_value_is_a_model_error(toy_bundle: ToyBundle) -> None:
    with pytest.raises(ModelError):
        run_toy(toy_bundle, toy_bundle.study("Toy", xs=[5000]))  # above the declared bound
    assert_no_store(toy_bundle)


def test_missing_bundle_and_study_file(toy_bundle: ToyBundle, tmp_path: Path) -> None:
    study = toy_bundle.study("ok")
    with pytest.raises(BundleError):
        modelops.run(study, bundle=tmp_path / "no-such-dir", store=toy_bundle.store, workers=2)
    with pytest.raises(ContractViolationError, match="cannot read study file"):
        modelops.run(tmp_path / "missing.yaml", bundle=toy_bundle.path, store=toy_bundle.store)
    with pytest.raises(ContractViolationError, match="retries"):
        run_toy(toy_bundle, study, retries=-1)
    with pytest.raises(ContractViolationError, match="task_timeout"):
        run_toy(toy_bundle, study, task_timeout=0)
    assert_no_store(toy_bundle)


def test_job_id_can_be_chosen(toy_bundle: ToyBundle) -> None:
    handle = run_toy(toy_bundle, toy_bundle.study("ok", xs=[1], replicates=1), job_id="my-job")
    assert handle.job_id == "my-job"
    assert handle.status()["state"] == "completed"
    with pytest.raises(ContractViolationError):
        run_toy(toy_bundle, toy_bundle.study("ok", xs=[1]), job_id="../escape")


def test_a_job_id_naming_another_study_is_refused(toy_bundle: ToyBundle) -> None:
    first = run_toy(toy_bundle, toy_bundle.study("ok", xs=[1, 2], replicates=1), job_id="named")
    before = first.status()
    with pytest.raises(StoreError, match="already names a different job"):
        run_toy(toy_bundle, toy_bundle.study("ok", xs=[3, 4, 5], replicates=1), job_id="named")
    after = first.status()
    assert (after["total"], after["counts"], after["state"]) == (
        before["total"],
        before["counts"],
        before["state"],
    )
    assert sorted(first.results("summary")["x"].to_list()) == [1, 2]
    # the same study under the same id is the same job: it resumes, all cached
    again = run_toy(toy_bundle, toy_bundle.study("ok", xs=[1, 2], replicates=1), job_id="named")
    assert again.summary is not None and again.summary.cached == 2


@needs_proc_fd
def test_store_held_by_another_run_is_refused(toy_bundle: ToyBundle) -> None:
    study = toy_bundle.study("ok", xs=[1], replicates=1)
    with ResultStore(toy_bundle.store) as other:
        with other.run_lock(), pytest.raises(StoreError, match="in use by another"):
            run_toy(toy_bundle, study)
        assert other.ledger.list_jobs() == []  # nothing was registered, nothing ran
        # a refused run leaves nothing open behind it
        before = open_files_under(toy_bundle.store)
        for _ in range(5):
            with other.run_lock(), pytest.raises(StoreError):
                modelops.run(
                    study,
                    bundle=toy_bundle.path,
                    store=toy_bundle.store,
                    backend=InProcessSimulationService(),
                )
        assert open_files_under(toy_bundle.store) == before
    handle = run_toy(toy_bundle, study)  # the lock is free again
    assert handle.summary is not None
    assert handle.summary.state == "completed"


def test_store_path_that_is_a_file_is_a_store_error(toy_bundle: ToyBundle, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        modelops.run(toy_bundle.study("ok"), bundle=toy_bundle.path, store=not_a_dir, workers=2)


def test_results_parquet_round_trip(toy_bundle: ToyBundle, tmp_path: Path) -> None:
    handle = run_toy(toy_bundle, toy_bundle.study("ok", xs=[1], replicates=1))
    dest = tmp_path / "summary.parquet"
    assert handle.store.export_results(handle.job_id, "summary", dest) == 1
    assert pq.read_table(dest).column_names[:5] == [*KEYS, "x"]


def test_a_script_without_main_guard_can_run_a_study(toy_bundle: ToyBundle, tmp_path: Path) -> None:
    # spawn/forkserver workers would normally re-run the calling script; ours must not
    study_file = tmp_path / "study.json"
    study_file.write_text(toy_bundle.study("ok", xs=range(3), replicates=2).to_json())
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import modelops\n"
        f"h = modelops.run({str(study_file)!r}, bundle={str(toy_bundle.path)!r}, "
        f"store={str(toy_bundle.store)!r}, workers=2)\n"
        "print('RESULT', h.summary.state, h.summary.succeeded)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("RESULT") == 1  # printed by the script once, never by a worker
    assert "RESULT completed 6" in out.stdout
