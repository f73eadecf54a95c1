"""Driver memory does not grow with job size: peak RSS of ``mops run`` for 200k vs 20k tasks.

Target (issue 3): peak(200,000 tasks) <= 1.5 x peak(20,000 tasks). Workers are separate
processes; this measures the driver (the ``mops`` process) only... via RUSAGE_CHILDREN, which
takes the largest child, so workers are counted too if they were bigger.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _common import MODELS, MOPS, tempdir, write_study

CHILD = """
import resource, subprocess, sys, json
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
out, _ = proc.communicate()
print(json.dumps({"code": proc.returncode, "summary": out.decode()}))
"""


def peak_of_driver(n: int) -> tuple[float, dict]:
    work = tempdir()
    study = write_study(
        work / "study.json",
        "bench_model.one_row",
        [{"x": float(i)} for i in range(n // 10)],
        replicates=10,
    )
    cmd = [
        str(MOPS),
        "run",
        str(study),
        "--bundle",
        str(MODELS),
        "--store",
        str(work / "s"),
        "--workers",
        "2",
        "--json",
    ]
    # /usr/bin/time-free measurement: wait4 on the driver gives its own peak RSS
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ}
    )
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read() if proc.stdout else b""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mops run failed for n={n}")
    return usage.ru_maxrss / 1024, json.loads(out)


def main() -> None:
    small, s1 = peak_of_driver(20_000)
    big, s2 = peak_of_driver(200_000)
    assert s1["succeeded"] == 20_000 and s2["succeeded"] == 200_000
    print(f"driver peak RSS, 20,000 tasks:  {small:.0f} MB ({s1['wall_seconds']:.1f} s)")
    print(f"driver peak RSS, 200,000 tasks: {big:.0f} MB ({s2['wall_seconds']:.1f} s)")
    print(f"ratio: {big / small:.2f}  (target <= 1.50)")


if __name__ == "__main__":
    sys.exit(main())
