"""Dask overhead: ModelOps on a Dask cluster versus plain ``client.map``, and parallel efficiency.

On a scheduler with 2 single-threaded workers (started here on 127.0.0.1, or ``--scheduler``):

1. 20,000 one-row tasks through ``modelops.run(..., backend=DaskSimulationService(addr))`` versus
   the plain Dask way: ``client.map`` over the same function (one future per task), gathered into
   one Parquet file. Target (issue 4): ours at least 3x faster.
2. 1,000 tasks of ~20 ms CPU each: wall versus total task CPU / 2. Target: ratio <= 1.2.

Workers are warmed up first (a long-lived cluster is the normal case); the first, cold run of
our backend is printed too. Usage: ``python benchmarks/dask_overhead.py [--scheduler ADDR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import MODELS, tempdir, write_study

N = 20_000
BUSY_N = 1_000
BUSY_MS = 20
REPEATS = 2


def spawn(work: Path, module: str, *args: str) -> subprocess.Popen[bytes]:
    with open(work / "cluster.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def local_cluster(work: Path) -> Iterator[str]:
    """A ``dask scheduler`` and a ``dask worker --nworkers 2 --nthreads 1`` on 127.0.0.1."""
    scheduler_file = str(work / "scheduler.json")
    procs = [
        spawn(
            work,
            "distributed.cli.dask_scheduler",
            *("--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0"),
            *("--scheduler-file", scheduler_file),
        )
    ]
    try:
        while not Path(scheduler_file).exists():
            time.sleep(0.05)
        time.sleep(0.2)
        procs.append(
            spawn(
                work,
                "distributed.cli.dask_worker",
                *("--scheduler-file", scheduler_file, "--nworkers", "2", "--nthreads", "1"),
                *("--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "0"),
            )
        )
        yield str(json.loads(Path(scheduler_file).read_text())["address"])
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def one_task(i: int) -> dict[str, Any]:
    """The plain-Dask task: the benchmark model on one parameter set (runs on a worker)."""
    import importlib

    model = importlib.import_module("bench_model")  # shipped with client.upload_file
    return dict(model.one_row({"x": float(i)}, i)["result"])


def plain_map(client: Any, n: int, out: Path) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    futures = client.map(one_task, range(n), pure=False)
    rows = client.gather(futures)
    pq.write_table(pa.Table.from_pylist(rows), out)
    del futures
    return time.perf_counter() - start


def ours(address: str, study: Path, store: Path) -> tuple[float, Any]:
    import modelops
    from modelops.services.dask import DaskSimulationService

    start = time.perf_counter()
    handle = modelops.run(study, bundle=MODELS, store=store, backend=DaskSimulationService(address))
    wall = time.perf_counter() - start
    assert handle.summary is not None
    return wall, handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", help="use this scheduler instead of starting one")
    parser.add_argument("--part", choices=["all", "map", "busy"], default="all")
    args = parser.parse_args()
    work = tempdir()
    with contextlib.ExitStack() as stack:
        address = args.scheduler or stack.enter_context(local_cluster(work))
        from distributed import Client

        with Client(address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(2, timeout=120)
            threads = sum(client.nthreads().values())
            print(f"cluster: {address}, {threads} worker threads")
            if args.part in ("all", "map"):
                versus_client_map(client, address, work)
        if args.part in ("all", "busy"):
            efficiency(address, work, threads)


def versus_client_map(client: Any, address: str, work: Path) -> None:
    client.upload_file(str(MODELS / "bench_model.py"))
    plain_map(client, 200, work / "warm.parquet")  # workers import the model
    study = write_study(
        work / "study.json", "bench_model.one_row", [{"x": float(i)} for i in range(N)]
    )
    cold, handle = ours(address, study, work / "store-cold")
    assert handle.summary.succeeded == N, handle.summary
    base, mine = [], []
    for i in range(REPEATS):
        base.append(plain_map(client, N, work / f"plain-{i}.parquet"))
        wall, handle = ours(address, study, work / f"store-{i}")
        assert handle.summary.succeeded == N, handle.summary
        assert handle.results("result").height == N
        mine.append(wall)
    print(f"tasks: {N:,} one-row tasks (best of {REPEATS}, workers warm)")
    print(f"plain client.map, one future per task, to Parquet: {min(base):.2f} s")
    print(f"modelops.run on DaskSimulationService:            {min(mine):.2f} s")
    print(f"  (first run, cold workers:                       {cold:.2f} s)")
    print(f"speed-up ours vs client.map: {min(base) / min(mine):.1f}x  (target >= 3x)")


def efficiency(address: str, work: Path, threads: int) -> None:
    import polars as pl

    warm = [{"ms": 1, "i": i} for i in range(20)]
    ours(address, write_study(work / "warm.json", "bench_model.busy", warm), work / "store-warm")
    study = write_study(
        work / "busy.json",
        "bench_model.busy",
        [{"ms": BUSY_MS, "i": i} for i in range(BUSY_N)],
    )
    wall, handle = ours(address, study, work / "store-busy")
    assert handle.summary.succeeded == BUSY_N, handle.summary
    cpu = handle.results("result").select(pl.col("cpu").sum()).item()
    ideal = cpu / threads
    engine = handle.summary.wall_seconds
    print(f"tasks: {BUSY_N:,} x ~{BUSY_MS} ms CPU on {threads} worker threads")
    print(f"total task CPU: {cpu:.2f} s -> ideal wall {ideal:.2f} s")
    print(f"engine wall (run's own timer): {engine:.2f} s, ratio {engine / ideal:.3f}")
    print(f"modelops.run wall (incl. compile, connect): {wall:.2f} s, ratio {wall / ideal:.3f}")
    print("target: ratio <= 1.20")
    # the same study on the local pool, as a yardstick for how busy this machine is right now
    import modelops

    local = modelops.run(study, bundle=MODELS, store=work / "store-busy-local", workers=threads)
    assert local.summary is not None
    cpu = local.results("result").select(pl.col("cpu").sum()).item()
    ratio = local.summary.wall_seconds / (cpu / threads)
    print(f"same study on the local pool (machine yardstick): ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
