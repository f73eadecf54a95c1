"""The one exception tree of ModelOps.

::

    Exception
    ├── ValueError
    │   └── ContractViolationError   a value breaks a contract (bad id, bad params, bad file)
    └── ModelOpsError                 anything else the user can act on
        ├── StudyError               the study cannot be compiled or run as written
        ├── BundleError              the model code snapshot is missing, unsafe or unreadable
        ├── ModelError               the model cannot be imported or resolved
        ├── StoreError               the result store is unusable, locked or inconsistent
        ├── WorkerStartError         worker processes cannot start (their initializer fails,
        │                            or they keep dying before they are ready)
        └── ClusterError             the Dask scheduler is unreachable or was lost; the job
                                     stays resumable

Errors carry the context a user needs to fix the problem as keyword arguments; the CLI prints
``str(error)`` as a single line and exits with code 2.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "ClusterError",
    "ContractViolationError",
    "ModelError",
    "ModelOpsError",
    "StoreError",
    "StudyError",
    "WorkerStartError",
]


class ContractViolationError(ValueError):
    """A value does not satisfy a contract.

    The message names the offending field and value; ``field`` and ``value`` keep them for code.
    """

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class ModelOpsError(Exception):
    """Base of every non-contract error ModelOps raises on purpose.

    ``hint`` says what to do about it; it is appended to the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{message} ({hint})" if hint else message)
        self.hint = hint


class StudyError(ModelOpsError):
    """The study cannot be compiled or run as written."""


class BundleError(ModelOpsError):
    """The model code bundle is missing, unsafe or unreadable."""


class ModelError(ModelOpsError):
    """The model cannot be imported, resolved, or does not match the study."""


class StoreError(ModelOpsError):
    """The result store is unusable, locked by another run, or inconsistent."""


class WorkerStartError(ModelOpsError):
    """Workers cannot start: every worker runs the same start-up, so no task can run.

    ``remote`` holds the worker-side exception (type name, message, traceback) when there is one.
    """

    def __init__(self, message: str, *, hint: str | None = None, remote: object = None) -> None:
        super().__init__(message, hint=hint)
        self.remote = remote


class ClusterError(ModelOpsError):
    """The Dask cluster cannot be reached or went away during a run; the job stays resumable."""
