"""Workers skip pyarrow's pandas probe, and get pandas support back once a model imports pandas.

:func:`skip_pandas_probe` changes pyarrow's state for the whole process, so every case runs in
a fresh interpreter, as a worker would (``init_worker`` calls it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

PANDAS_FRAME = """
import pandas as pd
frame = pd.DataFrame({
    "i": pd.array([1, None], dtype="Int64"),
    "s": pd.array(["x", None], dtype="string"),
    "c": pd.Categorical(["a", "b"]),
    "t": pd.to_datetime(["2020-01-01", None]),
})
"""

CONVERT = """
from modelops.runtime.tables import to_table
tables = [to_table("frame", frame), to_table("dict", {"i": frame["i"], "c": frame["c"]})]
out["tables"] = [[str(t.schema), t.to_pylist()] for t in tables]
"""


def _in_fresh_process(code: str, *, skip: bool) -> dict[str, Any]:
    """Run ``code`` (which fills the dict ``out``) after the worker's probe skip, or without."""
    prologue = "import json, sys\nout = {}\n"
    if skip:
        prologue += "from modelops.runtime._arrow import skip_pandas_probe\nskip_pandas_probe()\n"
    epilogue = '\nout["pandas"] = "pandas" in sys.modules\nprint(json.dumps(out, default=str))\n'
    proc = subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code) + epilogue],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_without_the_probe_pyarrow_builds_arrays_without_importing_pandas() -> None:
    code = """
    import numpy as np
    import pyarrow as pa
    from modelops.runtime.tables import to_table
    pa.array([1.0, 2.0]); pa.array(["a", None], pa.string()); pa.array(np.arange(3))
    to_table("o", {"x": [1, 2], "y": np.ones(2)})
    """
    assert _in_fresh_process(code, skip=True)["pandas"] is False
    assert _in_fresh_process(code, skip=False)["pandas"] is True  # what the skip avoids


def test_pandas_outputs_convert_as_usual_once_pandas_is_imported() -> None:
    skipped = _in_fresh_process(PANDAS_FRAME + CONVERT, skip=True)
    usual = _in_fresh_process(PANDAS_FRAME + CONVERT, skip=False)
    assert skipped["tables"] == usual["tables"]
    assert "int64" in skipped["tables"][0][0]  # nullable Int64 with <NA>: a null, not an error


def test_a_model_that_imports_pandas_gets_pyarrows_pandas_support(tmp_path: Path) -> None:
    """The model hands a pandas object with <NA> to pyarrow itself, after the probe was skipped."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "frames.py").write_text(
        textwrap.dedent(
            """
            import pandas as pd
            import pyarrow as pa

            def own_arrow(params, seed):
                column = pa.array(pd.Series([params["x"], None], dtype="Int64"))
                return {"out": pa.table({"v": column})}
            """
        )
    )
    code = f"""
    from modelops.runtime import ChunkSpec, ChunkTask, run_chunk
    task = ChunkTask(0, "t" * 64, "p", 0, 1, {{"x": 3}})
    result = run_chunk(ChunkSpec({str(bundle)!r}, "frames.own_arrow/baseline", None, {{}}, [task]))
    out["outcome"] = [result.outcomes[0].ok, result.outcomes[0].message]
    out["rows"] = result.tables["out"].column("v").to_pylist()
    """
    out = _in_fresh_process(code, skip=True)
    assert out["outcome"] == [True, None]
    assert out["rows"] == [3, None]
