"""Pure contracts of ModelOps: studies, jobs, tasks, their identities and file formats.

Depends on pydantic only; importing it never loads numpy, pandas, polars, pyarrow or dask.
"""

from __future__ import annotations

from modelops_contracts.entrypoint import (
    DEFAULT_SCENARIO,
    format_entrypoint,
    parse_entrypoint,
    validate_scenario,
)
from modelops_contracts.errors import (
    BundleError,
    ContractViolationError,
    ModelError,
    ModelOpsError,
    StoreError,
    StudyError,
)
from modelops_contracts.job import FORMAT_VERSION, GroupedTasks, SimJob, TaskRow, validate_job_id
from modelops_contracts.params import UniqueParameterSet, canonical_params, make_param_id
from modelops_contracts.ports import (
    BundleRepository,
    ExecutionEnvironment,
    Future,
    SimulationService,
)
from modelops_contracts.results import ErrorInfo, SimReturn, TrialResult, TrialStatus
from modelops_contracts.seeds import replicate_seed, replicate_seeds
from modelops_contracts.study import DuplicateParameterSetWarning, SimulationStudy
from modelops_contracts.task import SimTask, TaskIdFactory, bundle_digest, validate_bundle_ref

__all__ = [
    "DEFAULT_SCENARIO",
    "FORMAT_VERSION",
    "BundleError",
    "BundleRepository",
    "ContractViolationError",
    "DuplicateParameterSetWarning",
    "ErrorInfo",
    "ExecutionEnvironment",
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
    "TaskIdFactory",
    "TaskRow",
    "TrialResult",
    "TrialStatus",
    "UniqueParameterSet",
    "bundle_digest",
    "canonical_params",
    "format_entrypoint",
    "make_param_id",
    "parse_entrypoint",
    "replicate_seed",
    "replicate_seeds",
    "validate_bundle_ref",
    "validate_job_id",
    "validate_scenario",
]
