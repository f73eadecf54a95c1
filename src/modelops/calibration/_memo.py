"""Answering a finished calibration again without importing the model or the optimisers.

The calibration id needs the space (so the model imported) and the algorithm's settings with
their defaults (so Optuna imported): most of a re-run's time. The store therefore also keeps,
per command, a key over what the command was given (file bytes, the bundle's digest, every
setting, the ModelOps version) naming the calibration it ran. A re-run with the same key finds
the calibration, checks that its targets' data files still have the digests its spec recorded,
and prints the stored answer. Any doubt (no key, an unreadable file, changed data) means: do the
full run, which is always right, only slower.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelops.calibration._journal import CALIBRATIONS_DIR, Journal
from modelops.store._fs import atomic_write_bytes
from modelops_contracts.errors import ModelOpsError

__all__ = ["command_key", "finished_by_key", "remember_key"]

_KEYS_DIR = "keys"


def command_key(inputs: Mapping[str, Any], files: list[Path | None]) -> str | None:
    """A digest of ``inputs`` (JSON-compatible) and the bytes of ``files``; None if unreadable."""
    from modelops import __version__

    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(json.dumps([__version__, dict(inputs)], sort_keys=True, default=str).encode())
    for path in files:
        if path is None:
            hasher.update(b"\0none")
            continue
        try:
            hasher.update(b"\0file" + path.read_bytes())
        except OSError:
            return None
    return hasher.hexdigest()


def remember_key(store_root: Path, key: str | None, calibration_id: str) -> None:
    """Record that the command of ``key`` ran calibration ``calibration_id``."""
    if key is not None:
        path = Path(store_root) / CALIBRATIONS_DIR / _KEYS_DIR / key
        atomic_write_bytes(path, calibration_id.encode())


def finished_by_key(store_root: Path, key: str | None) -> str | None:
    """The finished calibration the command of ``key`` ran, if its data is unchanged."""
    if key is None:
        return None
    try:
        calibration_id = (Path(store_root) / CALIBRATIONS_DIR / _KEYS_DIR / key).read_text().strip()
        journal = Journal(store_root, calibration_id)
        record = journal.record()
    except (OSError, ModelOpsError):  # no key, or a journal in doubt: the full run decides
        return None
    if record.get("status") != "finished":
        return None
    spec = record.get("spec", {})
    for target, digest in zip(spec.get("targets", []), spec.get("data_digests", []), strict=False):
        try:
            data = Path(target["data"]).read_bytes()
        except (OSError, KeyError, TypeError):
            return None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            return None
    return calibration_id
