"""Throughput at scale (issue 11): ``mops run`` beside a hand-written process pool, one run.

The yardstick is what a user would write instead: ``ProcessPoolExecutor(2).map`` with
``chunksize=500`` over the same one-row model, the rows written to one Parquet file. Both are
fresh processes timed from start to exit, on 2 workers, one parameter set per task. Printed:

- 1 and 20,000 tasks: median of ``--repeats`` alternating runs (targets <= 1.5x);
- 200,000 tasks: one run each, alternating (target <= 1.3x), then the cached re-run of the
  completed job (target <= 0.5x the script's fresh run);
- 100,000 and 1,000,000 tasks as 10 replicates per parameter set: the driver's own peak RSS
  (``VmHWM`` of the ``mops`` process, workers excluded; targets <= 300 MB and <= 1.3x) and, for
  the million, the time beside the script's (target <= 1.3x);
- start-up of ``mops --help`` and ``mops status`` (target <= 0.25 s, median of 5);
- then ``dask_overhead.py --part map`` (20,000 tasks vs plain ``client.map``, target >= 3x) and
  ``compile_study.py`` (1M-task ``to_simjob``, targets <= 3 s and <= 250 MB).

Usage: ``python benchmarks/throughput.py [--quick]`` (``--quick`` skips the million).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import MODELS, MOPS, tempdir, timed, write_study

SCRIPT = """
import sys
from concurrent.futures import ProcessPoolExecutor
import pyarrow as pa, pyarrow.parquet as pq
sys.path.insert(0, {models!r})
from bench_model import one_row

def task(i):
    return one_row({{"x": float(i)}}, i)["result"]

if __name__ == "__main__":
    with ProcessPoolExecutor(2) as pool:
        rows = list(pool.map(task, range(int(sys.argv[1])), chunksize=500))
    pq.write_table(pa.Table.from_pylist(rows), sys.argv[2])
"""


class Bench:
    """Study files, stores and the hand-written script under one temporary directory."""

    def __init__(self) -> None:
        self.work = tempdir()
        self.script = self.work / "baseline.py"
        self.script.write_text(SCRIPT.format(models=str(MODELS)))
        self._runs = 0

    def study(self, n: int, replicates: int = 1) -> Path:
        path = self.work / f"study-{n}x{replicates}.json"
        if not path.exists():
            sets = [{"x": float(i)} for i in range(n // replicates)]
            write_study(path, "bench_model.one_row", sets, replicates)
        return path

    def hand(self, n: int) -> float:
        out = self.work / "out.parquet"
        return timed([sys.executable, str(self.script), str(n), str(out)])[0]

    def ours(
        self, n: int, store: Path | None = None, replicates: int = 1
    ) -> tuple[float, float, dict]:
        """Wall seconds, the driver's peak RSS in MB, and the run's JSON summary."""
        if store is None:
            self._runs += 1
            store = self.work / f"store-{self._runs}"
        cmd = [str(MOPS), "run", str(self.study(n, replicates)), "--bundle", str(MODELS)]
        cmd += ["--store", str(store), "--workers", "2", "--json"]
        return _run_watched(cmd)


def _run_watched(cmd: list[str]) -> tuple[float, float, dict]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = [0]
    done = threading.Event()

    def watch() -> None:  # VmHWM only grows: the last reading before exit is the peak
        status = Path(f"/proc/{proc.pid}/status")
        while not done.wait(0.02):
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except (OSError, ValueError):
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"mops run failed ({proc.returncode}):\n{err.decode()}")
    return wall, peak[0] / 1024, json.loads(out)


def _ratio(line: str, ours: float, theirs: float, target: float) -> None:
    ratio = ours / theirs
    verdict = "met" if ratio <= target else "MISSED"
    print(f"{line:<44} ours {ours:6.2f} s  script {theirs:6.2f} s  ratio {ratio:4.2f}"
          f"  (target <= {target:.2f}: {verdict})")  # fmt: skip


def _median_pair(bench: Bench, n: int, repeats: int) -> tuple[float, float]:
    ours, theirs = [], []
    for _ in range(repeats):
        theirs.append(bench.hand(n))
        wall, _, summary = bench.ours(n)
        assert summary["succeeded"] == n, summary
        ours.append(wall)
    return statistics.median(ours), statistics.median(theirs)


def _startup(work: Path) -> None:
    store = work / "store-1"
    for name, args in (
        ("mops --help", ["--help"]),
        ("mops status", ["status", "--store", str(store)]),
    ):
        walls = sorted(timed([str(MOPS), *args])[0] for _ in range(5))
        wall = statistics.median(walls)
        verdict = "met" if wall <= 0.25 else "MISSED"
        print(f"start-up {name:<35} {wall:6.3f} s  (target <= 0.25: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1,000,000-task points")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench = Bench()
    print("one-row tasks, 2 workers, one parameter set per task")
    ours, theirs = _median_pair(bench, 1, args.repeats)
    _ratio(f"1 task (median of {args.repeats})", ours, theirs, 1.5)
    ours, theirs = _median_pair(bench, 20_000, args.repeats)
    _ratio(f"20,000 tasks (median of {args.repeats})", ours, theirs, 1.5)
    theirs = bench.hand(200_000)
    store = bench.work / "store-200k"
    wall, _, summary = bench.ours(200_000, store)
    assert summary["succeeded"] == 200_000, summary
    _ratio("200,000 tasks", wall, theirs, 1.3)
    cached, _, summary = bench.ours(200_000, store)
    assert summary["cached"] == 200_000, summary
    _ratio("cached re-run of the 200,000 (vs fresh script)", cached, theirs, 0.5)
    print("10 replicates per parameter set (as a study of that size is written)")
    _, small, summary = bench.ours(100_000, replicates=10)
    assert summary["succeeded"] == 100_000, summary
    print(f"driver peak RSS, 100,000 tasks: {small:6.0f} MB")
    if not args.quick:
        theirs = bench.hand(1_000_000)
        wall, big, summary = bench.ours(1_000_000, replicates=10)
        assert summary["succeeded"] == 1_000_000, summary
        _ratio("1,000,000 tasks", wall, theirs, 1.3)
        verdict = "met" if big <= 300 and big <= 1.3 * small else "MISSED"
        print(f"driver peak RSS, 1,000,000 tasks: {big:4.0f} MB, {big / small:.2f}x the 100,000"
              f"  (targets <= 300 MB and <= 1.30x: {verdict})")  # fmt: skip
    _startup(bench.work)
    if not args.quick:  # the Dask path and the compile figure, each from its own script
        for script, extra in (("dask_overhead.py", ["--part", "map"]), ("compile_study.py", [])):
            print(f"-- {script}")
            out = subprocess.run(
                [sys.executable, str(Path(__file__).with_name(script)), *extra],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            print(out.rstrip())


if __name__ == "__main__":
    main()
