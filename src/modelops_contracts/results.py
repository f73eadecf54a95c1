"""What comes back from running tasks: SimReturn, ErrorInfo, and calibration trial results."""

from __future__ import annotations

import base64
import math
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, PlainValidator, WithJsonSchema, model_validator

from modelops_contracts._base import Contract
from modelops_contracts.errors import ContractViolationError

__all__ = ["ErrorInfo", "SimReturn", "TrialResult", "TrialStatus"]


class ErrorInfo(Contract):
    """Why a task failed, and whether running it again could help."""

    error_type: str = Field(min_length=1)
    message: str
    retryable: bool = False
    traceback: str | None = None
    stderr_tail: str | None = None


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            pass
    raise ContractViolationError(
        "output tables must be Arrow IPC bytes (base64 text in JSON)", field="outputs", value=value
    )


IpcBytes = Annotated[
    bytes,
    PlainValidator(_to_bytes),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


class SimReturn(Contract):
    """The result of one task: its outputs by name (Arrow IPC bytes), or an error.

    Tables travel as Arrow IPC stream bytes so this contract needs no table library.
    """

    task_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    outputs: dict[str, IpcBytes] = Field(default_factory=dict)
    error: ErrorInfo | None = None

    @model_validator(mode="after")
    def _outputs_or_error(self) -> SimReturn:
        if self.error is not None and self.outputs:
            raise ContractViolationError(
                f"SimReturn for task {self.task_id} has both outputs and an error",
                field="outputs",
                value=sorted(self.outputs),
            )
        return self

    @property
    def ok(self) -> bool:
        """True when the task succeeded."""
        return self.error is None


class TrialStatus(StrEnum):
    """Outcome of one calibration trial."""

    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"


class TrialResult(Contract):
    """Loss of one parameter set against targets; a COMPLETED trial has a finite loss."""

    param_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    loss: float | None = None
    status: TrialStatus = TrialStatus.COMPLETED
    diagnostics: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _finite_when_completed(self) -> TrialResult:
        if self.status is TrialStatus.COMPLETED and (
            self.loss is None or not math.isfinite(self.loss)
        ):
            raise ContractViolationError(
                f"a COMPLETED trial needs a finite loss, got {self.loss!r}",
                field="loss",
                value=self.loss,
            )
        return self
