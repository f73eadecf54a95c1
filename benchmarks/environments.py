"""Bundle environments (issue 15): building one, reusing it, and running tasks inside it.

Printed, best of ``RUNS``:

- cold build: ``mops env build`` of a bundle pinning ``packaging==23.2`` in a fresh store with an
  empty uv cache (everything downloaded from the package index), and with uv's cache already
  holding the wheels (a second environment on the same machine);
- resolving an unpinned requirement (``packaging>=23,<24``): the first run, and a later run that
  finds the resolution kept beside the environments;
- warm reuse: ``mops run --no-cache`` of a one-task study whose environment is built, beside the
  same run with ``--env current`` (target: at most 0.2 s more);
- per-task overhead: 20,000 tiny tasks (``--workers 2``) inside the bundle environment vs the
  current environment, as the whole ``mops run`` and as the job's own wall time (the engine's
  ``wall_seconds``: no start-up, no model check) (target: at most 1.1x).

Usage: ``python benchmarks/environments.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from _common import best_line, mops, tempdir

RUNS = 3
TASKS = 20_000

MODEL = """
import packaging


def tiny(params, seed):
    return {"summary": {"value": params["x"] * 2 + seed % 7, "packaging": packaging.__version__}}
"""


def _mops(*args: object, env: dict[str, str]) -> float:
    return mops(*args, env=env)[0]


def _line(what: str, walls: list[float]) -> None:
    best_line(what, walls, width=56)


def _bundle(root: Path, name: str, requirements: str) -> Path:
    bundle = root / name
    bundle.mkdir()
    (bundle / "tiny.py").write_text(MODEL)
    (bundle / "requirements.txt").write_text(requirements)
    return bundle


def _study(path: Path, sets: int, replicates: int) -> Path:
    path.write_text(
        json.dumps(
            {
                "model": "tiny.tiny",
                "n_replicates": replicates,
                "parameter_sets": [{"x": x} for x in range(sets)],
            }
        )
    )
    return path


def main() -> None:
    work = tempdir()
    base = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    pinned = _bundle(work, "pinned", "packaging==23.2\n")
    ranged = _bundle(work, "ranged", "packaging>=23,<24\n")
    try:
        print(f"environments of a bundle pinning packaging==23.2 (best of {RUNS})")
        cold, warm_cache = [], []
        for run in range(RUNS):
            uv_cache = work / f"uv-cache-{run}"
            env = {**base, "UV_CACHE_DIR": str(uv_cache)}
            cold.append(
                _mops("env", "build", "--bundle", pinned, "--store", work / f"c{run}", env=env)
            )
            warm_cache.append(
                _mops("env", "build", "--bundle", pinned, "--store", work / f"w{run}", env=env)
            )
            shutil.rmtree(uv_cache)
        _line("cold build, empty uv cache", cold)
        _line("new environment, uv cache holding the wheels", warm_cache)
        built = work / "w0"
        reused = [
            _mops("env", "build", "--bundle", pinned, "--store", built, env=base)
            for _ in range(RUNS)
        ]
        _line("mops env build of a built environment", reused)

        first, later = [], []
        for run in range(RUNS):
            store = work / f"r{run}"
            first.append(_mops("env", "build", "--bundle", ranged, "--store", store, env=base))
            later.append(_mops("env", "build", "--bundle", ranged, "--store", store, env=base))
        _line("unpinned packaging>=23,<24: first build (resolves)", first)
        _line("unpinned: the built environment again", later)

        one = _study(work / "one.json", 1, 1)

        def run(study: Path, *flags: object) -> float:
            return _mops("run", study, "--bundle", pinned, "--store", built, *flags, env=base)

        auto, current = [], []
        for _ in range(RUNS + 2):  # interleaved, so drift affects both alike
            auto.append(run(one, "--no-cache", "--json"))
            current.append(run(one, "--no-cache", "--json", "--env", "current"))
        _line("mops run, one task, in the built environment", auto)
        _line("mops run, one task, --env current", current)
        extra = min(auto) - min(current)
        print(f"{'warm reuse over --env current':<56} {extra:+7.2f} s  (target <= +0.20)")

        many = _study(work / "many.json", TASKS // 10, 10)
        inside, outside, inside_job, outside_job = [], [], [], []
        for _ in range(RUNS + 2):
            for walls, jobs, flags in (
                (inside, inside_job, ()),
                (outside, outside_job, ("--env", "current")),
            ):
                wall, out = mops(
                    "run", many, "--bundle", pinned, "--store", built, "--no-cache", "--json",
                    "--workers", 2, *flags, env=base,
                )  # fmt: skip
                walls.append(wall)
                jobs.append(float(json.loads(out)["wall_seconds"]))
        _line(f"{TASKS} tiny tasks in the bundle environment", inside)
        _line(f"{TASKS} tiny tasks, --env current", outside)
        _line("  of which the job itself, in the bundle environment", inside_job)
        _line("  of which the job itself, --env current", outside_job)
        for what, a, b in (("mops run", inside, outside), ("the job", inside_job, outside_job)):
            ratio = min(a) / min(b)
            name = f"per-task, {what}: bundle environment / current"
            print(f"{name:<56} {ratio:7.2f}x  (target <= 1.10x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
