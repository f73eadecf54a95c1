"""Scoring: each parameter set's loss against every target, and their weighted total.

The loss table has one row per ``param_id``: the parameter values, ``loss_<target>`` per
target, ``loss`` (the weighted total), ``missing_points``, ``n_replicates`` (replicates with
results), ``n_tasks`` (replicates the job asked for) and ``failed`` (true when a replicate
failed or has no results: the losses then cover fewer replicates and should not be trusted
as-is). It is sorted best (lowest total) first and written to ``<job dir>/scores.parquet``,
with the targets used in ``scores_targets.json`` beside it.

Each loss sees all of a set's replicates at once, so a likelihood loss here is the plug-in
form: the likelihood of the data at the replicate mean. The calibration objective,
:func:`~modelops.analysis.point_losses`, uses the replicate-marginal likelihood instead; its
module docstring says which form is used when.

Missing points. ``missing_points`` counts, over all targets, the observed points for which no
replicate of the set has a simulated value. A set with a missing point for a target gets a
null loss for that target and a null total, so it sorts after every fully scored set: a loss
over fewer points is not comparable (a sum such as ``poisson_nll`` would even come out
lower). A point that only some replicates simulated still counts: the loss sees NaN in the
other replicates, and the built-in losses use the replicates that have a value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelops._output import write_output
from modelops.analysis._aggregate import reading_results
from modelops.analysis._losses import LossFunction, resolve_loss
from modelops.analysis._targets import Target, observed_numbers, targets_from_dicts
from modelops.store import read_job, resolve_job
from modelops_contracts import ContractViolationError

if TYPE_CHECKING:
    import polars as pl

    from modelops.store import JobLike, ResultStore

__all__ = [
    "SCORES_FILE",
    "TARGETS_FILE",
    "ReplicateMatrix",
    "call_loss",
    "load_scored_targets",
    "load_scores",
    "observed_numbers",
    "scan_target",
    "score",
    "target_matrices",
]

SCORES_FILE = "scores.parquet"
TARGETS_FILE = "scores_targets.json"


@dataclass(frozen=True)
class _SetScore:
    """One parameter set against one target."""

    loss: float | None  # None when a point is missing
    replicates: int  # replicates with a value for some observed point
    missing: int  # observed points no replicate simulated


def score(
    job: JobLike | str,
    targets: Sequence[Target],
    *,
    store: ResultStore | Path | str | None = None,
    write: bool = True,
) -> pl.DataFrame:
    """Score every parameter set of ``job`` against ``targets``; the loss table, best first.

    Sets with missing points (see the module docstring) get a null loss and sort last.

    Raises:
        ContractViolationError: no targets, a target's column is missing, an observed value
            is not a number, or a user loss raises or does not return a number.
        StoreError: unknown job, the job has no results for a target's output, or a shard
            cannot be read.
    """
    import polars as pl

    if not targets:
        raise ContractViolationError("scoring needs at least one target")
    result_store, job_id = resolve_job(job, store)
    sim_job = read_job(result_store, job_id)
    sets = sim_job.parameter_sets()
    tasks = sim_job.replicate_counts()
    names = sim_job.parameter_names()
    failed_sets = {f.param_id for f in result_store.ledger.failures(job_id)}
    scores = [_target_scores(result_store, job_id, t, sets) for t in targets]
    rows = []
    for pid, params in sets.items():
        parts = [by_set[pid] for by_set in scores]
        losses = [part.loss for part in parts]
        total: float | None = None
        if all(loss is not None and not np.isnan(loss) for loss in losses):
            total = sum(t.weight * float(v or 0.0) for t, v in zip(targets, losses, strict=True))
        n = max(part.replicates for part in parts)
        rows.append(
            {
                "param_id": pid,
                **{name: params.params.get(name) for name in names},
                **{f"loss_{t.name}": v for t, v in zip(targets, losses, strict=True)},
                "loss": total,
                "missing_points": sum(part.missing for part in parts),
                "n_replicates": n,
                "n_tasks": tasks[pid],
                "failed": pid in failed_sets or n < tasks[pid],
            }
        )
    table = pl.DataFrame(rows, infer_schema_length=None).sort(["loss", "param_id"], nulls_last=True)
    if write:
        directory = result_store.job_dir(job_id)
        write_output(directory / SCORES_FILE, table.write_parquet)
        text = json.dumps([t.to_dict() for t in targets], indent=2)
        write_output(directory / TARGETS_FILE, lambda path: path.write_text(text, encoding="utf-8"))
    return table


def load_scores(store: ResultStore, job_id: str) -> pl.DataFrame | None:
    """The loss table last written by :func:`score` for the job, or None."""
    import polars as pl

    path = store.job_dir(job_id) / SCORES_FILE
    return pl.read_parquet(path) if path.exists() else None


def load_scored_targets(store: ResultStore, job_id: str) -> list[Target]:
    """The targets the job was last scored against, else those its study declared, else []."""
    path = store.job_dir(job_id) / TARGETS_FILE
    if path.exists():
        return targets_from_dicts(json.loads(path.read_text(encoding="utf-8")))
    spec = read_job(store, job_id).target_spec or {}
    declared = spec.get("targets") or []
    return targets_from_dicts(declared, base=Path(spec.get("base", ".")))


@dataclass(frozen=True)
class ReplicateMatrix:
    """One parameter set's simulated values at a target's observed points, by replicate.

    ``simulated`` has one row per replicate that has a value at some observed point, in
    ascending replicate index (``replicates``), never in the order the rows were stored, so the
    same results give the same matrix, bit for bit, however many workers wrote them. It is NaN
    where a replicate has no value for a point. ``arguments`` are what the loss takes after
    ``(observed, simulated)`` (:meth:`Target.loss_arguments`).
    """

    observed: np.ndarray  # (points,)
    simulated: np.ndarray  # (replicates, points)
    replicates: np.ndarray  # (replicates,) int64
    trials: np.ndarray | None  # (points,), when the target names a trials column
    arguments: tuple[Any, ...]

    @property
    def missing(self) -> int:
        """Observed points no replicate simulated."""
        return int(np.all(np.isnan(self.simulated), axis=0).sum())


def target_matrices(
    store: ResultStore,
    job_id: str,
    target: Target,
    param_ids: Iterable[str],
    *,
    first_replicate: int = 0,
) -> dict[str, ReplicateMatrix]:
    """Each parameter set's :class:`ReplicateMatrix` for one target, for every id of ``param_ids``.

    A set with no results at the observed points gets a matrix of no rows. Replicates whose
    index is below ``first_replicate`` are left out (a re-evaluation on new replicates of a
    job that also holds the earlier ones).

    Raises:
        ContractViolationError: the output lacks a target column, or an observed value (or
            trials value) is not a number.
        StoreError: the job has no results for the target's output, or a shard cannot be read.
    """
    import polars as pl

    observed = target.read_observed().with_row_index("_point")
    lazy, schema = scan_target(store, job_id, target)
    y = observed_numbers(observed, target.observed, target)
    trials = observed_numbers(observed, target.trials, target) if target.trials else None
    arguments = target.loss_arguments(observed)
    keys = observed.select([*target.on, "_point"]).lazy()
    keys = keys.with_columns([pl.col(c).cast(schema[c]) for c in target.on])
    columns = [
        "param_id",
        "task_id",
        "replicate",
        *target.on,
        pl.col(target.value).cast(pl.Float64),
    ]
    rows = lazy.select(columns)
    if first_replicate:
        rows = rows.filter(pl.col("replicate") >= first_replicate)
    if target.on:
        rows = rows.join(keys, on=list(target.on), how="inner")
    else:  # a scalar target: one observed row against every simulated row
        rows = rows.join(keys, how="cross")
    # a set's matrix rows are its tasks in replicate order (ties, never within one job, by task
    # id), whatever order the rows were stored in: one sorted read, then numpy
    with reading_results(job_id, target.output):
        frame = (
            rows.select(["param_id", "replicate", "task_id", "_point", target.value])
            .sort(["param_id", "replicate", "task_id", "_point"])
            .collect()
        )
    empty = np.full((0, len(y)), np.nan)
    result = {
        pid: ReplicateMatrix(y, empty, np.zeros(0, np.int64), trials, arguments)
        for pid in param_ids
    }
    count = frame.height
    if not count:
        return result
    pids = frame["param_id"].to_numpy()
    tasks = frame["task_id"].to_numpy()
    replicate = frame["replicate"].to_numpy()
    points = frame["_point"].to_numpy()
    values = frame[target.value].to_numpy()
    new_set = np.ones(count, dtype=bool)
    new_set[1:] = pids[1:] != pids[:-1]
    new_task = new_set.copy()
    new_task[1:] |= tasks[1:] != tasks[:-1]
    task_number = np.cumsum(new_task) - 1  # of each row, counted over the whole frame
    starts = np.flatnonzero(new_set)
    for start, end in zip(starts, [*starts[1:], count], strict=True):
        rows_of = task_number[start:end] - task_number[start]
        matrix = np.full((int(rows_of[-1]) + 1, len(y)), np.nan)
        matrix[rows_of, points[start:end]] = values[start:end]
        indices = replicate[start:end][new_task[start:end]]
        result[str(pids[start])] = ReplicateMatrix(y, matrix, indices, trials, arguments)
    return result


def _target_scores(
    store: ResultStore, job_id: str, target: Target, param_ids: Iterable[str]
) -> dict[str, _SetScore]:
    """Each parameter set's score against one target (every id in ``param_ids`` present)."""
    fn = resolve_loss(target.loss)
    result: dict[str, _SetScore] = {}
    for pid, m in target_matrices(store, job_id, target, param_ids).items():
        replicates, gaps = len(m.replicates), m.missing
        if gaps:
            result[pid] = _SetScore(loss=None, replicates=replicates, missing=gaps)
        else:
            loss = call_loss(fn, [m.observed, m.simulated, *m.arguments], target)
            result[pid] = _SetScore(loss, replicates, 0)
    return result


def call_loss(fn: LossFunction, args: Sequence[Any], target: Target) -> float:
    """Call a loss; whatever a user loss raises, or a non-number it returns, is a user error.

    Raises:
        ContractViolationError: the loss raised, or did not return a number.
    """
    try:
        value = fn(*args)
    except Exception as exc:  # a user loss is user code: any failure is theirs to fix
        detail = " ".join(str(exc).split())[:200]
        raise ContractViolationError(
            f"target {target.name!r}: loss {target.loss!r} raised {type(exc).__name__}"
            + (f": {detail}" if detail else "")
        ) from exc
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ContractViolationError(
            f"target {target.name!r}: loss {target.loss!r} returned {str(value)[:80]!r}, "
            "not a number"
        ) from None


def scan_target(store: ResultStore, job_id: str, target: Target) -> tuple[pl.LazyFrame, pl.Schema]:
    """The rows of the target's output and their schema, which must have its columns.

    Raises:
        ContractViolationError: the output lacks a column the target names.
        StoreError: the job has no results for the output, or a shard cannot be read.
    """
    lazy = store.scan_results(job_id, target.output)
    with reading_results(job_id, target.output):
        schema = lazy.collect_schema()
    missing = [c for c in (*target.on, target.value) if c not in schema]
    if missing:
        raise ContractViolationError(
            f"target {target.name!r}: output {target.output!r} has no column(s) "
            f"{', '.join(missing)}"
        )
    return lazy, schema
