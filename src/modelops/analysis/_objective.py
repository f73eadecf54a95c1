"""The calibration objective: each parameter set's loss over its replicates, with a standard error.

Two forms of a target's loss, and which one is used when:

- :func:`~modelops.analysis.score` (``mops score``) always uses the **plug-in** form: the loss of
  the observed data against the replicate mean, ``loss(y, E[sim])``. For a likelihood loss this is
  the likelihood of the data at the mean trajectory.
- :func:`point_losses`, the objective a calibration minimises, uses for a likelihood loss
  (:data:`~modelops.analysis.LIKELIHOOD_LOSSES`: ``poisson_nll``, ``binomial_nll``,
  ``negbin_nll``, ``gaussian_nll``) the **replicate-marginal** form

      loss = -log( (1/R) * sum_r exp(-nll_r) )

  where ``nll_r`` is the loss of replicate ``r`` alone: the Monte-Carlo estimate of the data's
  negative log-likelihood under the stochastic model, with the model's noise integrated over
  rather than averaged away. It is computed as a log-sum-exp, so it stays exact when every
  ``nll_r`` is in the thousands. Its standard error is the delta method's,
  ``sd(l) / (sqrt(R) * mean(l))`` over the replicates' likelihoods ``l_r`` (any common scale
  cancels). A replicate that has no value at some observed point has no ``nll_r`` and is left out
  of the marginal; if no replicate is complete the loss is null. Any other loss (``mse_of_mean``,
  ``mean_of_mse``, a user's ``module:function``) is the plug-in loss exactly as ``score`` computes
  it, with a jackknife (leave-one-replicate-out) standard error.

The weighted total's standard error is ``sqrt(sum_t w_t**2 * se_t**2)``: it treats the targets'
errors as independent, which they are not when the targets read the same replicates (it is a
guide to the noise, not an exact error). With fewer than two replicates, or when leaving out a
replicate leaves a point without a value, no error can be estimated and ``loss_se`` is null.

Rows come in the job's order of parameter sets, never sorted by loss, so a caller maps them back
to its points by ``param_id``. Simulated values are read in replicate order
(:func:`~modelops.analysis._score.target_matrices`), so the same results give bit-identical
losses however many workers wrote them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelops.analysis._losses import LIKELIHOOD_LOSSES, LossFunction, resolve_loss
from modelops.analysis._score import ReplicateMatrix, call_loss, target_matrices
from modelops.store import read_job, resolve_job
from modelops_contracts import ContractViolationError, bounded_repr

if TYPE_CHECKING:
    import polars as pl

    from modelops.analysis._targets import Target
    from modelops.store import JobLike, ResultStore
    from modelops_contracts import SimJob

__all__ = ["jackknife_se", "marginal_nll", "point_losses"]


@dataclass(frozen=True)
class _Estimate:
    """One parameter set's loss against one target, and its standard error."""

    loss: float | None  # None: a point is missing, or no replicate is complete
    se: float | None  # None: not estimable (fewer than two replicates)
    replicates: int  # replicates with a value for some observed point


def point_losses(
    job: JobLike | str,
    targets: Sequence[Target],
    *,
    store: ResultStore | Path | str | None = None,
    first_replicate: int = 0,
    sim_job: SimJob | None = None,
) -> pl.DataFrame:
    """The calibration objective of every parameter set of ``job``, in the job's order of sets.

    Columns: ``param_id``, ``loss_<target>`` per target, ``loss`` (the weighted total, null as
    in :func:`~modelops.analysis.score` when a target's loss is), ``loss_se`` (its standard
    error, null when not estimable), ``n_replicates`` and ``failed`` (as in ``score``). See the
    module docstring for the forms used. Replicates whose index is below ``first_replicate``
    are left out. ``sim_job``, the job already in hand, saves reading the job file again.

    Raises:
        ContractViolationError: no targets, a target named ``se`` (its column would be
            ``loss_se``), a bad ``first_replicate``, a ``sim_job`` of another job, or what
            ``score`` raises for a target.
        StoreError: unknown job, the job has no results for a target's output, or a shard
            cannot be read.
    """
    import polars as pl

    if not targets:
        raise ContractViolationError("the objective needs at least one target")
    if any(t.name == "se" for t in targets):
        raise ContractViolationError("a target cannot be named 'se': loss_se is the total's error")
    is_int = isinstance(first_replicate, int) and not isinstance(first_replicate, bool)
    if not is_int or first_replicate < 0:
        raise ContractViolationError(
            f"first_replicate must be an int >= 0, got {bounded_repr(first_replicate)}"
        )
    result_store, job_id = resolve_job(job, store)
    if sim_job is None:
        sim_job = read_job(result_store, job_id)
    elif sim_job.job_id != job_id:
        raise ContractViolationError(f"sim_job is job {sim_job.job_id}, not {job_id}")
    counts = sim_job.replicate_counts()
    param_ids = list(counts)
    failed_sets = {
        f.param_id for f in result_store.ledger.failures(job_id) if f.replicate >= first_replicate
    }
    estimates = [
        _target_estimates(result_store, job_id, t, param_ids, first_replicate) for t in targets
    ]
    weights = [t.weight for t in targets]
    columns: dict[str, Sequence[object]] = {"param_id": param_ids}
    for target, by_set in zip(targets, estimates, strict=True):
        columns[f"loss_{target.name}"] = [by_set[pid].loss for pid in param_ids]
    totals, errors, replicates, failed = [], [], [], []
    for pid in param_ids:
        parts = [by_set[pid] for by_set in estimates]
        total, error = _total(parts, weights)
        n = max(part.replicates for part in parts)
        totals.append(total)
        errors.append(error)
        replicates.append(n)
        failed.append(pid in failed_sets or n < max(counts[pid] - first_replicate, 0))
    columns |= {"loss": totals, "loss_se": errors, "n_replicates": replicates, "failed": failed}
    schema = {name: pl.String if name == "param_id" else pl.Float64 for name in columns} | {
        "n_replicates": pl.Int64,
        "failed": pl.Boolean,
    }
    return pl.DataFrame(columns, schema=schema)


def _total(
    parts: Sequence[_Estimate], weights: Sequence[float]
) -> tuple[float | None, float | None]:
    """The weighted total and its standard error (independent targets), or None for either."""
    losses = [part.loss for part in parts]
    if any(loss is None or math.isnan(loss) for loss in losses):
        return None, None
    total = sum(w * float(loss or 0.0) for w, loss in zip(weights, losses, strict=True))
    ses = [part.se for part in parts]
    if any(se is None for se in ses):
        return total, None
    return total, math.sqrt(
        sum((w * float(se or 0.0)) ** 2 for w, se in zip(weights, ses, strict=True))
    )


def _target_estimates(
    store: ResultStore, job_id: str, target: Target, param_ids: list[str], first_replicate: int
) -> dict[str, _Estimate]:
    """Each parameter set's :class:`_Estimate` against one target."""
    fn = resolve_loss(target.loss)
    estimate = _marginal if target.loss in LIKELIHOOD_LOSSES else _plug_in
    matrices = target_matrices(store, job_id, target, param_ids, first_replicate=first_replicate)
    result = {}
    for pid, matrix in matrices.items():
        if matrix.missing:
            result[pid] = _Estimate(None, None, len(matrix.replicates))
        else:
            result[pid] = estimate(fn, matrix, target)
    return result


def _marginal(fn: LossFunction, matrix: ReplicateMatrix, target: Target) -> _Estimate:
    """The replicate-marginal negative log-likelihood over the complete replicates."""
    simulated = matrix.simulated
    complete = simulated[~np.isnan(simulated).any(axis=1)]
    nll = np.array(
        [
            call_loss(fn, [matrix.observed, row[np.newaxis, :], *matrix.arguments], target)
            for row in complete
        ]
    )
    loss, se = marginal_nll(nll)
    return _Estimate(loss, se, len(matrix.replicates))


def marginal_nll(nll: np.ndarray) -> tuple[float | None, float | None]:
    """``-log(mean(exp(-nll)))`` and its delta-method standard error; (None, None) if empty.

    The error is None for fewer than two values, or when the loss is not finite.
    """
    count = len(nll)
    if not count:
        return None, None
    # log(sum(exp(-nll))) shifted by its largest term; scipy's logsumexp does the same with
    # ten times the overhead, paid for every parameter set of every round of a calibration
    top = float(np.max(-nll))
    log_total = top + math.log(float(np.sum(np.exp(-nll - top)))) if math.isfinite(top) else top
    loss = math.log(count) - log_total
    if count < 2 or not math.isfinite(loss):
        return loss, None
    likelihoods = np.exp(-nll - log_total)  # each replicate's share: mean 1 / count
    se = float(np.std(likelihoods, ddof=1) / (math.sqrt(count) * np.mean(likelihoods)))
    return loss, se


def _plug_in(fn: LossFunction, matrix: ReplicateMatrix, target: Target) -> _Estimate:
    """The loss as ``score`` computes it, with its jackknife standard error."""
    observed, simulated, arguments = matrix.observed, matrix.simulated, matrix.arguments
    loss = call_loss(fn, [observed, simulated, *arguments], target)
    count = len(simulated)
    if count < 2:
        return _Estimate(loss, None, count)
    left_out = np.array(
        [
            call_loss(fn, [observed, np.delete(simulated, r, axis=0), *arguments], target)
            for r in range(count)
        ]
    )
    return _Estimate(loss, jackknife_se(left_out), count)


def jackknife_se(left_out: np.ndarray) -> float | None:
    """The jackknife standard error from the leave-one-out values; None if one is not finite."""
    if not np.all(np.isfinite(left_out)):
        return None
    count = len(left_out)
    spread = float(np.sum((left_out - left_out.mean()) ** 2))
    return math.sqrt((count - 1) / count * spread)
