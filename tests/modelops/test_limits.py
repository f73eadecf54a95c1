"""Bounded memory under hostile input: each case runs ``mops`` under an address-space limit.

A normal ``mops run`` of a small study fits in 1 GB of address space (pyarrow and numpy
reserve some up front); the limit here is 2 GB, so a case that materialises its input (a
billion tasks, an alias bomb, a task returning gigabytes) dies of MemoryError instead of the
one-line error expected.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelops.engine import RunOptions
from modelops.runtime.chunk import TASK_LOG_CHARS, ChunkSpec, ChunkTask, run_chunk
from modelops.services._worker import TASK_FD_LOG_BYTES

MEMORY_LIMIT = 2 * 2**30

MODEL = textwrap.dedent(
    """
    import os
    import sys

    import numpy as np


    def big(params, seed):
        n = int(params["mb"] * 2**20 / 8)
        return {"series": {"value": np.arange(n, dtype=np.float64)}}


    def loud(params, seed):
        line = "x" * 1023 + "\\n"
        for _ in range(params["kb"]):
            sys.stdout.write(line)
        os.write(1, (line * params["kb"]).encode())
        if params.get("fail"):
            print("last words", file=sys.stderr)
            raise ValueError("failed on purpose")
        return {"summary": {"v": 1}}
    """
)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``mops ARGS`` in a child under :data:`MEMORY_LIMIT` of address space."""
    mops = Path(sys.executable).with_name("mops")
    return subprocess.run(
        [str(mops), *map(str, args)],
        preexec_fn=_limit_memory,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    directory = tmp_path / "bundle"
    directory.mkdir()
    (directory / "heavy.py").write_text(MODEL, encoding="utf-8")
    return directory


def bomb(indent: str) -> str:
    lines = [f"{indent}l0: &l0 [{', '.join(['lol'] * 10)}]"]
    lines += [f"{indent}l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


CASES = {
    "replicates": (
        "model: heavy.loud\nn_replicates: 1000000000\nparameter_sets:\n  - kb: 1\n",
        "the study has 1,000,000,000 tasks",
    ),
    "bomb-in-parameter": (
        "model: heavy.loud\nparameter_sets:\n  - kb: 1\n    extra:\n" + bomb("      "),
        "once its aliases are expanded",
    ),
    "bomb-in-metadata": (
        "model: heavy.loud\nparameter_sets:\n  - kb: 1\nmetadata:\n" + bomb("  "),
        "once its aliases are expanded",
    ),
    "deep-list": (
        "model: heavy.loud\nparameter_sets:\n  - kb: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "nested deeper than 64 levels",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_study_fails_in_one_line_under_a_memory_limit(
    case: str, bundle: Path, tmp_path: Path
) -> None:
    text, expected = CASES[case]
    study = tmp_path / "study.yaml"
    study.write_text(text, encoding="utf-8")
    store = tmp_path / "store"

    result = run_limited("run", study, "--bundle", bundle, "--store", store, "--workers", 1)

    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert not store.exists() or not list(store.glob("jobs/*"))


def test_task_over_the_output_cap_fails_under_a_memory_limit(bundle: Path, tmp_path: Path) -> None:
    study = tmp_path / "study.json"
    sets = [{"mb": 100, "i": i} for i in range(2)] + [{"mb": 0.001, "i": 9}]
    study.write_text(json.dumps({"model": "heavy.big", "parameter_sets": sets}))
    store = tmp_path / "store"

    result = run_limited("run", study, "--bundle", bundle, "--store", store, "--workers", 1)

    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    (job_dir,) = store.glob("jobs/*")
    failures = run_limited("failures", job_dir.name, "--store", store)
    assert failures.returncode == 0, failures.stderr
    messages = [line.strip() for line in failures.stdout.splitlines() if "ModelError" in line]
    assert len(messages) == 2
    for message in messages:
        # 100 MB of floats and the key columns of their 13 million rows
        assert message.startswith("ModelError: output 2300 MB exceeds the 64 MB limit per task")


def _spec(tmp_path: Path, model: str, params: list[dict[str, object]], **kw: object) -> ChunkSpec:
    (tmp_path / "heavy.py").write_text(MODEL, encoding="utf-8")
    tasks = [ChunkTask(i, f"{i:064x}", f"{i:064x}", 0, i, p) for i, p in enumerate(params)]
    return ChunkSpec(str(tmp_path), f"heavy.{model}/baseline", None, None, tasks, **kw)  # type: ignore[arg-type]


def test_output_cap_counts_key_columns_and_spares_small_tasks(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "big", [{"mb": 1}, {"mb": 0.01}], max_output_bytes=2 * 2**20)
    result = run_chunk(spec)
    first, second = result.outcomes
    # 1 MB of floats is 131,072 rows of 168 bytes of keys each (ids, replicate, seed, "mb")
    assert not first.ok and first.message is not None
    assert first.message.startswith("output 22 MB exceeds the 2 MB limit per task")
    assert second.ok
    assert result.tables["series"].num_rows == int(0.01 * 2**20 / 8)


def test_python_level_output_is_capped_per_task_and_keeps_the_stderr_tail(
    tmp_path: Path,
) -> None:
    log = tmp_path / "job.log"
    spec = _spec(tmp_path, "loud", [{"kb": 3000}, {"kb": 3000, "fail": True}], log_path=str(log))
    result = run_chunk(spec)
    assert [o.ok for o in result.outcomes] == [True, False]
    assert result.outcomes[1].stderr_tail == "last words\n"
    text = log.read_text()
    cut = 3000 * 1024 - TASK_LOG_CHARS
    assert text.count(f"stdout: [... {cut} characters cut]") == 2
    assert log.stat().st_size < 2 * 1.1 * TASK_LOG_CHARS + 10_000  # the fd writes go elsewhere


def test_descriptor_level_output_is_capped_per_task(bundle: Path, tmp_path: Path) -> None:
    study = tmp_path / "study.json"
    sets = [{"kb": 3000, "i": i} for i in range(3)]
    study.write_text(json.dumps({"model": "heavy.loud", "parameter_sets": sets}))
    store = tmp_path / "store"

    result = run_limited("run", study, "--bundle", bundle, "--store", store, "--workers", 1)

    assert result.returncode == 0, result.stderr[-2000:]
    (log,) = store.glob("jobs/*/job.log")
    text = log.read_bytes()
    cut = 3000 * 1024 - TASK_FD_LOG_BYTES
    assert text.count(f"[... {cut} bytes cut]".encode()) == 3
    assert text.count(b"characters cut]") == 3
    # was 3 x 6 MB: now each task leaves its 1 MB of descriptor output and 0.5 MB of prints
    assert log.stat().st_size < 3 * (TASK_FD_LOG_BYTES + 1.1 * TASK_LOG_CHARS) + 10_000


def test_run_options_refuse_non_positive_limits() -> None:
    with pytest.raises(ValueError, match="commit_bytes must be positive"):
        RunOptions(commit_bytes=0)
    with pytest.raises(ValueError, match="max_task_output_bytes must be positive"):
        RunOptions(max_task_output_bytes=-1)
    assert RunOptions(max_task_output_bytes=None).max_task_output_bytes is None


def test_the_output_cap_is_set_from_the_command_line(bundle: Path, tmp_path: Path) -> None:
    study = tmp_path / "study.json"
    sets = [{"mb": 0.1, "i": 0}]  # 13,107 rows: about 2 MB with its key columns
    study.write_text(json.dumps({"model": "heavy.big", "parameter_sets": sets}))
    common = ["run", study, "--bundle", bundle, "--workers", 1, "--json"]

    tight = run_limited(*common, "--store", tmp_path / "tight", "--max-task-output", 1)
    assert tight.returncode == 1, tight.stderr[-2000:]
    assert json.loads(tight.stdout)["failed"] == 1
    roomy = run_limited(*common, "--store", tmp_path / "roomy", "--max-task-output", 8)
    assert roomy.returncode == 0, roomy.stderr[-2000:]
    assert json.loads(roomy.stdout)["succeeded"] == 1
