"""Parameter sets and their identity.

A parameter set is a plain ``dict`` of scalars. Its identity, the ``param_id``, is a hash of its
canonical JSON form, shared with the published modelops-contracts package so that studies keep
their identities across both. Ints must fit in 64 signed bits: parameters are stored as columns
of every output (Parquet int64), so a bigger one is refused here rather than changed later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from hashlib import blake2b
from types import MappingProxyType
from typing import Any

from modelops_contracts.errors import ContractViolationError

__all__ = [
    "PARAM_ID_PREFIX",
    "Scalar",
    "UniqueParameterSet",
    "canonical_params",
    "make_param_id",
]

PARAM_ID_PREFIX = "contracts:param:v1|"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

Scalar = bool | int | float | str


def _canonical_value(key: str, value: object) -> Scalar:
    kind = type(value)
    if kind is float:
        return _finite(key, value)  # type: ignore[arg-type]
    if kind is int:
        return _int64(key, value)  # type: ignore[arg-type]
    if kind is str or kind is bool:
        return value  # type: ignore[return-value]
    if kind.__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
        kind = type(value)
        if kind is float:
            return _finite(key, value)  # type: ignore[arg-type]
        if kind is int:
            return _int64(key, value)  # type: ignore[arg-type]
        if kind is str or kind is bool:
            return value  # type: ignore[return-value]
    elif isinstance(value, bool):
        return bool(value)
    elif isinstance(value, int):
        return _int64(key, int(value))
    elif isinstance(value, float):
        return _finite(key, float(value))
    elif isinstance(value, str):
        return str(value)
    raise ContractViolationError(
        f"parameter {key!r} must be a bool, int, finite float or str, "
        f"got {type(value).__name__} {value!r}",
        field=key,
        value=value,
    )


def _int64(key: str, value: int) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ContractViolationError(
            f"parameter {key!r} is {value}, outside the 64-bit int range [-2**63, 2**63 - 1]",
            field=key,
            value=value,
        )
    return value


def _finite(key: str, value: float) -> float:
    if not math.isfinite(value):
        raise ContractViolationError(
            f"parameter {key!r} must be finite, got {value!r}", field=key, value=value
        )
    return 0.0 if value == 0.0 else value  # folds -0.0 into 0.0


def canonical_params(params: Mapping[str, Any]) -> dict[str, Scalar]:
    """Return ``params`` as a plain dict of Python scalars, or raise naming the bad key.

    numpy scalars become Python scalars, ``-0.0`` becomes ``0.0``; NaN, infinities, ints outside
    the 64-bit range, nested values, other types and non-string keys raise
    :class:`ContractViolationError`.
    """
    if not isinstance(params, Mapping):
        raise ContractViolationError(
            f"parameters must be a mapping of name to value, got {type(params).__name__}",
            field="params",
            value=params,
        )
    out: dict[str, Scalar] = {}
    for key, value in params.items():
        if type(key) is not str:
            raise ContractViolationError(
                f"parameter names must be strings, got {type(key).__name__} {key!r}",
                field="params",
                value=key,
            )
        out[key] = _canonical_value(key, value)
    return out


_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _fast_encoder() -> Any:
    """The C encoder behind ``_ENCODE`` built once (json rebuilds it per call), if it agrees."""
    import json.encoder as impl

    make = getattr(impl, "c_make_encoder", None)
    quote = getattr(impl, "c_encode_basestring", None)
    if make is None or quote is None:
        return _ENCODE
    try:
        c_encode = make(None, None, quote, None, ":", ",", True, False, True)

        def encode(obj: Mapping[str, Scalar]) -> str:
            return "".join(c_encode(obj, 0))

        probe: dict[str, Scalar] = {"b": 0.1, "a": 'é"', "c": True, "d": -3}
        if encode(probe) == _ENCODE(probe):
            return encode
    except (TypeError, ValueError):
        pass
    return _ENCODE


_FAST_ENCODE = _fast_encoder()


_PREFIX_HASHER = blake2b(PARAM_ID_PREFIX.encode("utf-8"), digest_size=32)


def _hash_canonical(canonical: Mapping[str, Scalar]) -> str:
    """param_id of already canonical params (the bytes ``json.dumps`` gives with fixed options).

    The version prefix is hashed once; each call continues from a copy of that state.
    """
    h = _PREFIX_HASHER.copy()
    h.update(_FAST_ENCODE(canonical).encode("utf-8"))
    return h.hexdigest()


def _hash_many(sets: Sequence[Mapping[str, Scalar]]) -> list[str]:
    """``[_hash_canonical(p) for p in sets]`` for many canonical sets, with less overhead.

    A chunk of sets is encoded as one JSON list and cut into its items at the ``},`` that close
    them, which is exact when every ``}`` of the text closes a set (no str holds one); a chunk
    where that fails is hashed set by set.
    """
    ids: list[str] = []
    append = ids.append
    copy = _PREFIX_HASHER.copy
    for lo in range(0, len(sets), _HASH_CHUNK):
        chunk = sets[lo : lo + _HASH_CHUNK]
        text = _FAST_ENCODE(chunk).encode("utf-8")  # b"[{...},{...}]"
        if text.count(b"}") != len(chunk):
            ids += map(_hash_canonical, chunk)
            continue
        for item in text[1:-2].split(b"},"):
            h = copy()
            h.update(item)
            h.update(b"}")
            append(h.hexdigest())
    return ids


_HASH_CHUNK = 4_096


def make_param_id(params: Mapping[str, Any]) -> str:
    """Return the BLAKE2b-256 hex identity of a parameter set (independent of key order)."""
    return _hash_canonical(canonical_params(params))


class UniqueParameterSet(Mapping[str, Scalar]):
    """An immutable, canonical parameter set together with its ``param_id``.

    It is also a read-only mapping, so ``ups["beta"]`` and ``dict(ups)`` work. Building one from a
    dict hashes it once; everything downstream (seeds, task ids) reuses ``param_id``.
    """

    __slots__ = ("_dict", "_params", "param_id")

    _dict: dict[str, Scalar]  # the canonical dict behind ``_params``, for bulk readers
    _params: MappingProxyType[str, Scalar]
    param_id: str

    def __init__(self, params: Mapping[str, Any], param_id: str | None = None) -> None:
        canonical = canonical_params(params)
        computed = _hash_canonical(canonical)
        if param_id is not None and param_id != computed:
            raise ContractViolationError(
                f"param_id {param_id!r} does not match its parameters {canonical!r} "
                f"(expected {computed!r})",
                field="param_id",
                value=param_id,
            )
        object.__setattr__(self, "_dict", canonical)
        object.__setattr__(self, "_params", MappingProxyType(canonical))
        object.__setattr__(self, "param_id", computed)

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> UniqueParameterSet:
        """Canonicalise and hash ``params``."""
        return cls(params)

    @classmethod
    def _trusted(cls, canonical: dict[str, Scalar], param_id: str) -> UniqueParameterSet:
        """Wrap already canonical params and their id without re-hashing (internal fast path)."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "_dict", canonical)
        object.__setattr__(obj, "_params", MappingProxyType(canonical))
        object.__setattr__(obj, "param_id", param_id)
        return obj

    @property
    def params(self) -> Mapping[str, Scalar]:
        """The canonical parameters, read-only."""
        return self._params

    def to_dict(self) -> dict[str, Scalar]:
        """A fresh mutable copy of the parameters."""
        return dict(self._params)

    def __getitem__(self, key: str) -> Scalar:
        return self._params[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("UniqueParameterSet is immutable")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, UniqueParameterSet):
            return self.param_id == other.param_id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.param_id)

    def __repr__(self) -> str:
        return f"UniqueParameterSet({dict(self._params)!r}, param_id={self.param_id[:12]!r}...)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (UniqueParameterSet._trusted, (dict(self._params), self.param_id))
