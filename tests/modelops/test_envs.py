"""Bundle environments built with uv (real uv, real PyPI packages, real virtual environments)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import threading
from pathlib import Path

import polars as pl
import pytest

from modelops.envs import (
    ENV_FILE,
    declared_requirements,
    ensure_environment,
    list_environments,
    prune_environments,
)
from modelops_contracts.errors import BundleError
from tests.modelops.cli.conftest import mops_executable, run_mops
from tests.modelops.services.conftest import DaskCluster


def _bundle(root: Path, name: str, files: dict[str, str]) -> Path:
    bundle = root / name
    bundle.mkdir()
    for file, text in files.items():
        (bundle / file).write_text(text, encoding="utf-8")
    return bundle


def _version(python: Path) -> str:
    code = "import packaging; print(packaging.__version__)"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout


def test_what_a_bundle_declares(tmp_path: Path) -> None:
    none = _bundle(tmp_path, "none", {"model.py": ""})
    assert declared_requirements(none) is None
    pinned = _bundle(tmp_path, "pinned", {"requirements.txt": "packaging==23.2  # why\n"})
    assert declared_requirements(pinned) == declared_requirements(pinned)
    found = declared_requirements(pinned)
    assert found is not None and (found.source, found.pins) == (
        "requirements.txt",
        ("packaging==23.2",),
    )
    project = '[project]\nname = "m"\nversion = "0"\ndependencies = ["packaging>=24,<24.2"]\n'
    ranged = _bundle(tmp_path, "ranged", {"pyproject.toml": project})
    resolved = declared_requirements(ranged)
    assert resolved is not None and resolved.source == "pyproject.toml"
    assert resolved.pins == ("packaging==24.1",)  # uv resolved the range to one pin
    locked = _bundle(
        tmp_path,
        "locked",
        {"requirements.txt": "packaging\n", "requirements.lock": "packaging==23.2\n"},
    )
    lock = declared_requirements(locked)
    assert lock is not None and lock.source == "requirements.lock" and lock.key == found.key


def test_a_resolution_is_kept_in_the_cache_until_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranged = _bundle(tmp_path, "ranged", {"requirements.txt": "packaging>=23,<23.3\n"})
    cache = tmp_path / "envs"
    first = declared_requirements(ranged, cache)
    assert first is not None and first.pins == ("packaging==23.2",)
    (kept,) = (cache / "resolved").glob("*.txt")

    def no_uv(args: list[str], what: str, *, stdin: str | None = None) -> str:
        raise AssertionError(f"uv ran again: {what}")

    with monkeypatch.context() as patch:
        patch.setattr("modelops.envs._uv", no_uv)
        assert declared_requirements(ranged, cache) == first  # from the cache, not from uv
    assert prune_environments(cache) == []  # no environment: only the resolution goes
    assert not kept.exists()
    assert declared_requirements(ranged, cache) == first  # resolved again


def test_two_bundles_two_environments_each_with_its_version(tmp_path: Path) -> None:
    cache = tmp_path / "envs"
    old = declared_requirements(_bundle(tmp_path, "old", {"requirements.txt": "packaging==23.2\n"}))
    new = declared_requirements(_bundle(tmp_path, "new", {"requirements.txt": "packaging==24.1\n"}))
    assert old is not None and new is not None and old.key != new.key
    steps: list[str] = []
    first = ensure_environment(old, cache, on_progress=steps.append)
    assert any(s.startswith("building environment") for s in steps)
    second = ensure_environment(new, cache)
    assert _version(first.python).strip() == "23.2" and _version(second.python).strip() == "24.1"
    assert first.packages["packaging"] == "23.2" and "modelops" in first.packages
    assert "polars" not in first.packages and "dask" not in first.packages  # only the runtime
    code = "import modelops.runtime.chunk, modelops.services._worker"
    subprocess.run([first.python, "-c", code], check=True)  # the runtime imports in it
    again: list[str] = []
    assert ensure_environment(old, cache, on_progress=again.append).path == first.path
    assert again == []  # reused, not rebuilt
    assert {e.key for e in list_environments(cache)} == {old.key, new.key}


def test_a_bundle_s_own_pin_of_a_runtime_package_wins(tmp_path: Path) -> None:
    pins = "packaging==23.2\npathspec==0.11.2\n"  # the driver has another pathspec
    found = declared_requirements(_bundle(tmp_path, "b", {"requirements.txt": pins}))
    assert found is not None
    env = ensure_environment(found, tmp_path / "envs")
    assert env.packages["pathspec"] == "0.11.2"
    assert env.packages["pyarrow"] == importlib.metadata.version("pyarrow")  # not pinned: ours


def test_an_unresolvable_requirement_leaves_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "envs"
    bad = _bundle(tmp_path, "bad", {"requirements.txt": "modelops-no-such-package-xyz==1.0\n"})
    found = declared_requirements(bad)
    assert found is not None
    with pytest.raises(BundleError, match=r"cannot install the bundle's requirements: .*no-such"):
        ensure_environment(found, cache)
    assert list_environments(cache) == []
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    ranged = _bundle(tmp_path, "ranged", {"requirements.txt": "modelops-no-such-package-xyz>=1\n"})
    with pytest.raises(BundleError, match="cannot resolve the requirements"):
        declared_requirements(ranged)
    prune_environments(cache)
    assert list(cache.iterdir()) == []


def test_two_builds_at_once_build_once(tmp_path: Path) -> None:
    cache = tmp_path / "envs"
    found = declared_requirements(_bundle(tmp_path, "b", {"requirements.txt": "packaging==23.2\n"}))
    assert found is not None
    steps: list[str] = []
    lock = threading.Lock()

    def build() -> None:
        def say(line: str) -> None:
            with lock:
                steps.append(line)

        ensure_environment(found, cache, on_progress=say)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(s.startswith("building environment") for s in steps) == 1
    assert (cache / found.key / ENV_FILE).is_file()


def test_mops_env_build_list_prune(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "b", {"requirements.txt": "packaging==23.2\n"})
    store = tmp_path / "store"
    built = run_mops("env", "build", "--bundle", bundle, "--store", store, timeout=300)
    assert built.code == 0, built.stderr
    assert "ready in" in built.stdout and "building environment" in built.stderr
    listed = run_mops("env", "list", "--store", store)
    assert "packaging==23.2" in listed.stdout
    kept = run_mops("env", "prune", "--store", store)
    assert kept.stdout.strip() == "removed 0 environment(s)"
    pruned = run_mops("env", "prune", "--store", store, "--older-than", 0)
    assert pruned.stdout.startswith("removed 1 environment(s)")
    assert run_mops("env", "list", "--store", store).stdout.strip() == "no environments"
    none = run_mops("env", "build", "--bundle", _bundle(tmp_path, "n", {}), "--store", store)
    assert (
        none.code == 2 and none.stderr.startswith("error: bundle ") and "declares no" in none.stderr
    )
    bad = _bundle(tmp_path, "bad", {"requirements.txt": "modelops-no-such-package-xyz==1.0\n"})
    failed = run_mops("env", "build", "--bundle", bad, "--store", store, timeout=300)
    assert failed.code == 2
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no-such" in errors[0]


VERSION_MODEL = """
import packaging


def version(params, seed):
    return {"summary": {"packaging": packaging.__version__}}
"""


def _run_both_bundles(tmp_path: Path, *flags: object) -> tuple[Path, Path]:
    """Run a study of each packaging-pinned bundle into one store: each row shows its own
    version and each job's status the environment it ran in. The store and the study."""
    store = tmp_path / "store"
    study = tmp_path / "study.yaml"
    study.write_text("model: ver.version\nparameter_sets:\n  - {x: 1}\n  - {x: 2}\n")
    task_ids: list[set[str]] = []
    for version in ("23.2", "24.1"):
        bundle = _bundle(
            tmp_path,
            version,
            {"ver.py": VERSION_MODEL, "requirements.txt": f"packaging=={version}\n"},
        )
        done = run_mops(
            "run", study, "--bundle", bundle, "--store", store, *flags, "--json", timeout=300
        )  # fmt: skip
        assert done.code == 0, done.stderr
        job_id = json.loads(done.stdout)["job_id"]
        rows = pl.read_parquet(store / "jobs" / job_id / "outputs" / "summary")
        assert rows["packaging"].to_list() == [version, version]  # what the task imported
        task_ids.append(set(rows["task_id"].to_list()))
        status = run_mops("status", job_id, "--store", store).stdout
        assert f"packaging=={version}" in status  # the provenance of the environment it ran in
    assert not task_ids[0] & task_ids[1]  # another pin: another bundle digest, other tasks
    return store, study


def test_two_bundles_in_one_store_each_run_in_their_own_environment(tmp_path: Path) -> None:
    store, study = _run_both_bundles(tmp_path)
    assert len(list_environments(store / "envs")) == 2

    bundle = tmp_path / "23.2"
    current = run_mops(
        "run", study, "--bundle", bundle, "--store", tmp_path / "other", "--env", "current",
        "--json",
    )  # fmt: skip
    assert current.code == 0, current.stderr
    assert "warning: the bundle requires packaging==23.2" in current.stderr
    bad = run_mops("run", study, "--bundle", bundle, "--store", tmp_path / "e", "--env", "mine")
    assert bad.code == 2 and "env must be one of auto, current" in bad.stderr


def test_dask_workers_run_each_bundle_in_its_own_environment(
    tmp_path: Path, dask_cluster: DaskCluster
) -> None:
    _run_both_bundles(tmp_path, "--scheduler", dask_cluster.address)


PINNED_MODEL = """
import packaging

from modelops.model import Model, Parameter

assert packaging.__version__ == "23.2", packaging.__version__


class Pinned(Model):
    parameters = (Parameter("beta", 0.1, 0.9),)

    def simulate(self, params, seed):
        return {"summary": {"packaging": packaging.__version__}}
"""


def test_mops_sample_reads_the_model_in_its_environment(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path, "pinned", {"pinned.py": PINNED_MODEL, "requirements.txt": "packaging==23.2\n"}
    )
    args = ["sample", "grid", "pinned.Pinned", "--bundle", bundle, "--n", 3]
    here = run_mops(*args, "--env", "current", "--store", tmp_path / "s")
    assert here.code == 2 and "AssertionError" in here.stderr.strip().splitlines()[-1]
    study = tmp_path / "study.yaml"
    done = run_mops(*args, "--store", tmp_path / "s", "-o", study, timeout=300)
    assert done.code == 0, done.stderr
    ran = run_mops("run", study, "--bundle", bundle, "--store", tmp_path / "s", "--json")
    assert ran.code == 0, ran.stderr
    assert json.loads(ran.stdout)["succeeded"] == 3


def test_a_build_on_a_terminal_shows_a_spinner_and_keeps_the_last_step(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "b", {"requirements.txt": "packaging==23.2\n"})
    ours, theirs = os.openpty()  # a real terminal: rich draws the spinner there
    proc = subprocess.Popen(
        [mops_executable(), "env", "build", "--bundle", bundle, "--store", tmp_path / "s"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=theirs,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(theirs)
    shown = bytearray()
    while True:  # read as it comes, so the terminal never fills; EIO once the child is gone
        try:
            chunk = os.read(ours, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(ours)
    assert proc.wait(timeout=300) == 0
    text = shown.decode(errors="replace")
    assert "\x1b[" in text  # drawn, not printed as plain lines
    assert "installing 1 requirements and the ModelOps runtime" in text
    last = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text.rstrip().splitlines()[-1]).strip()
    assert re.fullmatch(r"environment [0-9a-f]{16} built in [0-9.]+ s", last), last  # it stays
