"""Pure contracts of ModelOps: studies, jobs, tasks, their identities and file formats.

Depends on pydantic only; importing it never loads numpy, pandas, polars, pyarrow or dask.
Names load lazily, so a worker importing :mod:`modelops_contracts.errors` pays for no models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelops_contracts._lazy import lazy_getattr

if TYPE_CHECKING:
    from modelops_contracts._loading import bounded_repr
    from modelops_contracts._yaml import restore_on_key
    from modelops_contracts.entrypoint import (
        DEFAULT_SCENARIO,
        format_entrypoint,
        parse_entrypoint,
        validate_scenario,
    )
    from modelops_contracts.errors import (
        BundleError,
        ClusterError,
        ContractViolationError,
        ModelError,
        ModelOpsError,
        StoreError,
        StudyError,
        WorkerStartError,
    )
    from modelops_contracts.job import (
        FORMAT_VERSION,
        GroupedTasks,
        SimJob,
        TaskBlock,
        TaskRow,
        validate_job_id,
    )
    from modelops_contracts.params import UniqueParameterSet, canonical_params, make_param_id
    from modelops_contracts.ports import Future, SimulationService
    from modelops_contracts.results import ErrorInfo, SimReturn, TrialResult, TrialStatus
    from modelops_contracts.seeds import replicate_seed, replicate_seeds
    from modelops_contracts.study import DuplicateParameterSetWarning, SimulationStudy
    from modelops_contracts.task import SimTask, TaskIdFactory, bundle_digest, validate_bundle_ref

_EXPORTS = {
    "BundleError": "modelops_contracts.errors",
    "ClusterError": "modelops_contracts.errors",
    "ContractViolationError": "modelops_contracts.errors",
    "DEFAULT_SCENARIO": "modelops_contracts.entrypoint",
    "DuplicateParameterSetWarning": "modelops_contracts.study",
    "ErrorInfo": "modelops_contracts.results",
    "FORMAT_VERSION": "modelops_contracts.job",
    "Future": "modelops_contracts.ports",
    "GroupedTasks": "modelops_contracts.job",
    "ModelError": "modelops_contracts.errors",
    "ModelOpsError": "modelops_contracts.errors",
    "SimJob": "modelops_contracts.job",
    "SimReturn": "modelops_contracts.results",
    "SimTask": "modelops_contracts.task",
    "SimulationService": "modelops_contracts.ports",
    "SimulationStudy": "modelops_contracts.study",
    "StoreError": "modelops_contracts.errors",
    "StudyError": "modelops_contracts.errors",
    "TaskBlock": "modelops_contracts.job",
    "TaskIdFactory": "modelops_contracts.task",
    "TaskRow": "modelops_contracts.job",
    "TrialResult": "modelops_contracts.results",
    "TrialStatus": "modelops_contracts.results",
    "UniqueParameterSet": "modelops_contracts.params",
    "WorkerStartError": "modelops_contracts.errors",
    "bounded_repr": "modelops_contracts._loading",
    "bundle_digest": "modelops_contracts.task",
    "canonical_params": "modelops_contracts.params",
    "format_entrypoint": "modelops_contracts.entrypoint",
    "make_param_id": "modelops_contracts.params",
    "parse_entrypoint": "modelops_contracts.entrypoint",
    "replicate_seed": "modelops_contracts.seeds",
    "replicate_seeds": "modelops_contracts.seeds",
    "restore_on_key": "modelops_contracts._yaml",
    "validate_bundle_ref": "modelops_contracts.task",
    "validate_job_id": "modelops_contracts.job",
    "validate_scenario": "modelops_contracts.entrypoint",
}

__all__ = [
    "DEFAULT_SCENARIO",
    "FORMAT_VERSION",
    "BundleError",
    "ClusterError",
    "ContractViolationError",
    "DuplicateParameterSetWarning",
    "ErrorInfo",
    "Future",
    "GroupedTasks",
    "ModelError",
    "ModelOpsError",
    "SimJob",
    "SimReturn",
    "SimTask",
    "SimulationService",
    "SimulationStudy",
    "StoreError",
    "StudyError",
    "TaskBlock",
    "TaskIdFactory",
    "TaskRow",
    "TrialResult",
    "TrialStatus",
    "UniqueParameterSet",
    "WorkerStartError",
    "bounded_repr",
    "bundle_digest",
    "canonical_params",
    "format_entrypoint",
    "make_param_id",
    "parse_entrypoint",
    "replicate_seed",
    "replicate_seeds",
    "restore_on_key",
    "validate_bundle_ref",
    "validate_job_id",
    "validate_scenario",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
