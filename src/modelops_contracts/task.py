"""SimTask: one deterministic simulation run, and its content-derived ``task_id``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from hashlib import blake2b
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
)

from modelops_contracts._base import Contract
from modelops_contracts.entrypoint import format_entrypoint, parse_entrypoint
from modelops_contracts.errors import ContractViolationError
from modelops_contracts.params import UniqueParameterSet

__all__ = [
    "SEED_LIMIT",
    "SimTask",
    "TaskIdFactory",
    "bundle_digest",
    "canonical_config",
    "normalize_outputs",
    "validate_bundle_ref",
]

SEED_LIMIT = 2**64
TASK_ID_PREFIX = "contracts:task:v1|"

_BUNDLE_REF_RE = re.compile(r"^(?:(?P<repo>[^@\s]+)@)?sha256:(?P<hex>[0-9a-f]{64})$")
_OUTPUT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def validate_bundle_ref(ref: object) -> str:
    """Return ``ref`` if it is ``sha256:<64 hex>`` or ``repo@sha256:<64 hex>``."""
    if not isinstance(ref, str) or not _BUNDLE_REF_RE.fullmatch(ref):
        raise ContractViolationError(
            "bundle_ref must be 'sha256:<64 lowercase hex>' or 'repo@sha256:<64 hex>', "
            f"got {ref!r}",
            field="bundle_ref",
            value=ref,
        )
    return ref


def bundle_digest(ref: str) -> str:
    """The 64-hex digest inside a bundle reference (the repository part never counts)."""
    match = _BUNDLE_REF_RE.fullmatch(validate_bundle_ref(ref))
    assert match is not None
    return match.group("hex")


def normalize_outputs(outputs: Iterable[str] | None) -> tuple[str, ...] | None:
    """``None`` (all outputs) or the sorted unique tuple of requested output names."""
    if outputs is None:
        return None
    if isinstance(outputs, str):
        outputs = [outputs]
    names = list(outputs)
    for name in names:
        if not isinstance(name, str) or not _OUTPUT_RE.match(name):
            raise ContractViolationError(
                f"output names must be 1-128 chars of letters, digits, '_', '.', '-', got {name!r}",
                field="outputs",
                value=name,
            )
    if not names:
        raise ContractViolationError(
            "outputs must list at least one name (use null for all outputs)",
            field="outputs",
            value=outputs,
        )
    return tuple(sorted(set(names)))


def canonical_config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A JSON-compatible copy of ``config`` (or None); rejects values JSON cannot carry."""
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise ContractViolationError(
            f"config must be a mapping, got {type(config).__name__}", field="config", value=config
        )
    try:
        text = json.dumps(dict(config), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ContractViolationError(
            f"config must hold JSON values only: {err}", field="config", value=config
        ) from None
    result: dict[str, Any] = json.loads(text)
    return result


OutputsField = Annotated[tuple[str, ...] | None, BeforeValidator(normalize_outputs)]
"""Requested outputs: None (all) or a sorted unique tuple of names."""

ConfigField = Annotated[dict[str, Any] | None, BeforeValidator(canonical_config)]
"""Model configuration: a JSON-compatible mapping, or None."""


def _config_text(config: Mapping[str, Any] | None) -> str:
    if config is None:
        return "null"
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class TaskIdFactory:
    """Computes task ids for many tasks that share bundle, entrypoint, outputs and config.

    The id is BLAKE2b-256 over ``contracts:task:v1|digest|entrypoint|outputs|config|param_id|seed``
    (outputs and config as compact JSON). The shared prefix is hashed once and copied per task.
    """

    __slots__ = ("_base",)

    def __init__(
        self,
        bundle_ref: str,
        entrypoint: str,
        outputs: tuple[str, ...] | None,
        config: Mapping[str, Any] | None,
    ) -> None:
        outputs_text = (
            "null" if outputs is None else json.dumps(list(outputs), separators=(",", ":"))
        )
        prefix = "|".join(
            (
                TASK_ID_PREFIX + bundle_digest(bundle_ref),
                entrypoint,
                outputs_text,
                _config_text(config),
                "",
            )
        )
        self._base = blake2b(prefix.encode("utf-8"), digest_size=32)

    def __call__(self, param_id: str, seed: int) -> str:
        h = self._base.copy()
        h.update(f"{param_id}|{seed}".encode())
        return h.hexdigest()

    def many(self, param_ids: Iterable[str], seeds: Iterable[int]) -> list[str]:
        """``[self(pid, seed) for pid, seed in zip(param_ids, seeds)]``, with less overhead."""
        copy = self._base.copy
        ids: list[str] = []
        append = ids.append
        for pid, seed in zip(param_ids, seeds, strict=True):
            h = copy()
            h.update(f"{pid}|{seed}".encode())
            append(h.hexdigest())
        return ids


def _validate_params(value: Any) -> UniqueParameterSet:
    if isinstance(value, UniqueParameterSet):
        return value
    if isinstance(value, Mapping):
        keys = set(value)
        if (
            "params" in keys
            and keys <= {"params", "param_id"}
            and isinstance(value["params"], Mapping)
        ):
            return UniqueParameterSet(value["params"], value.get("param_id"))
        return UniqueParameterSet(value)
    raise ContractViolationError(
        f"params must be a mapping of parameter values, got {type(value).__name__}",
        field="params",
        value=value,
    )


def _serialize_params(value: UniqueParameterSet) -> dict[str, Any]:
    return {"param_id": value.param_id, "params": dict(value.params)}


_PARAMS_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "param_id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "params": {
            "type": "object",
            "additionalProperties": {"type": ["boolean", "integer", "number", "string"]},
        },
    },
    "required": ["params"],
    "additionalProperties": False,
}

ParamsField = Annotated[
    UniqueParameterSet,
    PlainValidator(_validate_params),
    PlainSerializer(_serialize_params),
    WithJsonSchema(_PARAMS_JSON_SCHEMA),
]


class SimTask(Contract):
    """One simulation run: model entrypoint, code snapshot, parameters and seed.

    Everything that changes the result enters ``task_id``; two tasks differing in any of bundle
    digest, entrypoint, param_id, seed, outputs or config never share an id.
    """

    bundle_ref: str
    entrypoint: str
    params: ParamsField
    seed: int = Field(strict=True, ge=0, lt=SEED_LIMIT)
    outputs: OutputsField = None
    config: ConfigField = None

    _task_id: str | None = PrivateAttr(default=None)

    @field_validator("bundle_ref", mode="before")
    @classmethod
    def _check_bundle_ref(cls, value: object) -> str:
        return validate_bundle_ref(value)

    @field_validator("entrypoint", mode="before")
    @classmethod
    def _check_entrypoint(cls, value: object) -> str:
        if not isinstance(value, str):
            raise ContractViolationError(
                f"entrypoint must be a string, got {value!r}", field="entrypoint", value=value
            )
        parse_entrypoint(value)
        return value

    @classmethod
    def from_components(
        cls,
        import_path: str,
        scenario: str,
        bundle_ref: str,
        params: Mapping[str, Any] | UniqueParameterSet,
        seed: int,
        outputs: Iterable[str] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> SimTask:
        """Build a task from its parts; ``params`` may be a plain dict."""
        return cls(
            bundle_ref=bundle_ref,
            entrypoint=format_entrypoint(import_path, scenario),
            params=params,
            seed=seed,
            outputs=outputs,
            config=config,
        )

    @classmethod
    def _trusted(
        cls,
        bundle_ref: str,
        entrypoint: str,
        params: UniqueParameterSet,
        seed: int,
        outputs: tuple[str, ...] | None,
        config: dict[str, Any] | None,
        task_id: str | None = None,
    ) -> SimTask:
        """Assemble a task from already validated parts (internal fast path)."""
        task = object.__new__(cls)
        object.__setattr__(
            task,
            "__dict__",
            {
                "bundle_ref": bundle_ref,
                "entrypoint": entrypoint,
                "params": params,
                "seed": seed,
                "outputs": outputs,
                "config": config,
            },
        )
        object.__setattr__(task, "__pydantic_fields_set__", _ALL_FIELDS)
        object.__setattr__(task, "__pydantic_extra__", None)
        object.__setattr__(task, "__pydantic_private__", {"_task_id": task_id})
        return task

    @property
    def param_id(self) -> str:
        """Shortcut for ``params.param_id``."""
        return self.params.param_id

    @property
    def import_path(self) -> str:
        """The model's import path (entrypoint before the slash)."""
        return self.entrypoint.split("/", 1)[0]

    @property
    def scenario(self) -> str:
        """The scenario name (entrypoint after the slash)."""
        return self.entrypoint.split("/", 1)[1]

    @property
    def task_id(self) -> str:
        """Content hash of everything that changes this task's result."""
        if self._task_id is None:
            factory = TaskIdFactory(self.bundle_ref, self.entrypoint, self.outputs, self.config)
            self._task_id = factory(self.params.param_id, self.seed)
        return self._task_id

    def __hash__(self) -> int:
        return hash(self.task_id)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SimTask):
            return self.task_id == other.task_id
        return NotImplemented


_ALL_FIELDS = frozenset(SimTask.model_fields)
