"""Hostile use of the reading and running commands: one ``error:`` line and exit 2, never a
traceback, and nothing silently ignored or overwritten."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.modelops.cli.conftest import Result, Workspace, run_mops, write_bundle


def _one_line_error(result: Result, needle: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.code == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0], lines[0]


def _finished(ws: Workspace) -> str:
    """Run ``toy.fast`` over x = 1, 2 with 2 replicates; returns the job id."""
    result = ws.run(ws.study("fast.json", "toy.fast", [1, 2], n_replicates=2), "--json")
    assert result.code == 0, result
    return str(json.loads(result.stdout)["job_id"])


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, str]:
    """A finished job that the tests here only read."""
    root = tmp_path_factory.mktemp("hostile")
    ws = Workspace(root, write_bundle(root / "bundle"), root / "store")
    return ws, _finished(ws)


def _shard(ws: Workspace, job_id: str, output: str) -> Path:
    (path,) = (ws.store / "jobs" / job_id / "outputs" / output).glob("part-*.parquet")
    return path


@pytest.mark.parametrize(
    ("by", "needle"),
    [
        (["x"], "'x': it is a parameter"),
        (["param_id"], "'param_id': it is a key column"),
        (["step", "step"], "'step' is given twice"),
    ],
)
def test_aggregate_by_a_column_already_grouped(
    job: tuple[Workspace, str], by: list[str], needle: str
) -> None:
    ws, job_id = job
    flags = [item for name in by for item in ("--by", name)]
    _one_line_error(ws.mops("results", job_id, "series", "--aggregate", *flags), needle)


def test_plot_against_a_parameter(job: tuple[Workspace, str], tmp_path: Path) -> None:
    ws, job_id = job
    out = tmp_path / "p.png"
    result = ws.mops("plot", job_id, "summary", "--x", "x", "--y", "total", "-o", out)
    _one_line_error(result, "cannot plot against 'x'")
    assert not out.exists()


def test_by_without_aggregate_and_output_file_without_output(job: tuple[Workspace, str]) -> None:
    ws, job_id = job
    _one_line_error(ws.mops("results", job_id, "series", "--by", "step"), "--aggregate")
    out = ws.root / "listing.csv"
    _one_line_error(ws.mops("results", job_id, "-o", out), "needs an OUTPUT")
    assert not out.exists()


def test_results_output_file_inside_the_store_is_refused(job: tuple[Workspace, str]) -> None:
    ws, job_id = job
    shard = _shard(ws, job_id, "series")
    before = shard.read_bytes()
    for args in (["series"], ["summary", "--aggregate"]):
        result = ws.mops("results", job_id, *args, "-o", shard)
        _one_line_error(result, "inside the store")
    assert shard.read_bytes() == before
    _one_line_error(ws.mops("results", job_id, "series", "-o", ws.store / "x.csv"), "inside")
    assert not (ws.store / "x.csv").exists()


@pytest.mark.parametrize("command", ["plot", "report", "migrate", "sample"])
def test_output_file_that_is_a_directory(
    job: tuple[Workspace, str], tmp_path: Path, command: str
) -> None:
    ws, job_id = job
    legacy = Path(__file__).resolve().parents[2] / "fixtures" / "legacy" / "job_one_batch.json"
    args: dict[str, list[object]] = {
        "plot": ["plot", job_id, "series", "--x", "step", "--y", "value", "--store", ws.store],
        "report": ["report", job_id, "--store", ws.store],
        "migrate": ["migrate", legacy],
        "sample": ["sample", "lhs", "toy.Toy", "--bundle", ws.bundle, "--n", 2],
    }

    _one_line_error(run_mops(*args[command], "-o", tmp_path), str(tmp_path))


def test_schema_into_a_file(tmp_path: Path) -> None:

    target = tmp_path / "study.yaml"
    target.write_text("model: x\n")
    _one_line_error(run_mops("schema", target), "is a file")
    assert target.read_text() == "model: x\n"


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_aggregate_after_a_shard_is_damaged(workspace: Workspace, damage: str) -> None:
    job_id = _finished(workspace)
    shard = _shard(workspace, job_id, "series")
    if damage == "delete":
        shard.unlink()
    else:
        shard.write_bytes(b"not parquet at all")
    for args in (["--aggregate"], ["--aggregate", "--by", "step"], []):
        result = workspace.mops("results", job_id, "series", *args)
        _one_line_error(result, "cannot read results")


def test_rerun_after_a_shard_is_deleted_recomputes_its_tasks(workspace: Workspace) -> None:
    job_id = _finished(workspace)
    _shard(workspace, job_id, "series").unlink()
    study = workspace.root / "fast.json"
    again = workspace.run(study, "--json")
    assert again.code == 0, again
    summary = json.loads(again.stdout)
    assert (summary["cached"], summary["succeeded"]) == (0, 4), summary
    listed = workspace.mops("results", job_id)
    assert "series\t12 rows" in listed.stdout, listed
    assert workspace.mops("results", job_id, "series", "--aggregate").code == 0
    third = json.loads(workspace.run(study, "--json").stdout)  # now everything is cached
    assert third["cached"] == 4, third


def test_scheduler_garbage_fails_fast_and_registers_nothing(workspace: Workspace) -> None:
    study = workspace.study("fast.json", "toy.fast", [1])
    args = ["run", study, "--bundle", workspace.bundle, "--store", workspace.store]

    started = time.monotonic()
    _one_line_error(run_mops(*args, "--scheduler", "garbage", timeout=30), "tcp://HOST:PORT")
    _one_line_error(run_mops(*args, "--scheduler", "tcp://127.0.0.1:1", timeout=30), "reach")
    assert time.monotonic() - started < 20
    if workspace.store.exists():
        listed = workspace.mops("jobs")
        assert listed.stdout.strip() == "no jobs", listed


def test_json_stdout_is_the_json_alone(workspace: Workspace) -> None:
    bundle = workspace.root / "noisy"
    shutil.copytree(workspace.bundle, bundle)
    with (bundle / "toy.py").open("a", encoding="utf-8") as module:
        module.write('\nprint("hello from the model import")\n')
    study = workspace.study("fast.json", "toy.fast", [1, 2])
    result = workspace.run(study, "--json", "--bundle", bundle)
    assert result.code == 0, result
    assert json.loads(result.stdout)["succeeded"] == 2, result.stdout
    assert "hello from the model import" in result.stderr


def test_help_keeps_every_default_text() -> None:

    text = " ".join(run_mops("run", "--help").stdout.split())
    assert "[default: CPUs]" in text, text
    assert "default .modelops]" in text, text
    assert "[default: 2" in text, text
