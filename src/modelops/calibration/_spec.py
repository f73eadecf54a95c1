"""What defines a calibration: its checked inputs, and the id derived from their content.

The id covers everything that changes the result (model, scenario, config, bundle digest,
space with its fixed values, targets with a digest of their observed data, algorithm and its
settings, seed, budget, batch, replicates, the final re-evaluation) and nothing that does not
(where the data file lies, the number of workers, the backend). So the same command gives the
same id on any machine, and a re-run finds its journal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    from modelops.analysis import Target
    from modelops.sampling import ParameterSpace

__all__ = ["CalibrationSpec", "check_count"]

_ID_PREFIX = "cal-"
_ID_VERSION = "modelops:calibration:v1|"


@dataclass(frozen=True)
class CalibrationSpec:
    """The inputs of one calibration, checked; :attr:`calibration_id` names them."""

    model: str
    scenario: str
    bundle_ref: str
    space: ParameterSpace
    targets: tuple[Target, ...]
    algorithm: str
    settings: Mapping[str, Any]
    seed: int
    budget: int
    replicates: int
    batch: int
    top_k: int
    reeval_replicates: int
    config: Mapping[str, Any] | None = None
    _data_digests: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.space.parameters:
            raise ContractViolationError(
                "the space has no free parameter to calibrate (every parameter is fixed)",
                field="space",
            )
        if not self.targets:
            raise ContractViolationError(
                "a calibration needs targets: give --targets FILE or a 'targets:' list",
                field="targets",
            )
        for name, value in (
            ("budget", self.budget),
            ("replicates", self.replicates),
            ("batch", self.batch),
            ("top-k", self.top_k),
            ("re-evaluation replicates", self.reeval_replicates),
        ):
            check_count(name, value)
        if type(self.seed) is not int or self.seed < 0:
            raise ContractViolationError(
                f"seed must be a non-negative integer, got {self.seed!r}", field="seed"
            )
        if not self._data_digests:
            digests = tuple(_file_digest(t) for t in self.targets)
            object.__setattr__(self, "_data_digests", digests)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model outputs the targets read: the only ones the calibration's tasks write."""
        return tuple(sorted({t.output for t in self.targets}))

    @property
    def entrypoint(self) -> str:
        return f"{self.model}/{self.scenario}"

    def identity(self) -> dict[str, Any]:
        """Everything the id covers, as JSON-compatible data (data files by digest, not path)."""
        targets = []
        for target, digest in zip(self.targets, self._data_digests, strict=True):
            item = target.to_dict()
            item["data"] = digest
            targets.append(item)
        return {
            "model": self.model,
            "scenario": self.scenario,
            "config": dict(self.config or {}),
            "bundle_ref": self.bundle_ref,
            "space": self.space.to_dict(),
            "targets": targets,
            "algorithm": self.algorithm,
            "settings": dict(self.settings),
            "seed": self.seed,
            "budget": self.budget,
            "replicates": self.replicates,
            "batch": self.batch,
            "top_k": self.top_k,
            "reeval_replicates": self.reeval_replicates,
        }

    @property
    def calibration_id(self) -> str:
        """``cal-`` and 16 hex characters of the BLAKE2b digest of :meth:`identity`."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.blake2b((_ID_VERSION + text).encode(), digest_size=8).hexdigest()
        return _ID_PREFIX + digest

    def to_dict(self) -> dict[str, Any]:
        """The spec as written to the journal (data files by path, plus their digests)."""
        data = self.identity()
        # absolute: a report made from another directory still finds the observed data
        data["targets"] = [
            {**t.to_dict(), "data": str(Path(t.data).resolve())} for t in self.targets
        ]
        data["data_digests"] = list(self._data_digests)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationSpec:
        """Read back :meth:`to_dict` (a journal's spec)."""
        from modelops.analysis import targets_from_dicts
        from modelops.sampling import ParameterSpace

        space = ParameterSpace.from_dict(data["space"])
        model = str(data["model"])
        return cls(
            model=model,
            scenario=str(data["scenario"]),
            bundle_ref=str(data["bundle_ref"]),
            space=ParameterSpace(space.parameters, space.fixed, model, space.declared),
            targets=tuple(targets_from_dicts(data["targets"])),
            algorithm=str(data["algorithm"]),
            settings=dict(data["settings"]),
            seed=int(data["seed"]),
            budget=int(data["budget"]),
            replicates=int(data["replicates"]),
            batch=int(data["batch"]),
            top_k=int(data["top_k"]),
            reeval_replicates=int(data["reeval_replicates"]),
            config=data.get("config") or None,
            _data_digests=tuple(data.get("data_digests") or ()),
        )


def check_count(name: str, value: object) -> int:
    """``value`` if it is an int >= 1 (not a bool).

    Raises:
        ContractViolationError: naming ``name`` and the value.
    """
    if type(value) is not int or value < 1:
        raise ContractViolationError(
            f"{name} must be a positive integer, got {value!r}", field=name, value=value
        )
    return value


def _file_digest(target: Target) -> str:
    """SHA-256 of a target's observed data file.

    Raises:
        ContractViolationError: the file cannot be read.
    """
    try:
        data = Path(target.data).read_bytes()
    except OSError as exc:
        raise ContractViolationError(
            f"target {target.name!r}: cannot read {target.data}: {exc.strerror or exc}"
        ) from None
    return "sha256:" + hashlib.sha256(data).hexdigest()
