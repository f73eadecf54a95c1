"""ModelOps: run simulation studies, cache every task, read the results.

Public names load lazily, so a worker that imports :mod:`modelops.runtime` pays only for the
runtime, never for the store, the CLI or the analysis code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelops_contracts._lazy import lazy_getattr

__version__ = "0.1.0"

if TYPE_CHECKING:
    from modelops.api import JobHandle, compile_study, run
    from modelops.calibration import Calibration, calibrate
    from modelops.client import JobSubmissionClient
    from modelops.engine import RunOptions, RunSummary
    from modelops.model import Model, Parameter, Scenario
    from modelops.services.local import LocalSimulationService
    from modelops.store import ResultStore
    from modelops_contracts import (
        BundleError,
        ClusterError,
        ContractViolationError,
        ModelError,
        ModelOpsError,
        SimJob,
        SimTask,
        SimulationStudy,
        StoreError,
        StudyError,
        WorkerStartError,
    )

_EXPORTS = {
    "BundleError": "modelops_contracts",
    "Calibration": "modelops.calibration",
    "ClusterError": "modelops_contracts",
    "ContractViolationError": "modelops_contracts",
    "JobHandle": "modelops.api",
    "JobSubmissionClient": "modelops.client",
    "LocalSimulationService": "modelops.services.local",
    "Model": "modelops.model",
    "ModelError": "modelops_contracts",
    "ModelOpsError": "modelops_contracts",
    "Parameter": "modelops.model",
    "ResultStore": "modelops.store",
    "RunOptions": "modelops.engine",
    "RunSummary": "modelops.engine",
    "Scenario": "modelops.model",
    "SimJob": "modelops_contracts",
    "SimTask": "modelops_contracts",
    "SimulationStudy": "modelops_contracts",
    "StoreError": "modelops_contracts",
    "StudyError": "modelops_contracts",
    "WorkerStartError": "modelops_contracts",
    "calibrate": "modelops.calibration",
    "compile_study": "modelops.api",
    "run": "modelops.api",
}

__all__ = [
    "BundleError",
    "Calibration",
    "ClusterError",
    "ContractViolationError",
    "JobHandle",
    "JobSubmissionClient",
    "LocalSimulationService",
    "Model",
    "ModelError",
    "ModelOpsError",
    "Parameter",
    "ResultStore",
    "RunOptions",
    "RunSummary",
    "Scenario",
    "SimJob",
    "SimTask",
    "SimulationStudy",
    "StoreError",
    "StudyError",
    "WorkerStartError",
    "__version__",
    "calibrate",
    "compile_study",
    "run",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
