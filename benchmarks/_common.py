"""Shared helpers for the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE / "bench_models"
MOPS = Path(sys.executable).with_name("mops")


def write_study(path: Path, model: str, sets: list[dict], replicates: int = 1) -> Path:
    study = {
        "model": model,
        "scenario": "baseline",
        "sampling_method": "manual",
        "n_replicates": replicates,
        "parameter_sets": sets,
    }
    path.write_text(json.dumps(study))
    return path


def timed(
    cmd: list[str], **kwargs: object
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds, peak RSS (MB) of the child, and the completed process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, proc


def tempdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mops-bench-"))


def mops_run(study: Path, store: Path, workers: int = 2) -> tuple[float, dict]:
    wall, _, proc = timed(
        [
            str(MOPS),
            "run",
            str(study),
            "--bundle",
            str(MODELS),
            "--store",
            str(store),
            "--workers",
            str(workers),
            "--json",
        ],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return wall, json.loads(proc.stdout)


def mops(*args: object, env: dict[str, str]) -> tuple[float, str]:
    """Run ``mops ARGS`` (failing the benchmark if it fails): wall seconds and its stdout."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(MOPS), *map(str, args)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"mops {args[0]} failed ({done.returncode}):\n{done.stderr}")
    return time.perf_counter() - started, done.stdout


def best_line(what: str, walls: list[float], width: int = 48) -> None:
    """Print the best of ``walls`` and every run."""
    runs = "  ".join(f"{t:.2f}" for t in walls)
    print(f"{what:<{width}} {min(walls):7.2f} s  (runs: {runs})", flush=True)
