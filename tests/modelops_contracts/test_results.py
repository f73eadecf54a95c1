from __future__ import annotations

import math

import pytest

from modelops_contracts import (
    ContractViolationError,
    ErrorInfo,
    SimReturn,
    TrialResult,
    TrialStatus,
)
from tests.conftest import KNOWN_PARAM_ID

TASK_ID = "0f" * 32


def test_sim_return_round_trip_with_outputs_or_error() -> None:
    ok = SimReturn(task_id=TASK_ID, outputs={"summary": b"\x00arrow-ipc\xff"})
    assert ok.ok and SimReturn.from_json(ok.to_json()) == ok
    err = SimReturn(
        task_id=TASK_ID,
        error=ErrorInfo(error_type="ValueError", message="boom", retryable=False, traceback="tb"),
    )
    assert not err.ok and SimReturn.from_json(err.to_json()) == err


def test_sim_return_cannot_have_both_or_a_bad_id() -> None:
    with pytest.raises(ContractViolationError, match="both"):
        SimReturn(
            task_id=TASK_ID,
            outputs={"a": b"x"},
            error=ErrorInfo(error_type="E", message="m"),
        )
    with pytest.raises(ContractViolationError, match="task_id"):
        SimReturn(task_id="nope")


def test_completed_trials_need_a_finite_loss() -> None:
    assert TrialResult(param_id=KNOWN_PARAM_ID, loss=1.5).status is TrialStatus.COMPLETED
    for bad in (None, math.nan, math.inf):
        with pytest.raises(ContractViolationError, match="finite"):
            TrialResult(param_id=KNOWN_PARAM_ID, loss=bad)
    failed = TrialResult(param_id=KNOWN_PARAM_ID, status=TrialStatus.FAILED)
    assert TrialResult.from_json(failed.to_json()) == failed
