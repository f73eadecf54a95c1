"""SimulationStudy: what to run (parameter sets x replicates), independent of any code bundle."""

from __future__ import annotations

import json
import math
import warnings
from array import array
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from hashlib import blake2b
from itertools import accumulate, chain, compress, repeat
from operator import contains
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from modelops_contracts._base import Contract
from modelops_contracts._job_format import FORMAT_VERSION
from modelops_contracts._loading import check_task_count, parse_json, parse_yaml, read_document
from modelops_contracts._yaml import restore_on_key
from modelops_contracts.entrypoint import (
    DEFAULT_SCENARIO,
    validate_import_path,
    validate_scenario,
)
from modelops_contracts.errors import ContractViolationError
from modelops_contracts.job import GroupedTasks, SimJob, _content_digest, validate_job_id
from modelops_contracts.params import Scalar, _hash_canonical, _hash_many, canonical_params
from modelops_contracts.seeds import _flat_seeds, replicate_seeds
from modelops_contracts.task import (
    SEED_LIMIT,
    ConfigField,
    OutputsField,
    validate_bundle_ref,
)

__all__ = ["DuplicateParameterSetWarning", "SimulationStudy"]

_POSITIONAL = (
    "model",
    "scenario",
    "parameter_sets",
    "sampling_method",
    "n_replicates",
    "outputs",
    "metadata",
)


_OWNED_SETS: ContextVar[int] = ContextVar("_OWNED_SETS", default=0)
"""``id`` of a ``parameter_sets`` list just parsed from a JSON file, which nothing else holds."""


class DuplicateParameterSetWarning(UserWarning):
    """Two parameter sets of a study are identical after canonicalisation; they were merged."""


def _canonical_entry(index: int, entry: Any) -> dict[str, Any]:
    """A parameter-set entry: a plain dict, or ``{"params": {...}, "seed": N}``."""
    if not isinstance(entry, Mapping):
        raise ContractViolationError(
            f"parameter_sets[{index}] must be a mapping, got {type(entry).__name__}",
            field=f"parameter_sets[{index}]",
            value=entry,
        )
    if "params" in entry and isinstance(entry["params"], Mapping):
        extra = set(entry) - {"params", "seed"}
        if extra or "seed" not in entry:
            raise ContractViolationError(
                f"parameter_sets[{index}] with 'params' takes only 'params' and 'seed', "
                f"got keys {sorted(entry)}",
                field=f"parameter_sets[{index}]",
                value=entry,
            )
        seed = entry["seed"]
        if type(seed) is not int or not 0 <= seed < SEED_LIMIT:
            raise ContractViolationError(
                f"parameter_sets[{index}].seed must be an int in [0, 2**64), got {seed!r}",
                field=f"parameter_sets[{index}].seed",
                value=seed,
            )
        return {"params": _canonical_at(index, entry["params"]), "seed": seed}
    return _canonical_at(index, entry)


def _canonical_at(index: int, params: Mapping[str, Any]) -> dict[str, Scalar]:
    try:
        return canonical_params(params)
    except ContractViolationError as err:
        raise ContractViolationError(
            f"parameter_sets[{index}]: {err}", field=f"parameter_sets[{index}]", value=err.value
        ) from None


class SimulationStudy(Contract):
    """A study: one model and scenario, many parameter sets, ``n_replicates`` seeds each.

    ``parameter_sets`` holds plain dicts; an entry ``{"params": {...}, "seed": N}`` asks for
    exactly one task with that seed. ``targets`` (observed data to score against, see
    :mod:`modelops.analysis`) travel with the job as its ``target_spec`` and never change an id.
    ``cluster`` holds batch-cluster settings for ``mops run --cluster`` (see
    :mod:`modelops.services.batch`): where the study runs, never what it is, so no id sees it.
    Bind the study to a code bundle with :meth:`to_simjob`.
    """

    model: str
    scenario: str = DEFAULT_SCENARIO
    parameter_sets: list[dict[str, Any]] = Field(min_length=1)
    sampling_method: str = "manual"
    n_replicates: int = Field(default=1, strict=True, ge=1)
    outputs: OutputsField = None
    config: ConfigField = None
    metadata: dict[str, Any] | None = None
    targets: list[dict[str, Any]] | None = None
    cluster: dict[str, Any] | None = None

    _counts: tuple[int, int] | None = PrivateAttr(default=None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(_POSITIONAL):
            raise TypeError(f"SimulationStudy takes at most {len(_POSITIONAL)} positional args")
        for name, value in zip(_POSITIONAL, args, strict=False):
            if name in kwargs:
                raise TypeError(f"SimulationStudy got multiple values for {name!r}")
            kwargs[name] = value
        super().__init__(**kwargs)

    @model_validator(mode="before")
    @classmethod
    def _unwrap_legacy(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        if "format_version" in data:
            data = dict(data)
            _check_version(data.pop("format_version"))
        sets = data.get("parameter_sets")
        if (
            isinstance(sets, list)
            and not _plain_dicts(sets)
            and any(_is_legacy_wrapper(e) for e in sets)
        ):
            from modelops_contracts.legacy import warn_legacy

            warn_legacy(
                "the old study layout with ParameterSet entries ({'params': {...}})",
                stacklevel=6,
            )
            data = dict(data)
            data["parameter_sets"] = [
                dict(e["params"]) if _is_legacy_wrapper(e) else e for e in sets
            ]
        return data

    @field_validator("model", mode="before")
    @classmethod
    def _check_model(cls, value: Any) -> str:
        return validate_import_path(value)

    @field_validator("scenario", mode="before")
    @classmethod
    def _check_scenario(cls, value: Any) -> str:
        return validate_scenario(value)

    @field_validator("parameter_sets", mode="wrap")
    @classmethod
    def _check_sets(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> list[dict[str, Any]]:
        # the canonical copies made here are what pydantic's own list[dict] check would give
        # back (copied once more), so it only runs to report a list that is too short
        if not isinstance(value, list | tuple):
            raise ContractViolationError(
                f"parameter_sets must be a list, got {type(value).__name__}",
                field="parameter_sets",
                value=value,
            )
        sets = _plain_canonical(value, owned=_OWNED_SETS.get() == id(value))
        if sets is None:
            sets = [_canonical_entry(i, entry) for i, entry in enumerate(value)]
            _check_kinds(sets)
        if not sets:
            return handler(sets)  # type: ignore[no-any-return]
        return sets

    @model_validator(mode="after")
    def _check_size(self) -> SimulationStudy:
        # before anything is built from it: the study is frozen, so this holds for its life
        n = self.n_replicates
        sets = self.parameter_sets
        explicit_sets = 0
        if any(map(dict.__contains__, sets, repeat("params"))):  # the canonical sets are dicts
            explicit_sets = sum(1 for entry in sets if _is_explicit(entry))
        check_task_count(
            explicit_sets + (len(self.parameter_sets) - explicit_sets) * n,
            f" ({len(self.parameter_sets):,} parameter sets x {n:,} replicates)",
        )
        return self

    @field_validator("targets", mode="before")
    @classmethod
    def _yaml_on_key(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare ``on:`` key (a target's join columns) as the boolean true
        if isinstance(value, list):
            return [restore_on_key(t) if isinstance(t, Mapping) else t for t in value]
        return value

    # -- counts --------------------------------------------------------------------------------

    def parameter_count(self) -> int:
        """Number of distinct parameter sets (identical sets count once)."""
        return self._count()[0]

    def total_simulation_count(self) -> int:
        """Number of tasks the study compiles to (equals ``to_simjob(...).task_count()``)."""
        return self._count()[1]

    def _count(self) -> tuple[int, int]:
        if self._counts is None:
            param_ids, _, seeds, _, _ = self._columns()
            self._counts = (len(param_ids), len(seeds))
        return self._counts

    # -- compile -------------------------------------------------------------------------------

    def to_simjob(self, bundle_ref: str, job_id: str | None = None) -> SimJob:
        """Bind the study to a code bundle: one task per (parameter set, replicate seed).

        Each parameter set is hashed once and its seeds derived once; identical parameter sets
        are merged with a :class:`DuplicateParameterSetWarning`. Without ``job_id`` the id is
        derived from the job's content, so compiling again gives the same job (and a resumed run).
        """
        validate_bundle_ref(bundle_ref)
        if job_id is not None:
            validate_job_id(job_id)
        param_ids, params, seeds, offsets, merged = self._columns()
        if merged:
            warnings.warn(
                f"{merged} parameter set(s) of the study are identical to an earlier one after "
                "canonicalisation and were merged (they would give identical tasks)",
                DuplicateParameterSetWarning,
                stacklevel=2,
            )
        entrypoint = f"{self.model}/{self.scenario}"
        tasks = GroupedTasks._from_columns(
            bundle_ref, entrypoint, self.outputs, self.config, param_ids, params, seeds, offsets
        )
        metadata = dict(self.metadata or {})
        if job_id is None:
            job_id = _content_job_id(tasks, metadata)
        metadata.setdefault(
            "study",
            {
                "model": self.model,
                "scenario": self.scenario,
                "sampling_method": self.sampling_method,
                "n_replicates": self.n_replicates,
            },
        )
        target_spec = {"targets": self.targets} if self.targets else None
        return SimJob._trusted(job_id, tasks, metadata, target_spec)

    def _columns(
        self,
    ) -> tuple[list[str], list[dict[str, Scalar]], list[int], Sequence[int], int]:
        """The distinct parameter sets in first-seen order as columns, and how many merged.

        (param_ids, parameters, every seed in task order, offset of each set's first seed): the
        layout of :class:`GroupedTasks`. Each set is hashed once and its seeds derived once.
        """
        sets = self.parameter_sets
        n = self.n_replicates
        if _plain_dicts(sets):  # no explicit seeds: every set gets n replicates
            param_ids = _hash_many(sets)
            if len(set(param_ids)) == len(param_ids):
                offsets = range(0, len(param_ids) * n + 1, n)
                return param_ids, list(sets), _flat_seeds(param_ids, n), offsets, 0
        groups: dict[str, tuple[dict[str, Scalar], list[int]]] = {}
        merged = 0
        for entry in sets:
            explicit = _is_explicit(entry)
            params = entry["params"] if explicit else entry
            pid = _hash_canonical(params)
            group = groups.get(pid)
            if group is None:
                seeds = [entry["seed"]] if explicit else replicate_seeds(pid, n)
                groups[pid] = (params, seeds)
                continue
            existing = group[1]
            wanted = [entry["seed"]] if explicit else replicate_seeds(pid, n)
            added = [s for s in wanted if s not in existing]
            if not added:
                merged += 1
            existing.extend(added)
        values = groups.values()
        flat = list(chain.from_iterable(seeds for _, seeds in values))
        offsets_list = list(accumulate((len(seeds) for _, seeds in values), initial=0))
        return list(groups), [params for params, _ in values], flat, offsets_list, merged

    # -- files ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The study file form, stamped with the current ``format_version``."""
        data = self.model_dump(mode="json")
        data["format_version"] = FORMAT_VERSION
        return data

    def to_json(self, *, indent: int | None = None) -> str:
        """JSON study file; ``SimulationStudy.from_json(s.to_json()) == s``."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_yaml(self) -> str:
        """YAML study file (same content as :meth:`to_json`)."""
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))

    @classmethod
    def from_yaml(cls, text: str) -> SimulationStudy:
        """Parse a YAML study file (limits and duplicate keys: :mod:`modelops_contracts._loading`).

        Raises:
            ContractViolationError: the text is not valid YAML, breaks a parsing limit, repeats
                a key, or is not a valid study.
        """
        return cls._from_document(parse_yaml(text, what="study file"))

    @classmethod
    def from_json(cls, text: str | bytes) -> SimulationStudy:
        """Parse a JSON study file, with the same limits as :meth:`from_yaml`.

        Raises:
            ContractViolationError: the text is not valid JSON, breaks a parsing limit, repeats
                a key, or is not a valid study.
        """
        return cls._from_document(parse_json(text, what="study file"), parsed_json=True)

    @classmethod
    def load(cls, path: str | Path) -> SimulationStudy:
        """Read a study file: ``.json`` as JSON, anything else as YAML (a JSON superset).

        Raises:
            ContractViolationError: the file cannot be read, is too large, is not valid, or is
                not a valid study.
        """
        data = read_document(path, what="study file")
        return cls._from_document(data, parsed_json=Path(path).suffix.lower() == ".json")

    @classmethod
    def _from_document(cls, data: Any, *, parsed_json: bool = False) -> SimulationStudy:
        """Validate a parsed file; ``parsed_json``: parsed from JSON here, so nothing else holds
        its parameter sets (JSON has no aliases) and they need not be copied."""
        if not isinstance(data, dict):
            raise ContractViolationError(
                f"a study file must be a mapping of fields, got {type(data).__name__}",
                field="study",
                value=None,
            )
        sets = data.get("parameter_sets")
        if not parsed_json or type(sets) is not list:
            return cls.from_dict(data)
        token = _OWNED_SETS.set(id(sets))
        try:
            return cls.from_dict(data)
        finally:
            _OWNED_SETS.reset(token)


def _check_version(version: Any) -> None:
    if type(version) is not int or version < 1:
        raise ContractViolationError(
            f"format_version must be a positive int, got {version!r}",
            field="format_version",
            value=version,
        )
    if version > FORMAT_VERSION:
        raise ContractViolationError(
            f"study format_version {version} is newer than this ModelOps understands "
            f"({FORMAT_VERSION}); upgrade modelops",
            field="format_version",
            value=version,
        )


_KINDS: dict[type, str] = {bool: "bool", int: "number", float: "number", str: "str"}


def _check_kinds(sets: list[dict[str, Any]]) -> None:
    """Each parameter keeps one kind (bool, number or str) across the sets; ints and floats mix.

    A parameter is a column of every output, so ``a: 1`` in one set and ``a: "x"`` in another
    could not be stored in one column; it is refused here as bad input.

    Raises:
        ContractViolationError: naming the parameter, both kinds and both sets.
    """
    first: dict[str, tuple[str, type, int]] = {}
    kinds = _KINDS
    for index, entry in enumerate(sets):
        params = entry["params"] if _is_explicit(entry) else entry
        for name, value in params.items():
            kind = kinds[type(value)]
            seen = first.get(name)
            if seen is None:
                first[name] = (kind, type(value), index)
            elif seen[0] != kind:
                raise ContractViolationError(
                    f"parameter {name!r} is {seen[1].__name__} in parameter_sets[{seen[2]}] but "
                    f"{type(value).__name__} in parameter_sets[{index}]; a parameter keeps one "
                    "kind across the study (ints and floats may mix)",
                    field=f"parameter_sets[{index}].{name}",
                    value=value,
                )


_PLAIN_TYPES = frozenset((float, int, str, bool))
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _plain_dicts(sets: list[Any] | tuple[Any, ...]) -> bool:
    """Whether every entry is a ``dict`` without a ``params`` key (no explicit seed, no legacy
    wrapper), told without a Python-level loop over the entries."""
    return set(map(type, sets)) == {dict} and not any(
        map(dict.__contains__, sets, repeat("params"))
    )


def _plain_canonical(
    value: list[Any] | tuple[Any, ...], *, owned: bool = False
) -> list[dict[str, Any]] | None:
    """Canonical copies of the parameter sets when they are plain dicts of plain scalars.

    This is the common study: str keys; floats, ints, strs and bools; no explicit seeds. Such
    sets are checked a column at a time (C-level passes over every key and value) instead of
    one value at a time; the result equals what :func:`_canonical_entry` and
    :func:`_check_kinds` give. None when a set needs the general path (which also names any
    error), e.g. a numpy value, a NaN, an int beyond 64 bits or an explicit seed. ``owned``:
    nothing else holds the dicts (a file just parsed), so they are kept instead of copied.
    """
    if not _plain_dicts(value):
        return None
    if not {str}.issuperset(map(type, chain.from_iterable(value))):
        return None

    def values() -> Any:
        return chain.from_iterable(map(dict.values, value))

    types = set(map(type, values()))
    if not _PLAIN_TYPES.issuperset(types):
        return None
    negative_zero = False
    if float in types:

        def floats() -> Any:
            return values() if types == {float} else filter(float.__instancecheck__, values())

        if not math.isfinite(sum(floats())):  # a finite sum has only finite terms
            return None
        negative_zero = _has_negative_zero(floats())
    if int in types:  # bools come along, and are in range
        if min(filter(int.__instancecheck__, values())) < _INT64_MIN:
            return None
        if max(filter(int.__instancecheck__, values())) > _INT64_MAX:
            return None
    sets: list[dict[str, Any]] = list(value) if owned else list(map(dict.copy, value))
    if negative_zero:  # fold -0.0 into 0.0, as canonical_params does, in the sets holding a zero
        for params in compress(sets, map(contains, map(dict.values, sets), repeat(0.0))):
            for key, v in params.items():
                if type(v) is float and v == 0.0:
                    params[key] = 0.0
    if len({_KINDS[t] for t in types}) > 1:
        _check_kinds(sets)
    return sets


_NEGATIVE_ZERO = array("d", [-0.0]).tobytes()  # as a native C double


def _has_negative_zero(floats: Iterable[float]) -> bool:
    """Whether some float is -0.0: the floats as C doubles, searched for its bytes."""
    raw = array("d", floats).tobytes()
    at = raw.find(_NEGATIVE_ZERO)
    while at != -1:
        if at % 8 == 0:  # a whole double, not the tail of one and the head of the next
            return True
        at = raw.find(_NEGATIVE_ZERO, at + 1)
    return False


def _is_explicit(entry: Mapping[str, Any]) -> bool:
    return "params" in entry and "seed" in entry and isinstance(entry["params"], Mapping)


def _is_legacy_wrapper(entry: Any) -> bool:
    return (
        isinstance(entry, Mapping)
        and set(entry) == {"params"}
        and isinstance(entry["params"], Mapping)
    )


_NAMING_METADATA = ("design",)
"""Metadata entries that change what a job's results mean, not what it runs: a sensitivity
design's row layout. They name the job too, so two designs that happen to share every task
(a small Morris grid) are two jobs, each with its own record, sharing the cached tasks."""


def _content_job_id(tasks: GroupedTasks, metadata: Mapping[str, Any]) -> str:
    """``job-`` + 16 hex of the job's content digest (see :meth:`SimJob.content_digest`), mixed
    with the naming metadata entries when the study has any (ids of other studies unchanged)."""
    digest = _content_digest(tasks)
    naming = {key: metadata[key] for key in _NAMING_METADATA if key in metadata}
    if naming:
        text = json.dumps(naming, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        named = blake2b(f"modelops:job-named:v1|{digest}|{text}".encode(), digest_size=8)
        return "job-" + named.hexdigest()
    return "job-" + digest[:16]
