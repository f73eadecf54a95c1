"""The calibration loop: ask points, run them as ordinary tasks, score, tell, journal.

Each round asks the algorithm for up to ``batch`` points; the points × R replicates compile
to an ordinary job that the engine runs on one backend kept up for the whole calibration, so
every simulation is cached in the store like any other. The round's losses
(:func:`modelops.analysis.point_losses`) are journaled, then told to the algorithm, in a fixed
order: the result never depends on the number of workers or the backend. A re-run replays the
journal through a fresh algorithm (checking that it asks the same points) and goes on from the
first round not journaled; the tasks of a round that was cut short are cached, so nothing runs
twice. At the end the best ``top_k`` points are run again on ``reeval_replicates`` new
replicates each (new replicate indices, so new seeds) and the answer is the best of those
re-evaluated means: the best raw evaluation is biased low (it is partly the luckiest noise),
the re-evaluation is not.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelops.calibration._journal import Evaluation, Journal
from modelops.calibration._spec import CalibrationSpec
from modelops_contracts import SimulationStudy
from modelops_contracts.errors import ModelError, ModelOpsError, StoreError
from modelops_contracts.params import make_param_id
from modelops_contracts.study import DuplicateParameterSetWarning

if TYPE_CHECKING:
    from modelops.calibration._algorithms import Algorithm, Point
    from modelops.engine import Progress, RunOptions, Session
    from modelops.sampling import ParameterSpace
    from modelops.store import ResultStore

__all__ = ["CalibrationProgress", "run_calibration"]

_PREDICTIVE_DRAWS = 20  # posterior particles an ABC calibration's predictive check runs


@dataclass
class CalibrationProgress:
    """Where a calibration is: what ``mops calibrate`` shows live."""

    phase: str  # "search", "re-evaluate", "predictive" or "done"
    generation: int
    evaluations: int
    budget: int
    best_loss: float | None  # best loss of the search so far (not re-evaluated)
    tasks_run: int = 0
    tasks_cached: int = 0
    elapsed: float = 0.0
    job: Progress | None = None  # the running round's own progress


@dataclass
class _Round:
    """The points of one round and the job that ran them."""

    rows: list[Evaluation]
    job_id: str


@dataclass
class _Loop:
    spec: CalibrationSpec
    algorithm: Algorithm
    journal: Journal
    session: Session
    options: RunOptions | None
    on_progress: Callable[[CalibrationProgress], None] | None
    rows: list[Evaluation] = field(default_factory=list)
    generation: int = 0
    populations_written: int = 0
    started: float = field(default_factory=time.monotonic)
    progress: CalibrationProgress = field(init=False)

    def __post_init__(self) -> None:
        self.progress = CalibrationProgress("search", 0, 0, self.spec.budget, None)

    @property
    def space(self) -> ParameterSpace:
        return self.spec.space

    @property
    def store(self) -> ResultStore:
        return self.session.store

    # -- the search ------------------------------------------------------------------------

    def replay(self) -> None:
        """Tell the algorithm every journaled round again, checking it asks the same points.

        Raises:
            StoreError: the algorithm asks other points than the journal holds (its library
                changed since the journal was written).
        """
        rounds: dict[int, list[Evaluation]] = {}
        for row in self.journal.evaluations(self._names()):
            rounds.setdefault(row.generation, []).append(row)
        for generation in sorted(rounds):
            rows = rounds[generation]
            points = self.algorithm.ask(len(rows))
            asked = [make_param_id(self._full(p)) for p in points]
            if asked != [r.param_id for r in rows]:
                raise StoreError(
                    f"calibration {self.journal.calibration_id}: round {generation} of its "
                    "journal is not what the algorithm asks now (did optuna, scipy or numpy "
                    "change version?)",
                    hint=f"delete {self.journal.directory} to start it again",
                )
            self.algorithm.tell(points, [r.loss for r in rows])
            self.rows.extend(rows)
            self.generation = generation + 1
        self.populations_written = self.journal.populations_written()
        self._journal_populations()  # killed between the evaluations and the populations
        self._note_best()

    def search(self) -> None:
        """Rounds of ask, run, score, journal, tell until the budget is spent."""
        spec = self.spec
        while len(self.rows) < spec.budget and not self.algorithm.finished():
            n = min(spec.batch, spec.budget - len(self.rows))
            points = self.algorithm.ask(n)
            done = self.evaluate([self._full(p) for p in points], self.generation, phase="search")
            self.journal.start(spec)
            self.rows.extend(done.rows)
            self.journal.write_evaluations(self.rows, self._names())
            self.algorithm.tell(points, [r.loss for r in done.rows])
            self._journal_populations()
            self.generation += 1
            self._note_best()
            self._report()

    def evaluate(
        self,
        points: Sequence[dict[str, int | float]],
        generation: int,
        *,
        phase: str,
        replicates: int | None = None,
        first_replicate: int = 0,
    ) -> _Round:
        """Run ``points`` × replicates as one job and score each point.

        Replicates ``first_replicate`` up to ``replicates`` (default: the spec's R) are scored.

        Raises:
            ModelOpsError: the round's job was cancelled.
        """
        from modelops.analysis import point_losses

        spec = self.spec
        pids = [make_param_id(p) for p in points]  # each point hashed once
        by_pid = dict(zip(pids, points, strict=True))
        distinct = list(by_pid.values())
        study = SimulationStudy(
            model=spec.model,
            scenario=spec.scenario,
            parameter_sets=distinct,
            sampling_method="calibration",
            n_replicates=replicates or spec.replicates,
            outputs=list(spec.outputs),
            config=dict(spec.config) if spec.config else None,
            targets=[t.to_dict() for t in spec.targets],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DuplicateParameterSetWarning)
            job = study.to_simjob(spec.bundle_ref)
        self.progress.phase = phase

        def report(job_progress: Progress) -> None:
            self.progress.job = job_progress
            self._report()

        summary = self.session.run(job, options=self.options, on_progress=report)
        ran = self.progress.job  # the run's last snapshot: what this run did, not the job
        if ran is not None:
            self.progress.tasks_run += ran.succeeded + ran.failed + ran.timed_out
            self.progress.tasks_cached += ran.cached
        self.progress.job = None
        if summary.state == "cancelled":
            raise ModelOpsError(
                f"job {job.job_id} of calibration {self.journal.calibration_id} was cancelled",
                hint="run the same command again to resume the calibration",
            )
        produced = self.store.output_counts(job.job_id)
        if any(t.output not in produced for t in spec.targets):  # no task of the round ran
            scored = {
                pid: {"loss": None, "loss_se": None, "n_replicates": 0, "failed": True}
                for pid in by_pid
            }
        else:
            table = point_losses(
                job.job_id,
                list(spec.targets),
                store=self.store,
                first_replicate=first_replicate,
                sim_job=job,
            )
            scored = {row["param_id"]: row for row in table.iter_rows(named=True)}
        rows = []
        for index, (pid, params) in enumerate(zip(pids, points, strict=True)):
            row = scored[pid]
            loss = None if row["failed"] else _finite(row["loss"])
            rows.append(
                Evaluation(
                    generation=generation,
                    point=index,
                    param_id=pid,
                    params=params,
                    loss=loss,
                    loss_se=_finite(row["loss_se"]) if loss is not None else None,
                    n_replicates=int(row["n_replicates"] or 0),
                    job_id=job.job_id,
                )
            )
        return _Round(rows, job.job_id)

    # -- the answer ------------------------------------------------------------------------

    def reevaluate(self) -> tuple[dict[str, Any], str]:
        """Re-run the best ``top_k`` points on new replicates; ``best.json`` and its job id.

        Raises:
            ModelError: no evaluation of the search has a loss.
        """
        spec = self.spec
        ranked = sorted(
            (r for r in self.rows if r.loss is not None),
            key=lambda r: (r.loss, r.generation, r.point),
        )
        top: dict[str, Evaluation] = {}
        for row in ranked:
            top.setdefault(row.param_id, row)
            if len(top) == spec.top_k:
                break
        if not top:
            raise ModelError(
                f"no point of calibration {self.journal.calibration_id} could be scored: "
                "every evaluation failed or missed observed points",
                hint="`mops status` and `mops failures` of its jobs tell why",
            )
        candidates = list(top.values())
        done = self.evaluate(
            [dict(c.params) for c in candidates],
            -1,
            phase="re-evaluate",
            replicates=spec.replicates + spec.reeval_replicates,
            first_replicate=spec.replicates,
        )
        order = sorted(
            range(len(candidates)),
            key=lambda i: (done.rows[i].loss is None, done.rows[i].loss or 0.0, i),
        )
        listed = [
            {
                "param_id": c.param_id,
                "params": dict(c.params),
                "loss": r.loss,
                "loss_se": r.loss_se,
                "n_replicates": r.n_replicates,
                "search_loss": c.loss,
                "search_loss_se": c.loss_se,
                "generation": c.generation,
                "point": c.point,
            }
            for c, r in zip(candidates, done.rows, strict=True)
        ]
        chosen = listed[order[0]]
        if chosen["loss"] is None:
            raise ModelError(
                f"calibration {self.journal.calibration_id}: no re-evaluated point has a loss",
                hint=f"`mops failures {done.job_id}` tells why",
            )
        best = {
            "calibration_id": self.journal.calibration_id,
            **chosen,
            "job_id": done.job_id,
            "replicates": [spec.replicates, spec.replicates + spec.reeval_replicates],
            "candidates": [listed[i] for i in order],
        }
        return best, done.job_id

    def predictive(self) -> str | None:
        """For ABC-SMC, run posterior draws × R as an ordinary job; its id (None otherwise)."""
        posterior = getattr(self.algorithm, "posterior", None)
        population = posterior() if callable(posterior) else None
        if population is None:
            return None
        import numpy as np

        rng = np.random.Generator(np.random.PCG64([self.spec.seed, 1]))
        weights = np.asarray(population.weights, dtype=np.float64)
        count = min(_PREDICTIVE_DRAWS, len(population.points))
        picks = rng.choice(len(population.points), size=count, replace=False, p=weights)
        points = [self._full(population.points[int(i)]) for i in sorted(picks)]
        return self.evaluate(points, -2, phase="predictive").job_id

    # -- helpers ---------------------------------------------------------------------------

    def _full(self, point: Point) -> dict[str, int | float]:
        """A point of the free parameters with the fixed values added."""
        return self.space.point([point[name] for name in self.space.names])

    def _names(self) -> list[str]:
        return [*self.space.names, *self.space.fixed]

    def _journal_populations(self) -> None:
        populations = getattr(self.algorithm, "populations", None)
        if not callable(populations):
            return
        complete = populations()
        if len(complete) > self.populations_written:
            self.journal.write_populations(complete, self.space.names)
            self.populations_written = len(complete)

    def _note_best(self) -> None:
        losses = [r.loss for r in self.rows if r.loss is not None]
        self.progress.best_loss = min(losses) if losses else None
        self.progress.generation = self.generation
        self.progress.evaluations = len(self.rows)

    def _report(self) -> None:
        if self.on_progress is not None:
            self.progress.elapsed = time.monotonic() - self.started
            self.on_progress(self.progress)


def run_calibration(
    spec: CalibrationSpec,
    algorithm: Algorithm,
    journal: Journal,
    session: Session,
    *,
    options: RunOptions | None = None,
    on_progress: Callable[[CalibrationProgress], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the calibration of ``spec`` inside ``session``; its result record."""
    loop = _Loop(spec, algorithm, journal, session, options, on_progress)
    loop.replay()
    loop.search()
    journal.start(spec)
    best, reeval_job = loop.reevaluate()
    predictive_job = loop.predictive() or reeval_job
    result = {
        "evaluations": len(loop.rows),
        "failed_points": sum(r.loss is None for r in loop.rows),
        "generations": loop.generation,
        "reeval_job_id": reeval_job,
        "predictive_job_id": predictive_job,
        "tasks_run": loop.progress.tasks_run,
        "tasks_cached": loop.progress.tasks_cached,
    }
    journal.finish(best, result)
    loop.progress.phase = "done"
    loop._report()
    return result


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)
