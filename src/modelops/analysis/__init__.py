"""Reading a job's results: replicate aggregation, targets and losses, plots and a report.

- :func:`aggregate` summarises an output over replicates per parameter set.
- :class:`Target` and :func:`load_targets` declare observed data; :func:`score` ranks the
  parameter sets by their weighted loss against the targets; :func:`point_losses` is the
  calibration objective (replicate-marginal likelihoods, with standard errors).
- :func:`plot_output`, :func:`plot_loss` draw PNG files (:func:`draw_output`, :func:`draw_loss`
  the same figures unsaved); :func:`write_report` one HTML page.

Jobs are read through the contracts (:func:`modelops.store.read_job` gives the
:class:`~modelops_contracts.SimJob`), whatever encoding the job file uses.
"""

from __future__ import annotations

from modelops.analysis._aggregate import DEFAULT_QUANTILES, aggregate
from modelops.analysis._losses import (
    BUILTIN_LOSSES,
    LIKELIHOOD_LOSSES,
    binomial_nll,
    gaussian_nll,
    mean_of_mse,
    mse_of_mean,
    negbin_nll,
    poisson_nll,
    resolve_loss,
)
from modelops.analysis._objective import point_losses
from modelops.analysis._plots import draw_loss, draw_output, plot_loss, plot_output
from modelops.analysis._report import write_report
from modelops.analysis._score import load_scores, score
from modelops.analysis._targets import Target, load_targets, targets_from_dicts

__all__ = [
    "BUILTIN_LOSSES",
    "DEFAULT_QUANTILES",
    "LIKELIHOOD_LOSSES",
    "Target",
    "aggregate",
    "binomial_nll",
    "draw_loss",
    "draw_output",
    "gaussian_nll",
    "load_scores",
    "load_targets",
    "mean_of_mse",
    "mse_of_mean",
    "negbin_nll",
    "plot_loss",
    "plot_output",
    "point_losses",
    "poisson_nll",
    "resolve_loss",
    "score",
    "targets_from_dicts",
    "write_report",
]
