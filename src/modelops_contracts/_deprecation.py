"""The one way ModelOps deprecates something: name the replacement and the removal version."""

from __future__ import annotations

import warnings

__all__ = ["REMOVAL_VERSION", "warn_deprecated"]

REMOVAL_VERSION = "2.0"


def warn_deprecated(what: str, *, replacement: str, stacklevel: int = 2) -> None:
    """Emit one DeprecationWarning: ``what`` is deprecated, use ``replacement``."""
    warnings.warn(
        f"{what} is deprecated and will be removed in ModelOps {REMOVAL_VERSION}; {replacement}",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
