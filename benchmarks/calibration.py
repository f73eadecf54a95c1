"""Calibration speed (issue 12): ``modelops.calibrate`` beside a hand-written Optuna loop.

The yardstick is what a competent user would write instead: an in-memory Optuna study with the
same ``TPESampler`` settings as our ``tpe`` (read from :mod:`modelops.calibration._algorithms`),
one ``ProcessPoolExecutor(2)`` started once, rounds of 8 asks, each point run on 4 replicates
(the same seeds: ``modelops_contracts.seeds.replicate_seeds``), the replicate-marginal Poisson
NLL against ``examples/sir/observed.csv`` computed in the parent with scipy, then told; at the
end the best 5 points re-run on 16 new replicates and the best mean picked. It keeps everything
in memory: no store, no Parquet, no cache. So the ratio is what our journal, store and cache
cost on a small, fast model, where that overhead shows most.

Both run the SIR example (beta, gamma free; population 10,000, 100 initially infected), budget
200, R = 4, 2 workers, in this process, alternating (ours, then the loop) so drift hits both;
best of 3 (``--quick``: 1). Printed: both walls and the ratio (target <= 1.30), the CLI form
(``mops calibrate`` in a subprocess, interpreter start and imports included), the re-run of a
finished calibration against its first run (target <= 0.10), and how many simulations each
did. ``--profile`` also runs ours once under cProfile and prints where the driver's time goes.

Usage: ``python benchmarks/calibration.py [--quick] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import shutil
import subprocess
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import MOPS, tempdir

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "examples" / "sir"
TARGETS = BUNDLE / "targets.yaml"
MODEL = "sir_model.SIR"
FIX: dict[str, int | float] = {"population": 10_000, "initial_infected": 100}
BUDGET = 200
REPLICATES = 4
WORKERS = 2
TOP_K = 5
REEVAL = 4 * REPLICATES
SEED = 0
TARGET_RATIO = 1.30
TARGET_RERUN = 0.10


# -- ours ----------------------------------------------------------------------------------------


def _ours(store: Path) -> tuple[float, Any]:
    """Wall seconds of ``modelops.calibrate`` into ``store``, and its handle."""
    import modelops

    t0 = time.perf_counter()
    cal = modelops.calibrate(
        MODEL,
        TARGETS,
        bundle=BUNDLE,
        store=store,
        fix=FIX,
        algorithm="tpe",
        budget=BUDGET,
        replicates=REPLICATES,
        workers=WORKERS,
        seed=SEED,
    )
    return time.perf_counter() - t0, cal


def _cli(store: Path) -> tuple[float, dict[str, Any]]:
    """Wall seconds of ``mops calibrate ... --json`` (a fresh process), and its JSON."""
    cmd = [str(MOPS), "calibrate", MODEL, "--targets", str(TARGETS), "--bundle", str(BUNDLE)]
    cmd += ["--store", str(store), "--algorithm", "tpe", "--budget", str(BUDGET)]
    cmd += ["--replicates", str(REPLICATES), "--workers", str(WORKERS), "--seed", str(SEED)]
    cmd += ["--json"]
    for name, value in FIX.items():
        cmd += ["--fix", f"{name}={value}"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"mops calibrate failed ({proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return wall, result


def _tasks_run(cal: Any) -> tuple[int, int]:
    """Tasks run and cached, from the finished calibration's ``calibration.json``."""
    record = json.loads((cal.directory / "calibration.json").read_text(encoding="utf-8"))
    return int(record["result"]["tasks_run"]), int(record["result"]["tasks_cached"])


def _snapshot(store: Path) -> dict[str, int]:
    """Every file of a store with its modification time (to tell whether a run wrote any)."""
    return {str(p): p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}


# -- theirs: the hand-written loop ---------------------------------------------------------------

_model: Any = None


def _sir_class(bundle: str) -> Any:
    """The example's model class, imported from its directory as the engine would."""
    import importlib

    if bundle not in sys.path:
        sys.path.insert(0, bundle)
    module_name, _, class_name = MODEL.partition(".")
    return getattr(importlib.import_module(module_name), class_name)


def _start_worker(bundle: str) -> None:
    """Pool initializer: import the model once per worker."""
    global _model
    _model = _sir_class(bundle)()


def _simulate(params: dict[str, Any], seed: int) -> np.ndarray:
    """One replicate: the daily new cases."""
    cases: np.ndarray = _model.simulate(params, seed)["incidence"]["new_cases"]
    return cases


@dataclass(frozen=True)
class _Loss:
    """The replicate-marginal Poisson NLL of the observed daily cases."""

    days: np.ndarray
    cases: np.ndarray
    log_factorial: np.ndarray

    @classmethod
    def load(cls) -> _Loss:
        from scipy.special import gammaln

        data = np.loadtxt(BUNDLE / "observed.csv", delimiter=",", skiprows=1)
        cases = data[:, 1].astype(np.float64)
        return cls(data[:, 0].astype(np.int64), cases, gammaln(cases + 1.0))

    def __call__(self, replicates: list[np.ndarray]) -> float:
        """``-log mean_r exp(-nll_r)``, ``nll_r`` the Poisson NLL of replicate ``r``."""
        from scipy.special import logsumexp

        nll = np.array(
            [
                np.sum(rate - self.cases * np.log(rate) + self.log_factorial)
                for rate in (np.maximum(r[self.days].astype(np.float64), 1e-12) for r in replicates)
            ]
        )
        return math.log(len(nll)) - float(logsumexp(-nll))


@dataclass
class _LoopResult:
    wall: float
    simulations: int
    losses: list[float]  # the search's, in ask order
    best: dict[str, Any]
    best_loss: float
    sampling: float  # seconds in study.ask and suggest_float (the TPE sampler)


def _tpe_settings() -> dict[str, Any]:
    """Our ``tpe`` algorithm's sampler settings, so the loop's sampler is the same."""
    from modelops.calibration._algorithms import make_algorithm
    from modelops.sampling import ParameterSpace

    space = ParameterSpace.from_model(_sir_class(str(BUNDLE))).with_fixed(FIX)
    algo = make_algorithm("tpe", space, seed=SEED, budget=BUDGET, batch=_batch())
    return algo.settings()


def _batch() -> int:
    from modelops.calibration import DEFAULT_BATCH

    return DEFAULT_BATCH


def _theirs(settings: dict[str, Any], loss: _Loss) -> _LoopResult:
    """The hand-written ask/tell loop over a process pool; results in memory only."""
    import optuna
    from optuna.samplers import TPESampler

    from modelops_contracts.params import make_param_id
    from modelops_contracts.seeds import replicate_seeds

    free = [p for p in _sir_class(str(BUNDLE)).parameters if p.name not in FIX]
    batch = _batch()
    t0 = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = TPESampler(seed=SEED, **settings)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    rows: list[tuple[float, int, str, dict[str, Any]]] = []  # loss, order asked, id, params
    simulations = 0
    with ProcessPoolExecutor(WORKERS, initializer=_start_worker, initargs=(str(BUNDLE),)) as pool:

        def run(points: list[dict[str, Any]], first: int, count: int) -> list[float]:
            nonlocal simulations
            futures = [
                [
                    pool.submit(_simulate, p, s)
                    for s in replicate_seeds(make_param_id(p), first + count)[first:]
                ]
                for p in points
            ]
            simulations += sum(len(f) for f in futures)
            return [loss([f.result() for f in fs]) for fs in futures]

        sampling = 0.0
        while len(rows) < BUDGET:
            asked = time.perf_counter()
            trials = [study.ask() for _ in range(min(batch, BUDGET - len(rows)))]
            points = [
                {p.name: t.suggest_float(p.name, p.lower, p.upper, log=p.log) for p in free} | FIX
                for t in trials
            ]
            sampling += time.perf_counter() - asked
            for trial, point, value in zip(trials, points, run(points, 0, REPLICATES), strict=True):
                study.tell(trial, value)
                rows.append((value, len(rows), make_param_id(point), point))
        top: dict[str, dict[str, Any]] = {}
        for _, _, pid, point in sorted(rows, key=lambda r: (r[0], r[1])):
            top.setdefault(pid, point)
            if len(top) == TOP_K:
                break
        candidates = list(top.values())
        again = run(candidates, REPLICATES, REEVAL)
    chosen = min(range(len(candidates)), key=lambda i: (again[i], i))
    wall = time.perf_counter() - t0
    losses = [r[0] for r in rows]
    return _LoopResult(wall, simulations, losses, candidates[chosen], again[chosen], sampling)


# -- the run -------------------------------------------------------------------------------------


def _verdict(ratio: float, target: float) -> str:
    return "met" if ratio <= target else "MISSED"


def _warm_imports() -> None:
    """Import what both sides use, so the first timed run of either does not pay for it."""
    import optuna  # noqa: F401
    import polars  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import scipy.special  # noqa: F401

    import modelops.analysis
    import modelops.calibration._run
    import modelops.engine
    import modelops.services
    import modelops.store  # noqa: F401


def _sim_cost() -> float:
    """Seconds of one SIR simulation in this process (median of 50)."""
    _start_worker(str(BUNDLE))
    params = {"beta": 0.3, "gamma": 0.1} | FIX
    times = []
    for seed in range(50):
        t0 = time.perf_counter()
        _simulate(params, seed)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _steps() -> list[tuple[str, Any, str]]:
    """(label, owner, attribute) of the ModelOps steps the timers wrap, nested by indent."""
    import modelops.analysis
    from modelops.analysis._targets import Target
    from modelops.calibration import _api
    from modelops.calibration._algorithms import Algorithm
    from modelops.calibration._journal import Journal
    from modelops.calibration._run import _Loop
    from modelops.engine._driver import Driver
    from modelops.engine._execute import Session
    from modelops.services.local import LocalSimulationService
    from modelops.store import ResultStore

    return [
        ("model check at start (_check_model)", _api, "_check_model"),
        ("session start (run lock, orphan sweep)", Session, "__enter__"),
        ("algorithm ask (Optuna TPE)", Algorithm, "ask"),
        ("algorithm tell", Algorithm, "tell"),
        ("evaluate (a round: compile, run, score)", _Loop, "evaluate"),
        ("  Session.run (the engine)", Session, "run"),
        ("    waiting for the worker pool to be up", LocalSimulationService, "start"),
        ("    Driver.prepare (ledger job, job.json)", Driver, "prepare"),
        ("    Driver.commit (shards, ledger)", Driver, "commit"),
        ("    Driver.finish (job state, summary)", Driver, "finish"),
        ("    ResultStore.write_job_file", ResultStore, "write_job_file"),
        ("  point_losses (scoring from the store)", modelops.analysis, "point_losses"),
        ("    Target.read_observed (CSV)", Target, "read_observed"),
        ("journal: write_evaluations (Parquet)", Journal, "write_evaluations"),
        ("journal: start / finish (JSON)", Journal, "start"),
        ("", Journal, "finish"),
    ]


def _timed_steps(work: Path) -> dict[str, tuple[float, int]]:
    """One run of ours with a wall-clock timer around each step: (seconds, calls) by label."""
    import functools

    totals: dict[str, list[float]] = {}
    saved: list[tuple[Any, str, Any]] = []
    label = ""
    for name, owner, attribute in _steps():
        label = name or label  # an empty label adds to the one above
        original = owner.__dict__[attribute]
        saved.append((owner, attribute, original))
        slot = totals.setdefault(label, [0.0, 0])

        def timer(*a: Any, _fn: Any = original, _slot: list[float] = slot, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                _slot[0] += time.perf_counter() - t0
                _slot[1] += 1

        setattr(owner, attribute, functools.wraps(original)(timer))
    try:
        wall, _ = _ours(work / "store-timers")
    finally:
        for owner, attribute, original in saved:
            setattr(owner, attribute, original)
    return {"calibrate (everything)": (wall, 1)} | {k: (v[0], int(v[1])) for k, v in totals.items()}


def _profile(work: Path, theirs: _LoopResult) -> None:
    """Where our time goes: one run with timers on the steps, one under cProfile."""
    print("\n-- where ours spends its time (one run, wall-clock timers around each step)")
    for label, (seconds, calls) in _timed_steps(work).items():
        print(f"  {label:<46} {seconds:6.2f} s  {calls:5d}x")
    print(f"  (theirs: {theirs.wall:.2f} s in all, of which {theirs.sampling:.2f} s in the "
          f"TPE sampler)")  # fmt: skip
    profiler = cProfile.Profile()
    cpu0 = time.process_time()
    profiler.enable()
    wall, _ = _ours(work / "store-profile")
    profiler.disable()
    cpu = time.process_time() - cpu0
    stats = pstats.Stats(profiler, stream=io.StringIO())
    entries: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    print(f"\n-- cProfile of ours (one run; the driver process only): wall {wall:.2f} s, "
          f"driver CPU {cpu:.2f} s")  # fmt: skip
    print("top ModelOps functions by cumulative time (seconds, calls):")
    cumulative = sorted(
        ((v[3], v[1], k) for k, v in entries.items() if _ours_file(k[0])), reverse=True
    )
    for seconds, calls, key in cumulative[:25]:
        print(f"  {seconds:6.2f}  {calls:6d}x  {_where(key)}")
    print("top functions anywhere by own time (seconds, calls):")
    own = sorted(((v[2], v[1], k) for k, v in entries.items()), reverse=True)
    for seconds, calls, key in own[:12]:
        print(f"  {seconds:6.2f}  {calls:6d}x  {_where(key)}")


def _ours_file(filename: str) -> bool:
    return f"{os.sep}modelops{os.sep}" in filename or "modelops_contracts" in filename


def _where(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    parts = Path(filename).parts
    for anchor in ("modelops", "modelops_contracts", "site-packages"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return f"{'/'.join(parts[i:])}:{line} {name}"
    return f"{filename}:{line} {name}" if line else name


def _bench(runs: int, profile: bool, work: Path) -> None:
    """Time both sides ``runs`` times each, alternating, and print the figures."""
    _warm_imports()
    settings = _tpe_settings()
    loss = _Loss.load()

    ours: list[float] = []
    cli: list[float] = []
    theirs: list[_LoopResult] = []
    first_cal: Any = None
    for i in range(runs):
        wall, cal = _ours(work / f"store-{i}")
        ours.append(wall)
        first_cal = first_cal or cal
        theirs.append(_theirs(settings, loss))
        cli.append(_cli(work / f"store-cli-{i}")[0])

    best_ours, best_theirs = min(ours), min(t.wall for t in theirs)
    ratio = best_ours / best_theirs
    label = f"best of {runs}" if runs > 1 else "one run"
    print(f"TPE on the SIR example: budget {BUDGET}, R = {REPLICATES}, batch {_batch()}, top "
          f"{TOP_K} re-run on {REEVAL} new replicates, {WORKERS} workers ({label})")  # fmt: skip
    print(f"sampler settings (both): TPESampler(seed={SEED}, "
          + ", ".join(f"{k}={v!r}" for k, v in settings.items()) + ")")  # fmt: skip
    walls = "  ".join(f"{w:.2f}" for w in ours)
    print(f"ours   modelops.calibrate (Python API)   {best_ours:6.2f} s   (runs: {walls})")
    walls = "  ".join(f"{t.wall:.2f}" for t in theirs)
    print(f"theirs Optuna ask/tell + process pool    {best_theirs:6.2f} s   (runs: {walls})")
    print(f"ratio ours / theirs: {ratio:.2f}  (target <= {TARGET_RATIO:.2f}: "
          f"{_verdict(ratio, TARGET_RATIO)})")  # fmt: skip
    walls = "  ".join(f"{w:.2f}" for w in cli)
    print(f"ours   mops calibrate (CLI, subprocess)  {min(cli):6.2f} s   (runs: {walls}); "
          f"{min(cli) / best_theirs:.2f}x theirs, not judged: it adds interpreter start "
          f"and imports, which the in-process loop does not pay")  # fmt: skip

    store = work / "store-0"
    before = _snapshot(store)
    again, _ = _ours(store)
    untouched = _snapshot(store) == before
    share = again / ours[0]
    print(f"re-run of the finished calibration (same store, same call): {again:.3f} s, "
          f"{share:.1%} of its first run {ours[0]:.2f} s, store untouched: "
          f"{'yes' if untouched else 'NO'}  (target <= {TARGET_RERUN:.0%}: "
          f"{_verdict(share, TARGET_RERUN) if untouched else 'MISSED'})")  # fmt: skip

    ran, cached = _tasks_run(first_cal)
    loop = theirs[0]
    print(f"simulations: ours {ran} run + {cached} cached (calibration.json result), "
          f"theirs {loop.simulations}")  # fmt: skip
    evaluations = first_cal.evaluations()
    same = evaluations["loss"].to_list() == loop.losses
    best = first_cal.best
    print(f"same points and losses as ours: {'yes' if same else 'NO'} "
          f"({len(loop.losses)} evaluations); answer ours beta={best['params']['beta']:.4f} "
          f"gamma={best['params']['gamma']:.4f} loss {best['loss']:.3f}, theirs "
          f"beta={loop.best['beta']:.4f} gamma={loop.best['gamma']:.4f} "
          f"loss {loop.best_loss:.3f}")  # fmt: skip
    sim = _sim_cost()
    count = loop.simulations
    print(f"one SIR simulation: {sim * 1e3:.2f} ms here; {count} of them: {sim * count:.2f} s "
          f"of CPU, {sim * count / WORKERS:.2f} s on {WORKERS} workers")  # fmt: skip
    if profile:
        _profile(work, min(theirs, key=lambda t: t.wall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run each, not best of 3")
    parser.add_argument("--profile", action="store_true", help="also profile one run of ours")
    args = parser.parse_args()
    work = tempdir()
    try:
        _bench(1 if args.quick else 3, args.profile, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
