"""Engine overhead: 20,000 one-row tasks on 2 workers, ``mops run`` versus a hand-written script.

The hand-written script is what a user would write instead: ProcessPoolExecutor.map with a good
chunksize, collecting the rows into one Parquet file. Both run as fresh processes, timed from
start to exit. Target (issue 3): ours <= 1.3x the script, ledger and cache included. Also times
the cached re-run of the completed job (target < 2 s).
"""

from __future__ import annotations

import sys

from _common import MODELS, mops_run, tempdir, timed, write_study

N = 20_000

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
        rows = list(pool.map(task, range({n}), chunksize={n} // 16))
    pq.write_table(pa.Table.from_pylist(rows), {out!r})
"""


def main() -> None:
    work = tempdir()
    script = work / "baseline.py"
    script.write_text(SCRIPT.format(models=str(MODELS), n=N, out=str(work / "out.parquet")))
    study = write_study(
        work / "study.json", "bench_model.one_row", [{"x": float(i)} for i in range(N)]
    )
    base = min(timed([sys.executable, str(script)])[0] for _ in range(3))
    ours = []
    for i in range(3):
        wall, summary = mops_run(study, work / f"store{i}")
        assert summary["succeeded"] == N, summary
        ours.append(wall)
    cached, summary = mops_run(study, work / "store0")
    assert summary["cached"] == N, summary
    best = min(ours)
    print(f"tasks: {N:,} one-row tasks, 2 workers (best of 3)")
    print(f"hand-written ProcessPoolExecutor script: {base:.2f} s")
    print(f"mops run (fresh store):                  {best:.2f} s  ({N / best:,.0f} tasks/s)")
    print(f"ratio ours/script: {best / base:.2f}  (target <= 1.30)")
    print(f"cached re-run of the completed job:      {cached:.2f} s  (target < 2 s)")


if __name__ == "__main__":
    main()
