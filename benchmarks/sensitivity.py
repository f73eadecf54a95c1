"""Sensitivity analysis (issue 13): accuracy and cost of the whole pipeline on Ishigami.

The Ishigami function (a = 7, b = 0.1; the test suite's ``functions.Ishigami``) goes through
the command line as a user would run it: ``mops sample saltelli --n 4096`` -> ``mops run`` ->
``mops sensitivity --json``, once without noise (1 replicate) and once with Gaussian noise of
sd 2 and 4 replicates. Printed: every S1 and ST beside its analytic value (the largest error is
judged against 0.02 without noise and 0.03 with it; every interval should cover the truth),
the noise fraction beside its true value (judged against 0.02), and the wall time of each step.
A Morris design (20 trajectories) over ``functions.Ranked`` (10 a + 5 b + 2 c + 0 d + 0.5 a b)
prints its mu* ranking, which must be a > b > c > d.

Usage: ``python benchmarks/sensitivity.py``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import MOPS, tempdir, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.modelops.sensitivity.conftest import (  # noqa: E402  (the repository's own tests)
    FUNCTIONS,
    ISHIGAMI_S1,
    ISHIGAMI_ST,
    ISHIGAMI_VARIANCE,
)

N = 4096


def _mops(*args: object) -> tuple[float, str]:
    wall, _, proc = timed([str(MOPS), *map(str, args)])
    return wall, proc.stdout


def _ishigami(work: Path, bundle: Path, noise: float, replicates: int) -> None:
    study, store = work / f"ishigami-{replicates}.json", work / "store"
    t_sample, _ = _mops(
        "sample", "saltelli", "functions.Ishigami", "--bundle", bundle, "--n", N,
        "--fix", f"noise={noise}", "--replicates", replicates, "--seed", 11, "-o", study,
    )  # fmt: skip
    t_run, out = _mops("run", study, "--bundle", bundle, "--store", store, "--json")
    summary = json.loads(out)
    t_analyse, out = _mops(
        "sensitivity", summary["job_id"], "y", "--value", "f", "--store", store, "--json"
    )
    result: dict[str, Any] = json.loads(out)
    print(f"\nIshigami, N = {N}, noise sd {noise:g}, R = {replicates}: {summary['total']} tasks")
    print(f"  {'':4} {'':3} {'estimate':>9} {'conf':>7} {'analytic':>9} {'error':>7}  covered")
    worst, covered = 0.0, True
    for name in ("x1", "x2", "x3"):
        figures = result["indices"][name]
        for kind, truth in (("S1", ISHIGAMI_S1[name]), ("ST", ISHIGAMI_ST[name])):
            estimate, conf = figures[kind], figures[f"{kind}_conf"]
            error = estimate - truth
            inside = abs(error) <= conf
            worst, covered = max(worst, abs(error)), covered and inside
            print(
                f"  {name:4} {kind:3} {estimate:9.4f} {conf:7.4f} {truth:9.4f} {error:+7.4f}  "
                f"{'yes' if inside else 'NO'}"
            )
    limit = 0.02 if replicates == 1 else 0.03
    verdict = "ok" if worst <= limit else "MISSED"
    print(f"  largest error {worst:.4f} (target <= {limit}: {verdict}); intervals cover: {covered}")
    if replicates > 1:
        truth = noise**2 / (noise**2 + ISHIGAMI_VARIANCE)
        error = result["noise_fraction"] - truth
        verdict = "ok" if abs(error) <= 0.02 else "MISSED"
        print(
            f"  noise fraction {result['noise_fraction']:.4f}, true {truth:.4f}, "
            f"error {error:+.4f} (target <= 0.02: {verdict})"
        )
    print(
        f"  wall: mops sample {t_sample:.1f} s, mops run {t_run:.1f} s, "
        f"mops sensitivity {t_analyse:.1f} s"
    )
    if result["warnings"]:
        print("  warnings: " + "; ".join(result["warnings"]))


def _morris(work: Path, bundle: Path) -> None:
    study, store = work / "ranked.json", work / "store"
    _mops(
        "sample", "morris", "functions.Ranked", "--bundle", bundle, "--trajectories", 20,
        "--seed", 3, "-o", study,
    )  # fmt: skip
    _, out = _mops("run", study, "--bundle", bundle, "--store", store, "--json")
    job_id = json.loads(out)["job_id"]
    _, out = _mops("sensitivity", job_id, "y", "--value", "f", "--store", store, "--json")
    indices = json.loads(out)["indices"]
    ranking = sorted(indices, key=lambda p: -indices[p]["mu_star"])
    shown = ", ".join(f"{p} {indices[p]['mu_star']:.3f}" for p in ranking)
    verdict = "ok" if ranking == ["a", "b", "c", "d"] else "MISSED"
    print(f"\nMorris, 20 trajectories over Ranked: mu* {shown} (ranking a > b > c > d: {verdict})")


def main() -> None:
    work = tempdir()
    bundle = work / "bundle"
    bundle.mkdir()
    (bundle / "functions.py").write_text(FUNCTIONS, encoding="utf-8")
    started = time.perf_counter()
    _ishigami(work, bundle, 0.0, 1)
    _ishigami(work, bundle, 2.0, 4)
    _morris(work, bundle)
    print(f"\ntotal {time.perf_counter() - started:.1f} s; scratch files in a temp dir")


if __name__ == "__main__":
    main()
