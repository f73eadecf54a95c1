"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from modelops_contracts import SimulationStudy
from tests.slurm_cluster import SlurmCluster, start_slurm, stop_slurm

if TYPE_CHECKING:
    from tests.modelops.services.conftest import DaskCluster

# The bundle environments the tests build skip compiling their packages to bytecode: a few
# seconds a build, which only makes the environment's imports faster (benchmarks/environments.py
# measures it with the default). Set before any test starts a process, so every one inherits it.
os.environ.setdefault("UV_COMPILE_BYTECODE", "0")

KNOWN_PARAMS = {"beta": 0.5, "gamma": 0.1}
KNOWN_PARAM_ID = "4dcc7ab13573314d32533202b02f34a316bfb06c4155cb84f7cad4908a22f85e"
KNOWN_SEEDS = [2794990768, 755616011, 3093967472]


@pytest.fixture
def bundle_ref() -> str:
    return "sha256:" + "ab" * 32


@pytest.fixture
def other_bundle_ref() -> str:
    return "sha256:" + "cd" * 32


# --- a toy model bundle for the engine, API, client and service tests ---------------------------
# toy.py holds plain functions of (params, seed) and one Model subclass; every task has ``x``:
#   ok       "summary" (one row of scalars) and "series" (TOY_SERIES_ROWS rows), seeded numpy
#   boom     raises ValueError for x == TOY_BAD_X       die   os._exit(3) for x == TOY_BAD_X
#   segv     real segfault for x == TOY_BAD_X           sleepy  sleeps params["t"] s (pid out)
#   gated    x >= 4 waits for the file params["gate"]; x == params["bad"] raises
#   chatty   prints to stdout, stderr and fd 2, then raises for x == TOY_BAD_X
#   sparse   x rows of "series"                         counted  pid and per-process call count
#   Toy      Model: int x, float scale (default 1), scenario "doubled" (scale = 2)
# broken.py fails to import (a missing dependency).

TOY_SERIES_ROWS = 3
TOY_BAD_X = 3  # boom, die, segv and chatty misbehave for this value of ``x``

TOY_MODULE = f'''
"""Toy models for the engine, API, client and service tests."""

from __future__ import annotations

import ctypes
import os
import sys
import time

import numpy as np

from modelops.model import Model, Parameter, Scenario

_calls = [0]


def _tables(params, seed):
    x = params["x"]
    rng = np.random.default_rng(seed)
    draws = rng.random({TOY_SERIES_ROWS})
    return {{
        "summary": {{"x_twice": x * 2, "seed_mod": seed % 1000, "draw": float(draws[0])}},
        "series": {{
            "step": list(range({TOY_SERIES_ROWS})),
            "value": [float(x * step) + float(d) for step, d in enumerate(draws)],
        }},
    }}


def ok(params, seed):
    return _tables(params, seed)


def boom(params, seed):
    if params["x"] == {TOY_BAD_X}:
        raise ValueError("x must not be {TOY_BAD_X}")
    return _tables(params, seed)


def die(params, seed):
    if params["x"] == {TOY_BAD_X}:
        os._exit(3)
    return _tables(params, seed)


def segv(params, seed):
    if params["x"] == {TOY_BAD_X}:
        ctypes.string_at(0)
    return _tables(params, seed)


def sleepy(params, seed):
    time.sleep(params["t"])
    tables = _tables(params, seed)
    tables["summary"]["pid"] = os.getpid()
    return tables


def gated(params, seed):
    """Tasks with x >= 4 wait (up to 30 s) until the file ``params["gate"]`` exists.

    The task whose x equals ``params["bad"]`` (if given) raises instead.
    """
    if params["x"] == params.get("bad"):
        raise ValueError("x is the bad one")
    deadline = time.monotonic() + 30
    while params["x"] >= 4 and not os.path.exists(params["gate"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _tables(params, seed)


def chatty(params, seed):
    print(f"toy-stdout x={{params['x']}}")
    print(f"toy-stderr x={{params['x']}}", file=sys.stderr)
    os.write(2, f"toy-fd2 x={{params['x']}}\\n".encode())  # below Python, as C code would
    if params["x"] == {TOY_BAD_X}:
        raise RuntimeError("chatty gave up")
    return _tables(params, seed)


def sparse(params, seed):
    """``x`` rows of ``series`` (none for x = 0)."""
    return {{"series": {{"step": np.arange(params["x"], dtype=np.int64)}}}}


def counted(params, seed):
    _calls[0] += 1
    return {{"summary": {{"pid": os.getpid(), "call": _calls[0]}}}}


class Toy(Model):
    parameters = (
        Parameter("x", 0, 1000, kind="int"),
        Parameter("scale", 0.0, 10.0, default=1.0),
    )
    scenarios = (Scenario("doubled", params={{"scale": 2.0}}),)
    outputs = ("summary", "series")

    def simulate(self, params, seed):
        tables = _tables(params, seed)
        tables["summary"]["scaled"] = params["x"] * params["scale"]
        tables["summary"]["x_kind"] = type(params["x"]).__name__
        return tables
'''

BROKEN_MODULE = "import modelops_toy_missing_dependency  # noqa: F401\n\n\ndef ok(params, seed):\n"
BROKEN_MODULE += "    return {}\n"


def open_files_under(root: Path) -> int:
    """How many file descriptors of this process point at files under ``root`` (Linux)."""
    count = 0
    prefix = str(root.resolve()) + "/"
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        count += target.startswith(prefix)
    return count


needs_proc_fd = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)"
)


@dataclass(frozen=True)
class ToyBundle:
    """A bundle directory holding ``toy.py`` (see :data:`TOY_MODULE`) and a store next to it."""

    path: Path
    store: Path

    def study(
        self,
        model: str = "ok",
        xs: Iterable[int] = range(4),
        *,
        replicates: int = 2,
        outputs: Sequence[str] | None = ("summary", "series"),
        scenario: str = "baseline",
        extra: Mapping[str, Any] | None = None,
    ) -> SimulationStudy:
        """A study of ``toy.<model>`` over ``x`` in ``xs`` (plus ``extra`` params in each set)."""
        return SimulationStudy(
            model=f"toy.{model}",
            scenario=scenario,
            parameter_sets=[{"x": x, **(extra or {})} for x in xs],
            n_replicates=replicates,
            outputs=list(outputs) if outputs is not None else None,
        )


@pytest.fixture
def toy_bundle(tmp_path: Path) -> ToyBundle:
    """A fresh toy bundle under ``tmp_path/bundle`` and a store path ``tmp_path/store``."""
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "toy.py").write_text(TOY_MODULE, encoding="utf-8")
    (root / "broken.py").write_text(BROKEN_MODULE, encoding="utf-8")
    return ToyBundle(root, tmp_path / "store")


# --- a real Dask cluster (scheduler and worker processes on 127.0.0.1), shared by the session ---


@pytest.fixture(scope="session")
def dask_session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A scheduler and two single-threaded workers, shared by every Dask test."""
    from tests.modelops.services.conftest import running_cluster

    with running_cluster(tmp_path_factory.mktemp("dask"), workers=2) as cluster:
        yield cluster


@pytest.fixture
def dask_cluster(dask_session_cluster: DaskCluster) -> DaskCluster:
    """The shared cluster, with all its workers registered (a test may have killed one)."""
    dask_session_cluster.wait_for_workers()
    return dask_session_cluster


# --- a real Slurm (munged, slurmctld and slurmd on 127.0.0.1), started once per test run ---


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """The session's throw-away Slurm (see tests/slurm/README.md), stopped by pid at the end."""
    cluster = start_slurm(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        stop_slurm(cluster)
