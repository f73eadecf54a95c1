"""Parallel efficiency: 1,000 tasks of ~20 ms CPU each on 2 workers.

Target (issue 3): wall <= 1.1 x (total task CPU / 2). Task CPU is measured inside each task.
"""

from __future__ import annotations

from _common import mops_run, tempdir, write_study

N = 1_000
MS = 20


def main() -> None:
    import polars as pl

    from modelops.store import ResultStore

    work = tempdir()
    study = write_study(
        work / "study.json", "bench_model.busy", [{"ms": MS, "i": i} for i in range(N)]
    )
    wall, summary = mops_run(study, work / "store")
    assert summary["succeeded"] == N, summary
    cpu = (
        ResultStore(work / "store")
        .read_results(summary["job_id"], "result")
        .select(pl.col("cpu").sum())
        .item()
    )
    ideal = cpu / 2
    engine_wall = summary["wall_seconds"]
    print(f"tasks: {N:,} x ~{MS} ms CPU, 2 workers")
    print(f"total task CPU: {cpu:.2f} s -> ideal wall {ideal:.2f} s")
    print(
        f"engine wall (mops run's own timer): {engine_wall:.2f} s, ratio {engine_wall / ideal:.3f}"
    )
    print(f"process wall (incl. interpreter start): {wall:.2f} s, ratio {wall / ideal:.3f}")
    print("target: ratio <= 1.10")


if __name__ == "__main__":
    main()
