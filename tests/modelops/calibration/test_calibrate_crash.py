"""A calibration killed with SIGKILL mid-round resumes to exactly the uninterrupted result.

``line.Gated`` blocks once ``GATE_AFTER`` simulations have run while the gate file exists, so
the kill lands inside a round (some of its tasks committed, others running) however fast the
machine is. The model logs every simulation it runs, so the test can tell that the resumed run
ran none of the tasks the killed one had committed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from modelops.store import ResultStore
from tests.modelops.calibration.conftest import LineBundle
from tests.modelops.cli.conftest import alive, descendants, mops_executable, wait_for

pytestmark = pytest.mark.slow


def _command(line: LineBundle, store: Path) -> list[str]:
    return [
        str(mops_executable()), "calibrate", "line.Gated", "--bundle", str(line.path),
        "--store", str(store), "--targets", str(line.targets), "--fix", "width=5",
        "--algorithm", "tpe", "--budget", "24", "--batch", "4", "--replicates", "2",
        "--top-k", "2", "--workers", "2", "--json",
    ]  # fmt: skip


def _start(line: LineBundle, store: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(line, store),
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _simulated(store: Path) -> set[tuple[float, float, int]]:
    """(slope, offset, seed) of every task with committed results in the store."""
    found: set[tuple[float, float, int]] = set()
    with ResultStore(store) as result_store:
        for job in result_store.ledger.list_jobs():
            if "series" not in result_store.output_counts(job.job_id):
                continue  # the round the kill cut short had committed nothing yet
            frame = result_store.read_results(job.job_id, "series")
            found.update(frame.select("slope", "offset", "seed").unique().iter_rows())
    return found


def _logged(path: Path, start: int = 0) -> list[tuple[float, float, int]]:
    lines = path.read_text(encoding="utf-8").splitlines()[start:]
    return [(float(a), float(b), int(c)) for a, b, c in (line.split() for line in lines)]


def test_sigkill_mid_round_then_resume_gives_the_same_result(
    line_bundle: LineBundle, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    clean_store = tmp_path / "clean"
    clean = _start(line_bundle, clean_store, {"LINE_CALLS": str(tmp_path / "clean-calls.log")})
    out, err = clean.communicate(timeout=120)
    assert clean.returncode == 0, err

    gate = tmp_path / "gate"
    gate.write_text("closed", encoding="utf-8")
    env = {"LINE_CALLS": str(calls), "LINE_GATE": str(gate)}
    killed = _start(line_bundle, line_bundle.store, env)
    try:
        blocked = Path(f"{gate}.blocked")
        wait_for(
            lambda: blocked.exists() or killed.poll() is not None,
            timeout=120,
            what="a simulation blocked at the gate",
        )
        assert killed.poll() is None, killed.communicate()[1]
        children = descendants(killed.pid)
        os.kill(killed.pid, signal.SIGKILL)
        killed.communicate(timeout=30)
    finally:
        if killed.poll() is None:
            killed.kill()
    assert killed.returncode == -signal.SIGKILL
    gate.unlink()  # the blocked worker, if still alive, may finish now
    wait_for(lambda: not alive(children), timeout=30, what="the killed run's workers to exit")

    committed = _simulated(line_bundle.store)
    assert committed, "the kill came before any task was committed"
    journal = next((line_bundle.store / "calibrations").iterdir())
    assert not (journal / "best.json").exists()
    before = len(calls.read_text(encoding="utf-8").splitlines())

    resumed = _start(line_bundle, line_bundle.store, {"LINE_CALLS": str(calls)})
    out_again, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err

    rerun = _logged(calls, before)
    assert rerun, "the resumed run simulated nothing"
    assert not committed & set(rerun), "a task committed before the kill ran again"
    assert len(rerun) == len(set(rerun)), "the resumed run ran a task twice"
    with sqlite3.connect(line_bundle.store / "ledger.sqlite") as db:
        (attempts,) = db.execute("select max(attempts) from outcomes").fetchone()
    assert attempts == 1
    clean_dir = clean_store / "calibrations" / journal.name
    for name in ("evaluations.parquet", "best.json"):
        assert (journal / name).read_bytes() == (clean_dir / name).read_bytes(), name
    assert out_again == out.replace(str(clean_store), str(line_bundle.store))
