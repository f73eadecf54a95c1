"""Calibration: which parameter values make a stochastic model reproduce observed data.

::

    import modelops

    cal = modelops.calibrate("sir_model.SIR", "targets.yaml", bundle="examples/sir",
                             fix={"population": 10_000, "initial_infected": 10},
                             algorithm="tpe", budget=200, replicates=4)
    cal.best            # the best re-evaluated point, its loss and standard error
    cal.evaluations()   # every point evaluated (polars)
    cal.posterior()     # abc-smc: the populations' particles (polars)
    modelops.calibration.write_calibration_report(cal)  # the HTML page, with the figures

Every evaluation is ordinary tasks run through the engine, so it is cached in the store; the
store also holds the calibration's journal (``calibrations/<id>/``), so a killed calibration
resumes where it stopped and ends with the same answer. Algorithms: ``tpe`` and ``cmaes``
(Optuna), ``random`` and ``sobol`` (space-filling baselines), ``abc-smc`` (a posterior sample).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelops_contracts._lazy import lazy_getattr

if TYPE_CHECKING:
    from modelops.calibration._algorithms import ALGORITHMS, Algorithm, Population, make_algorithm
    from modelops.calibration._api import DEFAULT_BATCH, calibrate
    from modelops.calibration._handle import Calibration, list_calibrations, open_calibration
    from modelops.calibration._plots import (
        draw_losses,
        draw_posterior,
        draw_predictive,
        draw_trace,
        plot_losses,
        plot_posterior,
        plot_predictive,
        plot_trace,
    )
    from modelops.calibration._report import write_calibration_report
    from modelops.calibration._run import CalibrationProgress
    from modelops.calibration._spec import CalibrationSpec

_EXPORTS = {
    "ALGORITHMS": "modelops.calibration._algorithms",
    "Algorithm": "modelops.calibration._algorithms",
    "Calibration": "modelops.calibration._handle",
    "CalibrationProgress": "modelops.calibration._run",
    "CalibrationSpec": "modelops.calibration._spec",
    "DEFAULT_BATCH": "modelops.calibration._api",
    "Population": "modelops.calibration._algorithms",
    "calibrate": "modelops.calibration._api",
    "draw_losses": "modelops.calibration._plots",
    "draw_posterior": "modelops.calibration._plots",
    "draw_predictive": "modelops.calibration._plots",
    "draw_trace": "modelops.calibration._plots",
    "plot_losses": "modelops.calibration._plots",
    "plot_posterior": "modelops.calibration._plots",
    "plot_predictive": "modelops.calibration._plots",
    "plot_trace": "modelops.calibration._plots",
    "list_calibrations": "modelops.calibration._handle",
    "make_algorithm": "modelops.calibration._algorithms",
    "open_calibration": "modelops.calibration._handle",
    "write_calibration_report": "modelops.calibration._report",
}

__all__ = [
    "ALGORITHMS",
    "DEFAULT_BATCH",
    "Algorithm",
    "Calibration",
    "CalibrationProgress",
    "CalibrationSpec",
    "Population",
    "calibrate",
    "draw_losses",
    "draw_posterior",
    "draw_predictive",
    "draw_trace",
    "list_calibrations",
    "make_algorithm",
    "open_calibration",
    "plot_losses",
    "plot_posterior",
    "plot_predictive",
    "plot_trace",
    "write_calibration_report",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
