"""Importing a model in a fresh worker, of this Python or of a bundle environment, to learn
what it declares (parameters, scenarios, outputs) without letting its import touch the caller."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelops.runtime.loader import EntrypointCheck, ModelInfo, resolve_in_worker
from modelops.services._events import ChunkDone, ChunkRaised, TaskTimedOut, WorkerDied
from modelops.services._pool import run_once
from modelops.services._worker import PRELOAD
from modelops_contracts.errors import ContractViolationError, ModelError

if TYPE_CHECKING:
    from modelops.model import Parameter

__all__ = ["inspect_entrypoint", "parameters_in"]


def inspect_entrypoint(
    check: EntrypointCheck, timeout: float | None, python: Path | str | None = None
) -> ModelInfo:
    """Run :func:`resolve_in_worker` in a fresh worker (of ``python``, a bundle environment's
    interpreter, when given): what the model declares, or how it failed as one error.

    Raises:
        ModelError: the model cannot be imported, does not fit the study, exits or hangs.
        ContractViolationError: a parameter set is invalid for the model.
    """
    executable = str(python) if python is not None else None
    event = run_once(
        resolve_in_worker, check, timeout=timeout, preload=PRELOAD, executable=executable
    )
    what = check.entrypoint.partition("/")[0]
    match event:
        case ChunkDone(value=ModelInfo() as info):
            return info
        case ChunkRaised(error=error) if error.type_name == "ContractViolationError":
            raise ContractViolationError(error.message)
        case ChunkRaised(error=error) if error.type_name == "ModelError":
            raise ModelError(error.message)
        case ChunkRaised(error=error):
            raise ModelError(f"checking {what} raised {error.type_name}: {error.message}")
        case TaskTimedOut():
            raise ModelError(
                f"importing and checking {what} took longer than {timeout} s",
                hint="a model module should not block or loop at import",
            )
        case WorkerDied(exitcode=code):
            raise ModelError(
                f"the process importing {what} ended with exit code {code}",
                hint="a model module must not exit or kill its process at import",
            )
    raise RuntimeError(f"checking {what} ended without an answer: {event!r}")


def parameters_in(python: Path | str) -> Callable[[Path, str], tuple[Parameter, ...] | None]:
    """What a bundle's entrypoint declares, read by importing it in a worker of ``python`` (a
    bundle environment's interpreter, which has the model's packages): for ``load_space``."""

    def declared(bundle: Path, entrypoint: str) -> tuple[Parameter, ...] | None:
        check = EntrypointCheck(str(bundle.resolve()), entrypoint)
        return inspect_entrypoint(check, None, python).parameters

    return declared
