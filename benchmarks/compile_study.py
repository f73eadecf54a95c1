"""Compile 100,000 parameter sets x 10 replicates (1,000,000 tasks); print speed and memory.

Target (issue 2): <= 3 s and <= 250 MB peak RSS for ``to_simjob``; the published
modelops-contracts takes ~34 s and ~760 MB for the same job. Also times the job file round trip.
Each phase runs in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

N_SETS = 100_000
N_REPLICATES = 10
BUNDLE = "sha256:" + "ab" * 32


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _study():  # type: ignore[no-untyped-def]
    from modelops_contracts import SimulationStudy

    sets = [
        {"beta": 0.05 + i * 1e-6, "gamma": 0.1 + (i % 97) * 1e-3, "population": 10_000 + i % 7}
        for i in range(N_SETS)
    ]
    return SimulationStudy("sir_model.SIR", "baseline", sets, "grid", n_replicates=N_REPLICATES)


def phase_compile() -> dict[str, float]:
    study = _study()
    base = _peak_mb()
    t0 = time.perf_counter()
    job = study.to_simjob(BUNDLE)
    wall = time.perf_counter() - t0
    assert job.task_count() == N_SETS * N_REPLICATES
    return {
        "compile_s": wall,
        "tasks_per_s": job.task_count() / wall,
        "peak_rss_mb": _peak_mb(),
        "rss_before_compile_mb": base,
    }


def phase_json() -> dict[str, float]:
    from modelops_contracts import SimJob

    job = _study().to_simjob(BUNDLE)
    t0 = time.perf_counter()
    text = job.to_json()
    t_dump = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = SimJob.from_json(text)
    t_load = time.perf_counter() - t0
    assert back.task_count() == job.task_count()
    assert back.tasks[123_456].task_id == job.tasks[123_456].task_id
    return {"to_json_s": t_dump, "from_json_s": t_load, "json_mb": len(text) / 1e6}


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(globals()[f"phase_{sys.argv[1]}"]()))
        return
    results: dict[str, float] = {}
    for phase in ("compile", "json"):
        out = subprocess.run(
            [sys.executable, __file__, phase], capture_output=True, text=True, check=True
        )
        results.update(json.loads(out.stdout))
    print(f"tasks:            {N_SETS * N_REPLICATES:,} ({N_SETS:,} sets x {N_REPLICATES})")
    print(
        f"to_simjob:        {results['compile_s']:.2f} s  ({results['tasks_per_s']:,.0f} tasks/s)"
    )
    print(
        f"peak RSS:         {results['peak_rss_mb']:.0f} MB  "
        f"(study alone: {results['rss_before_compile_mb']:.0f} MB)"
    )
    print(f"to_json:          {results['to_json_s']:.2f} s, {results['json_mb']:.1f} MB")
    print(f"from_json:        {results['from_json_s']:.2f} s")
    print(
        f"ratio vs target:  time {results['compile_s'] / 3.0:.2f} of 3 s, "
        f"memory {results['peak_rss_mb'] / 250:.2f} of 250 MB"
    )
    print(
        f"ratio vs published (34 s, 760 MB): {34 / results['compile_s']:.1f}x faster, "
        f"{760 / results['peak_rss_mb']:.1f}x less memory"
    )


if __name__ == "__main__":
    main()
