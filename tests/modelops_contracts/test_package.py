from __future__ import annotations

import subprocess
import sys

import modelops_contracts


def test_importing_contracts_loads_no_heavy_libraries() -> None:
    code = (
        "import sys, modelops_contracts, modelops_contracts.legacy, modelops_contracts.schema;"
        "heavy = {'numpy', 'pandas', 'polars', 'pyarrow', 'dask', 'distributed', 'yaml'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_all_is_sorted_and_complete() -> None:
    names = modelops_contracts.__all__

    # isort-style order (ruff RUF022): CONSTANTS, then Classes, then functions
    def rank(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(names) == sorted(names, key=rank)
    for name in names:
        assert hasattr(modelops_contracts, name), name
