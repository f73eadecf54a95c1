"""Losses: how far a parameter set's simulated replicates are from observed data.

A loss is a function ``f(observed, simulated) -> float`` over numpy arrays: ``observed`` holds
one value per observed point (shape ``(points,)``) and ``simulated`` one row per replicate
(shape ``(replicates, points)``; NaN where a replicate has no value for a point). Three
built-in losses take a third argument from their target: ``trials`` (shape ``(points,)``) for
``binomial_nll``, the ``dispersion`` for ``negbin_nll`` and ``sigma`` for ``gaussian_nll``.
A user loss is named by import path, ``package.module:function`` or ``package.module.function``.

The negative log-likelihoods (:data:`LIKELIHOOD_LOSSES`) keep their normalizing constants, so
their values are true ``-log p(y)`` and can be compared across losses and averaged as
likelihoods (the calibration objective does, see :mod:`modelops.analysis._objective`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from modelops_contracts import ContractViolationError

__all__ = [
    "BUILTIN_LOSSES",
    "LIKELIHOOD_LOSSES",
    "LossFunction",
    "binomial_nll",
    "gaussian_nll",
    "mean_of_mse",
    "mse_of_mean",
    "negbin_nll",
    "poisson_nll",
    "resolve_loss",
]

LossFunction = Callable[..., float]

_EPS = 1e-12


def _mean(simulated: np.ndarray) -> np.ndarray:
    """Mean over replicates per point, ignoring missing replicate values."""
    counts = np.sum(~np.isnan(simulated), axis=0)
    totals = np.nansum(simulated, axis=0)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def mse_of_mean(observed: np.ndarray, simulated: np.ndarray) -> float:
    """Mean over points of ``(y - E[sim])**2``: the error of the replicate mean."""
    return float(np.mean((observed - _mean(simulated)) ** 2))


def mean_of_mse(observed: np.ndarray, simulated: np.ndarray) -> float:
    """Mean over replicates and points of ``(y - sim)**2`` (missing values skipped)."""
    errors = (simulated - observed[np.newaxis, :]) ** 2
    return float(np.sum(np.nan_to_num(errors)) / max(int(np.sum(~np.isnan(errors))), 1))


def poisson_nll(observed: np.ndarray, simulated: np.ndarray) -> float:
    """Poisson negative log-likelihood of the counts ``y`` with rate ``E[sim]`` (floored at 1e-12).

    ``sum(rate - y * log(rate) + lgamma(y + 1))`` over points.
    """
    from scipy.special import gammaln  # scipy is slow to import: only when this loss runs

    rate = np.maximum(_mean(simulated), _EPS)
    return float(np.sum(rate - observed * np.log(rate) + gammaln(observed + 1.0)))


def binomial_nll(observed: np.ndarray, simulated: np.ndarray, trials: np.ndarray) -> float:
    """Binomial negative log-likelihood of ``y`` successes out of ``trials``.

    The success probability is ``E[sim]``, so the simulated value must be a probability (a
    prevalence, say); it is clipped to [1e-12, 1 - 1e-12].
    """
    from scipy.special import gammaln

    p = np.clip(_mean(simulated), _EPS, 1.0 - _EPS)
    n, y = trials, observed
    log_choose = gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)
    return float(-np.sum(log_choose + y * np.log(p) + (n - y) * np.log1p(-p)))


def negbin_nll(observed: np.ndarray, simulated: np.ndarray, dispersion: float) -> float:
    """Negative binomial negative log-likelihood of the counts ``y`` with mean ``E[sim]``.

    ``dispersion`` is the size ``k``: the variance is ``mu + mu**2 / k`` (Poisson as ``k`` grows).
    The mean is floored at 1e-12, as in :func:`poisson_nll`.
    """
    from scipy.special import gammaln

    mu = np.maximum(_mean(simulated), _EPS)
    k, y = dispersion, observed
    log_pmf = (
        gammaln(y + k)
        - gammaln(k)
        - gammaln(y + 1.0)
        - k * np.log1p(mu / k)
        + y * (np.log(mu) - np.log(k + mu))
    )
    return float(-np.sum(log_pmf))


def gaussian_nll(observed: np.ndarray, simulated: np.ndarray, sigma: float) -> float:
    """Gaussian negative log-likelihood of ``y`` with mean ``E[sim]`` and a known ``sigma``.

    ``sigma`` is the standard deviation of the observation noise:
    ``sum(0.5 * log(2 pi sigma**2) + (y - E[sim])**2 / (2 sigma**2))`` over points.
    """
    residual = observed - _mean(simulated)
    variance = float(sigma) ** 2
    constant = 0.5 * np.log(2.0 * np.pi * variance)
    return float(np.sum(constant + residual**2 / (2.0 * variance)))


BUILTIN_LOSSES: dict[str, LossFunction] = {
    "mse_of_mean": mse_of_mean,
    "mean_of_mse": mean_of_mse,
    "poisson_nll": poisson_nll,
    "binomial_nll": binomial_nll,
    "negbin_nll": negbin_nll,
    "gaussian_nll": gaussian_nll,
}

LIKELIHOOD_LOSSES = frozenset({"poisson_nll", "binomial_nll", "negbin_nll", "gaussian_nll"})
"""The built-in losses that are a negative log-likelihood summed over points."""


def resolve_loss(name: str) -> LossFunction:
    """A built-in loss by name, or a user function by ``module:function`` / ``module.function``.

    Raises:
        ContractViolationError: not a built-in and not an importable callable.
    """
    if name in BUILTIN_LOSSES:
        return BUILTIN_LOSSES[name]
    module_name, sep, attr = name.partition(":") if ":" in name else name.rpartition(".")
    if not sep or not module_name or not attr:
        known = ", ".join(BUILTIN_LOSSES)
        raise ContractViolationError(
            f"unknown loss {name!r}: use one of {known} or a function as module:function"
        )
    try:
        fn: Any = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # the module is user code: whatever its import raises
        detail = " ".join(str(exc).split())[:200]
        raise ContractViolationError(
            f"cannot import loss {name!r}: {type(exc).__name__}: {detail}"
        ) from exc
    if not callable(fn):
        raise ContractViolationError(f"loss {name!r} is not callable")
    return fn  # type: ignore[no-any-return]
