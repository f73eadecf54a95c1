"""Time the driver's start-up path per phase: load a study file, compile, digest, job JSON, rows.

Three shapes: 200,000 and 1,000,000 parameter sets x 1 replicate (``{"x": float(i)}``), and
100,000 sets x 10 replicates. Each phase is timed with ``time.perf_counter`` and the best of
``--repeat`` runs (default 3) is printed, in seconds. The rows phases iterate every task the way
the engine does: ``task_rows()`` (one object per task) and ``task_block()`` in blocks of 5,000.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelops_contracts import SimJob, SimulationStudy
from modelops_contracts.job import _hash_content

BUNDLE = "sha256:" + "ab" * 32
SHAPES = {"200k": (200_000, 1), "1M": (1_000_000, 1), "100kx10": (100_000, 10)}
BLOCK = 5_000


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _iterate_rows(job: SimJob) -> int:
    n = 0
    for _ in job.task_rows():
        n += 1
    return n


def _iterate_blocks(job: SimJob) -> int:
    n, total = 0, job.task_count()
    for start in range(0, total, BLOCK):
        block = job.task_block(start, min(start + BLOCK, total))
        n += len(block.task_ids)
    return n


def run_shape(n_sets: int, reps: int, repeat: int, folder: Path) -> dict[str, float]:
    path = folder / f"study-{n_sets}-{reps}.json"
    study_doc = {
        "model": "sir_model.SIR",
        "scenario": "baseline",
        "sampling_method": "manual",
        "n_replicates": reps,
        "parameter_sets": [{"x": float(i)} for i in range(n_sets)],
    }
    path.write_text(json.dumps(study_doc))
    out: dict[str, float] = {}
    out["load"], study = _best(lambda: SimulationStudy.load(path), repeat)
    out["to_simjob"], job = _best(lambda: study.to_simjob(BUNDLE), repeat)
    out["content_digest"], _ = _best(lambda: _hash_content(job.tasks), repeat)
    out["to_json"], _ = _best(job.to_json, repeat)
    out["task_rows"], count = _best(lambda: _iterate_rows(job), repeat)
    assert count == n_sets * reps
    if hasattr(job, "task_block"):
        out["task_block"], count = _best(lambda: _iterate_blocks(job), repeat)
        assert count == n_sets * reps
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("shapes", nargs="*", default=list(SHAPES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mops-bench-") as tmp:
        for name in args.shapes:
            n_sets, reps = SHAPES[name]
            result = run_shape(n_sets, reps, args.repeat, Path(tmp))
            figures = "  ".join(f"{k} {v:.3f}" for k, v in result.items())
            print(f"{name:8} {figures}  (s, best of {args.repeat})")


if __name__ == "__main__":
    main()
