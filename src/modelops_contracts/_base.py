"""Shared pydantic plumbing: one base model whose validation errors become contract errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from modelops_contracts._loading import bounded_repr
from modelops_contracts.errors import ContractViolationError

__all__ = ["Contract", "translate_validation_error"]


def translate_validation_error(err: ValidationError, what: str) -> ContractViolationError:
    """Turn pydantic's report into a one-line :class:`ContractViolationError` (first problem)."""
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"]) or what
    msg = first["msg"]
    ctx = first.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, ContractViolationError):
        where = f"{what}: {loc}" if first["loc"] else what
        return ContractViolationError(f"{where}: {cause}", field=cause.field, value=cause.value)
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    value = first.get("input")
    more = err.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    shown = bounded_repr(value)  # never the repr of a whole huge value
    return ContractViolationError(
        f"{what}: {loc}: {msg} (got {shown}){suffix}", field=loc, value=value
    )


class Contract(BaseModel):
    """Frozen pydantic model; invalid input raises :class:`ContractViolationError`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise translate_validation_error(err, type(self).__name__) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Validate a plain dict (as produced by :meth:`to_dict`)."""
        if not isinstance(data, Mapping):
            raise ContractViolationError(
                f"{cls.__name__}: expected an object, got {type(data).__name__}",
                field=cls.__name__,
                value=data,
            )
        # pydantic runs a custom __init__ during validation anyway; calling it directly keeps
        # the error translation in one place
        return cls(**{str(k): v for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """Validate a JSON document (as produced by :meth:`to_json`)."""
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ContractViolationError(
                f"{cls.__name__}: not valid JSON: {err}", field=cls.__name__, value=None
            ) from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict."""
        return self.model_dump(mode="json")

    def to_json(self, *, indent: int | None = None) -> str:
        """The JSON form; ``from_json(to_json())`` gives back an equal object."""
        return self.model_dump_json(indent=indent)
