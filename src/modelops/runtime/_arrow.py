"""Keep pyarrow from importing pandas in a worker whose model does not use pandas.

The first time pyarrow converts Python values (``pa.array([...])``) it imports pandas, when
installed, to recognise pandas objects: about 0.3 s, paid by every fresh worker on its first
chunk, or by the fork server for all of them. A worker calls :func:`skip_pandas_probe` once: pyarrow
then records pandas as absent, and never imports it. Once pandas is imported anyway (by the
model), :func:`pandas_ready` gives pyarrow its pandas support back: the runtime calls it once a
chunk's model is loaded and before it converts a pandas object. (A model that imports pandas
inside a task and hands pandas objects to pyarrow itself gets that support from its next chunk.)

Only worker processes skip the probe: a process that imports the runtime (the driver, a user's
session running the in-process backend) keeps pyarrow's default.
"""

from __future__ import annotations

import contextlib
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__all__ = ["pandas_ready", "skip_pandas_probe"]

_skipped = [False]  # the probe ran while pandas was hidden, and pandas is not back yet


class _HidePandas:
    """An import finder under which ``import pandas`` fails (for pyarrow's probe only)."""

    @staticmethod
    def find_spec(
        name: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "pandas":
            raise ModuleNotFoundError("hidden from pyarrow's first probe", name=name)
        return None


def skip_pandas_probe() -> None:
    """Have pyarrow's one pandas probe find no pandas, unless pandas is imported already."""
    if "pandas" in sys.modules or _skipped[0]:
        return
    import pyarrow as pa

    sys.meta_path.insert(0, _HidePandas)
    try:
        pa.array([0])  # the probe: pyarrow remembers the answer for the process
    finally:
        sys.meta_path.remove(_HidePandas)
    _skipped[0] = "pandas" not in sys.modules


def pandas_ready() -> None:
    """Give pyarrow its pandas support back if pandas has been imported since the probe."""
    if not _skipped[0] or "pandas" not in sys.modules:
        return
    _skipped[0] = False
    import pyarrow as pa

    with contextlib.suppress(ImportError):  # a pandas pyarrow cannot use: as if not installed
        pa.lib._pandas_api.is_array_like(None)  # a check that imports pandas again if needed
