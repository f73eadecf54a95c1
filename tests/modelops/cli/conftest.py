"""Fixtures for the end-to-end CLI tests: a toy model bundle, study files, and ``mops`` runners.

Every test drives the real ``mops`` console script in a subprocess against a store under
``tmp_path``. The toy bundle holds small plain-function models:

- ``toy.fast``: three rows of ``series`` and one row of ``summary`` per task, instantly.
- ``toy.slow``: the same after sleeping ``SLOW_SECONDS`` (for kill, cancel and lock tests).
- ``toy.failing``: raises ``ValueError`` (after printing to stderr) when ``x == FAIL_X``, else
  sleeps ``params.get("sleep", 0)`` seconds.
- ``toy.gated``: waits while its ``gate`` file holds a number <= ``x`` (at most 60 s), so a
  test decides which tasks can finish and when the rest may go on.
- ``toy.sleepy``: sleeps ``params["sleep"]`` seconds (for ``--task-timeout``).
- ``toy.flaky``: kills its worker process the first ``deaths`` times it runs (a marker file
  counts them).
- ``toy.Toy``: a ``modelops.Model`` subclass with a declared parameter, scenario and outputs.
- ``broken.fn``: a module whose import fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SERIES_ROWS = 3
SLOW_SECONDS = 0.02
FAIL_X = 3

TOY_MODULE = textwrap.dedent(
    f'''
    """Toy models for the CLI tests."""

    from __future__ import annotations

    import os
    import sys
    import time
    from pathlib import Path

    from modelops.model import Model, Parameter, Scenario


    def _tables(params, seed):
        x = params["x"]
        return {{
            "series": {{
                "step": list(range({SERIES_ROWS})),
                "value": [x * step + seed % 7 for step in range({SERIES_ROWS})],
            }},
            "summary": {{"total": x * {SERIES_ROWS}, "seed_mod": seed % 1000}},
        }}


    def fast(params, seed):
        return _tables(params, seed)


    def slow(params, seed):
        time.sleep({SLOW_SECONDS})
        return _tables(params, seed)


    def failing(params, seed):
        if params["x"] == {FAIL_X}:
            print("toy model diagnostic: x is cursed", file=sys.stderr)
            raise ValueError("x must not be {FAIL_X}")
        time.sleep(params.get("sleep", 0))
        return _tables(params, seed)


    def _closed(gate, x):
        try:
            return x >= int(gate.read_text())
        except (OSError, ValueError):  # no gate file (or being rewritten): open
            return False


    def gated(params, seed):
        gate = Path(params["gate"])
        deadline = time.monotonic() + 60
        while _closed(gate, params["x"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        return _tables(params, seed)


    def sleepy(params, seed):
        time.sleep(params["sleep"])
        return _tables(params, seed)


    def flaky(params, seed):
        marker = Path(params["marker"])
        deaths = int(marker.read_text()) if marker.exists() else 0
        if deaths < params["deaths"]:
            marker.write_text(str(deaths + 1))
            os._exit(3)
        return _tables(params, seed)


    class Toy(Model):
        parameters = (Parameter("x", 0, 1000, kind="int"),)
        scenarios = (Scenario("doubled", params={{"x": 2}}),)
        outputs = ("series", "summary")

        def simulate(self, params, seed):
            return _tables(params, seed)
    '''
)

BROKEN_MODULE = "import modelops_no_such_package_xyz  # noqa: F401\n\n\ndef fn(params, seed):\n"
BROKEN_MODULE += "    return {}\n"


@dataclass(frozen=True)
class Result:
    """What a finished ``mops`` process left behind."""

    code: int
    stdout: str
    stderr: str


def mops_executable() -> Path:
    """The ``mops`` console script of the interpreter running the tests."""
    return Path(sys.executable).with_name("mops")


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MODELOPS_STORE", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_mops(
    *args: object,
    cwd: Path | None = None,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Result:
    """Run ``mops ARGS`` to completion (``env`` added to the environment); returns its exit
    code, stdout and stderr."""
    proc = subprocess.run(
        [str(mops_executable()), *map(str, args)],
        cwd=cwd,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def start_mops(
    *args: object, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``mops ARGS`` in its own session (so a signal to its group reaches only it)."""
    return subprocess.Popen(
        [str(mops_executable()), *map(str, args)],
        cwd=cwd,
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> Result:
    """Wait for a process started by :func:`start_mops`."""
    stdout, stderr = proc.communicate(timeout=timeout)
    return Result(proc.returncode, stdout, stderr)


def wait_for(
    condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def write_study(
    path: Path,
    model: str,
    parameter_sets: list[dict[str, Any]],
    *,
    n_replicates: int = 1,
    outputs: list[str] | None = None,
    scenario: str = "baseline",
) -> Path:
    """Write a study file (JSON, which is also YAML) and return its path."""
    study: dict[str, Any] = {
        "model": model,
        "scenario": scenario,
        "sampling_method": "grid",
        "n_replicates": n_replicates,
        "parameter_sets": parameter_sets,
    }
    if outputs is not None:
        study["outputs"] = outputs
    path.write_text(json.dumps(study, indent=2), encoding="utf-8")
    return path


def write_bundle(directory: Path) -> Path:
    """Write the toy model bundle into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "toy.py").write_text(TOY_MODULE, encoding="utf-8")
    (directory / "broken.py").write_text(BROKEN_MODULE, encoding="utf-8")
    return directory


@dataclass
class Workspace:
    """A toy bundle, a place for study files and a store path (not created) under tmp_path."""

    root: Path
    bundle: Path
    store: Path

    def study(self, name: str, model: str, xs: list[int], **kwargs: Any) -> Path:
        """Write a study of parameter sets ``{"x": x}`` for each x."""
        return write_study(self.root / name, model, [{"x": x} for x in xs], **kwargs)

    def gated_study(self, tasks: int, open_below: int) -> tuple[Path, Path]:
        """A ``toy.gated`` study of ``tasks`` tasks of which only ``x < open_below`` may finish.

        Returns the study and the gate file; delete the gate to let every task finish.
        """
        gate = self.root / "gate"
        gate.write_text(str(open_below))
        sets = [{"x": x, "gate": str(gate)} for x in range(tasks)]
        return write_study(self.root / "gated.json", "toy.gated", sets), gate

    def run(self, study: Path, *args: object, workers: int = 2, timeout: float = 60.0) -> Result:
        """``mops run STUDY --bundle B --store S --workers N ARGS``."""
        return run_mops(*self.run_args(study, workers), *args, timeout=timeout)

    def start(self, study: Path, *args: object, workers: int = 2) -> subprocess.Popen[str]:
        """Start ``mops run`` in the background."""
        return start_mops(*self.run_args(study, workers), *args)

    def run_args(self, study: Path, workers: int = 2) -> list[object]:
        return ["run", study, "--bundle", self.bundle, "--store", self.store, "--workers", workers]

    def mops(self, *args: object, timeout: float = 60.0) -> Result:
        """``mops ARGS --store S``."""
        return run_mops(*args, "--store", self.store, timeout=timeout)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A fresh toy bundle and an unused store path."""
    return Workspace(tmp_path, write_bundle(tmp_path / "bundle"), tmp_path / "store")


def descendants(pid: int) -> set[tuple[int, str]]:
    """Live descendant processes of ``pid`` as (pid, start time) pairs, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None:
                children.setdefault(info[0], []).append(int(entry.name))
    found: set[tuple[int, str]] = set()
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        info = _stat(child)
        if info is not None:
            found.add((child, info[1]))
        todo.extend(children.get(child, []))
    return found


def alive(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Those of ``processes`` still running (same pid and start time, not a zombie)."""
    still = set()
    for pid, started in processes:
        info = _stat(pid)
        if info is not None and info[1] == started and info[2] != "Z":
            still.add((pid, started))
    return still


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, start time, state) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[19], fields[0]


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at teardown are killed (SIGKILL)."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


@dataclass(frozen=True)
class FinishedJob:
    """A job run once in a store that tests only read: 8 tasks of ``toy.failing``, 2 fail."""

    workspace: Workspace
    result: Result
    summary: dict[str, Any]

    @property
    def job_id(self) -> str:
        return str(self.summary["job_id"])


@pytest.fixture(scope="session")
def failed_job(tmp_path_factory: pytest.TempPathFactory) -> FinishedJob:
    """``toy.failing`` over x = 1..4 with 2 replicates: 6 tasks succeed, the 2 with x = 3 fail."""
    root = tmp_path_factory.mktemp("failed-job")
    ws = Workspace(root, write_bundle(root / "bundle"), root / "store")
    study = ws.study("failing.json", "toy.failing", [1, 2, FAIL_X, 4], n_replicates=2)
    result = ws.run(study, "--json")
    try:
        summary = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"mops run --json printed no JSON: {result}")
    return FinishedJob(ws, result, summary)
