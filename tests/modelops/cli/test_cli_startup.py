"""Start-up cost of the command line and of a run's processes.

- ``mops --help``, ``status`` and ``jobs`` load no data stack: each case runs the CLI in a fresh
  interpreter (``run_app`` with the command's arguments, as the ``mops`` script does), then lists
  which of the heavy packages ended up in ``sys.modules``.
- The workers of a model that does not use pandas never import it; one that does gets pandas
  objects converted as usual.
- The fork server ``mops run`` starts first thing is gone when ``mops run`` exits, also when the
  study file is bad.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.modelops.cli.conftest import FinishedJob, Workspace, mops_executable, wait_for

MODELS = textwrap.dedent(
    """
    import sys

    import pyarrow as pa


    def arrow_only(params, seed):
        pa.array([1.0, params["x"]])  # what the runtime does with a task's rows, done early
        return {"probe": {"pandas": "pandas" in sys.modules}}


    def frame(params, seed):
        import pandas as pd

        values = pd.array([params["x"], None], dtype="Int64")
        return {"frame": pd.DataFrame({"v": values, "c": pd.Categorical(["a", "b"])})}
    """
)

HEAVY = ("pydantic", "pyarrow", "polars", "numpy", "pandas")

_PROBE = """
import json, sys
from modelops.cli import run_app
code = run_app(json.loads(sys.argv[1]))
loaded = sorted({name.partition(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))
print("\\n" + json.dumps({"code": code, "loaded": loaded}))
"""


def _loaded_by(args: list[str], before: str = "") -> tuple[int, list[str]]:
    """Exit code of ``mops ARGS`` run in a fresh interpreter (after running the code
    ``before``) and the heavy packages loaded by then."""
    proc = subprocess.run(
        [sys.executable, "-c", before + _PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    return report["code"], report["loaded"]


def test_help_loads_no_heavy_package() -> None:
    code, loaded = _loaded_by(["--help"])
    assert code == 0
    assert loaded == []


@pytest.mark.parametrize(
    "command",
    [["status"], ["status", "JOB", "--json"], ["jobs"]],
)
def test_status_and_jobs_load_no_heavy_package(failed_job: FinishedJob, command: list[str]) -> None:
    args = [failed_job.job_id if arg == "JOB" else arg for arg in command]
    code, loaded = _loaded_by([*args, "--store", str(failed_job.workspace.store)])
    assert code == 0
    assert loaded == []


def test_the_probe_sees_a_heavy_import() -> None:
    """The check itself can fail: a package loaded on the way is reported."""
    assert _loaded_by(["--help"], before="import pyarrow\n") == (0, ["numpy", "pyarrow"])


def _results(ws: Workspace, study: Path, output: str) -> list[dict[str, str]]:
    """Run ``study`` (every task must succeed) and read ``output`` back as CSV rows."""
    result = ws.run(study, "--json")
    assert result.code == 0, result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    path = ws.root / f"{output}.csv"
    read = ws.mops("results", job_id, output, "-o", path)
    assert read.code == 0, read.stderr
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_workers_of_a_model_without_pandas_never_import_it(workspace: Workspace) -> None:
    (workspace.bundle / "probes.py").write_text(MODELS)
    study = workspace.study("probe.json", "probes.arrow_only", list(range(6)))
    rows = _results(workspace, study, "probe")
    assert len(rows) == 6
    assert {row["pandas"] for row in rows} == {"false"}


def test_pandas_outputs_of_a_model_convert_as_usual(workspace: Workspace) -> None:
    (workspace.bundle / "probes.py").write_text(MODELS)
    study = workspace.study("frame.json", "probes.frame", [1, 2])
    rows = _results(workspace, study, "frame")
    assert sorted((row["x"], row["c"], row["v"]) for row in rows) == [
        ("1", "a", "1"),
        ("1", "b", ""),  # <NA> in a nullable Int64 column: a null
        ("2", "a", "2"),
        ("2", "b", ""),
    ]


def _fork_servers_of(session: int) -> list[int]:
    """Live fork server processes in ``session`` (a ``mops`` started as a session leader)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session and fields[0] != "Z" and b"forkserver" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("study_text", ["good", '{"model": 3}'])
def test_no_fork_server_outlives_mops_run(workspace: Workspace, study_text: str) -> None:
    study = workspace.study("study.json", "toy.fast", [1, 2])
    if study_text != "good":
        study.write_text(study_text)
    proc = subprocess.Popen(
        [str(mops_executable()), *map(str, workspace.run_args(study))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    code = proc.wait(timeout=60)  # the exit, not the end of output some other process holds
    assert code == (0 if study_text == "good" else 2)
    assert _fork_servers_of(proc.pid) == []


def test_ctrl_c_while_the_fork_server_boots_is_one_line(workspace: Workspace) -> None:
    """A Ctrl-C reaches the whole foreground group, the booting fork server too: it stays quiet."""
    study = workspace.study("study.json", "toy.fast", [1, 2])
    proc = subprocess.Popen(
        [str(mops_executable()), *map(str, workspace.run_args(study))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: bool(_fork_servers_of(proc.pid)), timeout=30, what="the fork server")
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the driver's whole group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err == "error: interrupted\n"
