"""Slurm (issue 14): how soon `mops run --cluster slurm` runs a task, and the SIR study on it.

A throw-away one-node Slurm is started with the test suite's ``tests/slurm/slurm-up.sh`` (root;
it installs the Debian packages when missing) and stopped at the end. Printed, best of 3:

- the time from starting ``mops run STUDY --cluster slurm`` to the first task running: the
  study is one task of a model that writes ``time.time()`` when it starts;
- the wall time of ``mops run examples/sir/study.yaml --cluster slurm --jobs 2`` (45 tasks) in a
  fresh store, beside the same study on the local pool (``--workers 2``).

Usage: ``python benchmarks/slurm.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import best_line, mops, tempdir

ROOT = Path(__file__).resolve().parent.parent
SIR = ROOT / "examples" / "sir"
UP, DOWN = ROOT / "tests" / "slurm" / "slurm-up.sh", ROOT / "tests" / "slurm" / "slurm-down.sh"
RUNS = 3

STAMP = """
import time
from pathlib import Path


def stamp(params, seed):
    Path(params["file"]).write_text(repr(time.time()))
    return {"summary": {"ok": 1}}
"""


def _mops(*args: object, env: dict[str, str]) -> float:
    return mops(*args, env=env)[0]


def main() -> None:
    work = tempdir()
    up = subprocess.run(["bash", str(UP), str(work / "slurm")], capture_output=True, text=True)
    if up.returncode != 0:
        raise SystemExit(f"slurm-up.sh failed:\n{up.stdout}{up.stderr}")
    print(up.stdout.strip())
    try:
        config = work / "config" / "modelops"
        config.mkdir(parents=True)
        (config / "cluster.yaml").write_text("host: 127.0.0.1\nmemory: 1GB\nqueue: debug\n")
        env = {
            **os.environ,
            "SLURM_CONF": str(work / "slurm" / "slurm.conf"),
            "XDG_CONFIG_HOME": str(config.parent),
        }
        bundle = work / "bundle"
        bundle.mkdir()
        (bundle / "stamp.py").write_text(STAMP)
        firsts, slurm_walls, local_walls = [], [], []
        for run in range(RUNS):
            stamp = work / f"stamp-{run}"
            study = work / f"stamp-{run}.json"
            study.write_text(
                json.dumps({"model": "stamp.stamp", "parameter_sets": [{"file": str(stamp)}]})
            )
            started = time.time()
            _mops("run", study, "--bundle", bundle, "--store", work / f"s{run}",
                  "--cluster", "slurm", env=env)  # fmt: skip
            firsts.append(float(stamp.read_text()) - started)
            slurm_walls.append(
                _mops(
                    "run",
                    SIR / "study.yaml",
                    "--bundle",
                    SIR,
                    "--store",
                    work / f"sir{run}",
                    "--cluster",
                    "slurm",
                    "--jobs",
                    2,
                    env=env,
                )
            )
            local_walls.append(
                _mops(
                    "run",
                    SIR / "study.yaml",
                    "--bundle",
                    SIR,
                    "--store",
                    work / f"loc{run}",
                    "--workers",
                    2,
                    env=env,
                )
            )
        best_line("mops run --cluster slurm -> first task running", firsts)
        best_line("SIR study (45 tasks), --cluster slurm --jobs 2", slurm_walls)
        best_line("SIR study (45 tasks), local pool --workers 2", local_walls)
    finally:
        subprocess.run(["bash", str(DOWN), str(work / "slurm")], capture_output=True, check=False)
    print(f"python {sys.version.split()[0]}; scratch files in a temp dir")


if __name__ == "__main__":
    main()
