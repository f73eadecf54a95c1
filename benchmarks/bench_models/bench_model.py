"""Models used by the benchmarks."""

from __future__ import annotations

import time


def one_row(params: dict, seed: int) -> dict:
    """A model that does almost nothing and returns a one-row table."""
    return {"result": {"value": params["x"] * 2.0 + seed % 7}}


def busy(params: dict, seed: int) -> dict:
    """Burn about ``params['ms']`` milliseconds of CPU and report the CPU time used."""
    start = time.process_time()
    deadline = start + params["ms"] / 1000.0
    acc = seed
    while time.process_time() < deadline:
        for _ in range(1000):
            acc = (acc * 1103515245 + 12345) & 0xFFFFFFFF
    return {"result": {"acc": acc, "cpu": time.process_time() - start}}
