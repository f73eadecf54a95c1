"""The corpus of bad input files (``tests/fixtures/bad/``) through every command that reads them.

Table-driven: a file dropped into a sub-directory is picked up by the commands of that
sub-directory, and each must end with exit 2, one ``error:`` line on stderr, no traceback, and
the store byte for byte as it was.

- ``study/*.yaml|*.json``: ``mops run`` (bundle: the toy bundle); ``*.json`` also ``mops migrate``.
- ``targets/*.yaml``: ``mops score JOB --targets`` and ``mops plot JOB series --targets`` (JOB
  is a finished ``toy.fast`` job; data files next to the targets start with ``_``).
- ``space/*.yaml``: ``mops sample lhs FILE --model toy.Toy``.

Each ``mops`` is a subprocess of about a second, so the cases run a few at a time (each on its
own copy of the store) when the first test asks for them; every test then checks its own.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.modelops.cli.conftest import Result, Workspace, run_mops, write_bundle

BAD = Path(__file__).resolve().parents[2] / "fixtures" / "bad"
_PARALLEL = 4


@dataclass(frozen=True)
class Case:
    """One bad file through one command."""

    command: str
    path: Path

    @property
    def id(self) -> str:
        return f"{self.command}:{self.path.parent.name}/{self.path.name}"

    def args(self, ws: Workspace, store: Path, job_id: str) -> list[object]:
        """The command line, against ``store`` (a copy of the finished job's store)."""
        plot = ["plot", job_id, "series", "--x", "step", "--y", "value"]
        return {
            "run": ["run", self.path, "--bundle", ws.bundle, "--workers", 1, "--store", store],
            "migrate": ["migrate", self.path],
            "score": ["score", job_id, "--targets", self.path, "--store", store],
            "plot": [*plot, "--targets", self.path, "--store", store],
            "sample": ["sample", "lhs", self.path, "--model", "toy.Toy", "--n", 4],
        }[self.command]


def _files(kind: str, *patterns: str) -> list[Path]:
    return sorted(p for pattern in patterns for p in (BAD / kind).glob(pattern))


def _cases() -> list[Case]:
    cases = [Case("run", p) for p in _files("study", "*.yaml", "*.json")]
    cases += [Case("migrate", p) for p in _files("study", "*.json")]
    targets = _files("targets", "*.yaml")
    cases += [Case(command, p) for p in targets for command in ("score", "plot")]
    cases += [Case("sample", p) for p in _files("space", "*.yaml")]
    return cases


CASES = _cases()


@dataclass(frozen=True)
class Outcome:
    result: Result
    store_changed: bool


def _checksum(root: Path) -> str:
    """SHA-256 over every file's relative path and content under ``root``.

    SQLite's shared-memory index (``-shm``) and an empty write-ahead log (``-wal``), which any
    reader of a WAL database may create, hold no data and are left out.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name.endswith("-shm") or (path.name.endswith("-wal") and not path.stat().st_size):
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case's result, run against its own copy of a store holding one finished job."""
    root = tmp_path_factory.mktemp("bad-corpus")
    ws = Workspace(root, write_bundle(root / "bundle"), root / "store")
    finished = ws.run(ws.study("good.json", "toy.fast", [1, 2], n_replicates=2), "--json")
    assert finished.code == 0, finished.stderr
    job_id = json.loads(finished.stdout)["job_id"]
    base = _checksum(ws.store)

    def run(index: int, case: Case) -> Outcome:
        store = root / "cases" / str(index)
        shutil.copytree(ws.store, store)
        result = run_mops(*case.args(ws, store, job_id), cwd=root)
        return Outcome(result, _checksum(store) != base)

    with ThreadPoolExecutor(_PARALLEL) as pool:
        futures = {c.id: pool.submit(run, i, c) for i, c in enumerate(CASES)}
        return {case_id: future.result() for case_id, future in futures.items()}


def test_corpus_covers_every_kind() -> None:
    commands = {case.command for case in CASES}
    assert commands == {"run", "migrate", "score", "plot", "sample"}
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_file_is_one_line_exit_2(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.id]
    result = outcome.result
    lines = result.stderr.strip().splitlines()
    assert result.code == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not outcome.store_changed, f"{case.id} changed the store"
