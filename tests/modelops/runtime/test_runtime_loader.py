"""Loading entrypoints from bundle directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelops.runtime import (
    ModelInfo,
    bundle_modules,
    load_entrypoint,
    resolve_entrypoint,
    unload_bundles,
)
from modelops_contracts.errors import ModelError


@pytest.fixture(autouse=True)
def _clean_loader() -> Iterator[None]:
    unload_bundles()
    yield
    unload_bundles()


def write_bundle(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


FUNCTIONS = """
def plain(params, seed):
    return {"out": {"x": params["x"], "seed": seed}}

def with_scenario(params, seed, scenario="baseline"):
    return {"out": {"scenario": scenario}}

def with_config(params, seed, *, config=None):
    return {"out": {"days": (config or {}).get("days", -1)}}

def not_a_mapping(params, seed):
    return [1, 2]

VALUE = 42

class NotAModel:
    pass
"""

COUNTED = """
from modelops.model import Model, Parameter, Scenario

CREATED = []

class Counted(Model):
    parameters = (Parameter("x", 0, 10),)
    scenarios = (Scenario("high", params={"x": 9}),)
    outputs = ("out",)

    def __init__(self):
        CREATED.append(self)

    def simulate(self, params, seed):
        return {"out": {"x": params["x"], "scenario": self.scenario}}

class Lazy(Model):
    pass

class Extra(Counted):
    def simulate(self, params, seed):
        return {"out": {"x": 1.0}, "other": {"y": 2}}
"""


def test_plain_function_runs_baseline(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"funcs.py": FUNCTIONS})
    runner = load_entrypoint(bundle, "funcs.plain/baseline")
    assert runner.kind == "function"
    assert runner.run({"x": 3}, 11) == {"out": {"x": 3, "seed": 11}}
    assert runner.scenario_names() == ("baseline",)


def test_plain_function_without_scenario_keyword_has_only_baseline(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"funcs.py": FUNCTIONS})
    with pytest.raises(ModelError, match=r"no scenario 'lockdown'.*'scenario' keyword"):
        load_entrypoint(bundle, "funcs.plain/lockdown")


def test_plain_function_with_scenario_keyword_gets_the_name(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"funcs.py": FUNCTIONS})
    runner = load_entrypoint(bundle, "funcs.with_scenario/lockdown")
    assert runner.run({}, 0) == {"out": {"scenario": "lockdown"}}
    assert load_entrypoint(bundle, "funcs.with_scenario/baseline").run({}, 0) == {
        "out": {"scenario": "baseline"}
    }


def test_plain_function_config(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"funcs.py": FUNCTIONS})
    assert load_entrypoint(bundle, "funcs.with_config/baseline").run({}, 0, {"days": 5}) == {
        "out": {"days": 5}
    }
    plain = load_entrypoint(bundle, "funcs.plain/baseline")
    with pytest.raises(ModelError, match="does not accept a config"):
        plain.check(config={"days": 5})
    with pytest.raises(ModelError, match="does not accept a config"):
        plain.run({"x": 1}, 0, {"days": 5})


def test_result_must_be_a_mapping(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"funcs.py": FUNCTIONS})
    with pytest.raises(ModelError, match="returned list"):
        load_entrypoint(bundle, "funcs.not_a_mapping/baseline").run({}, 0)


def test_model_is_instantiated_once_per_process(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"counted.py": COUNTED})
    first = load_entrypoint(bundle, "counted.Counted/baseline")
    again = load_entrypoint(str(bundle), "counted.Counted/baseline")
    high = load_entrypoint(bundle / ".", "counted.Counted/high")
    assert first is again
    for seed in range(5):
        first.run({"x": 1}, seed)
    assert high.run({"x": 1}, 0) == {"out": {"x": 9.0, "scenario": "high"}}
    assert first.run({"x": 1}, 0) == {"out": {"x": 1.0, "scenario": "baseline"}}
    assert len(sys.modules["counted"].CREATED) == 1


def test_model_unknown_scenario_lists_known(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"counted.py": COUNTED})
    with pytest.raises(ModelError, match=r"no scenario 'low'.*baseline, high"):
        load_entrypoint(bundle, "counted.Counted/low")


def test_model_without_simulate_is_rejected(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"counted.py": COUNTED})
    with pytest.raises(ModelError, match="does not implement simulate"):
        load_entrypoint(bundle, "counted.Lazy/baseline")


def test_model_undeclared_output_is_an_error(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"counted.py": COUNTED})
    with pytest.raises(ModelError, match=r"undeclared output.*'other'"):
        load_entrypoint(bundle, "counted.Extra/baseline").run({"x": 1}, 0)


def test_import_error_carries_the_original_error(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"sir.py": "import scipyx\n"})
    with pytest.raises(ModelError) as info:
        load_entrypoint(bundle, "sir.SIR/baseline")
    assert "cannot import 'sir.SIR' from bundle: ModuleNotFoundError: No module named 'scipyx'" in (
        str(info.value)
    )
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_error_while_importing_is_reported(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"broken.py": "x = 1 / 0\n"})
    with pytest.raises(ModelError, match="ZeroDivisionError: division by zero"):
        load_entrypoint(bundle, "broken.f/baseline")


def test_missing_attribute_and_wrong_kind(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"funcs.py": FUNCTIONS})
    with pytest.raises(ModelError, match="module 'funcs' has no attribute 'nope'"):
        load_entrypoint(bundle, "funcs.nope/baseline")
    with pytest.raises(ModelError, match="is a int, not a function or a Model subclass"):
        load_entrypoint(bundle, "funcs.VALUE/baseline")
    with pytest.raises(ModelError, match="is a type, not a function"):
        load_entrypoint(bundle, "funcs.NotAModel/baseline")


@pytest.mark.parametrize("entrypoint", ["funcs.plain", "funcs/baseline", "funcs.plain/Base"])
def test_malformed_entrypoint(tmp_path: Path, entrypoint: str) -> None:
    bundle = write_bundle(tmp_path / "b", {"funcs.py": FUNCTIONS})
    with pytest.raises(ModelError):
        load_entrypoint(bundle, entrypoint)


def test_two_bundles_with_the_same_module_names_do_not_mix(tmp_path: Path) -> None:
    files = {
        "model.py": "from helpers.value import VALUE\n\ndef run(params, seed):\n"
        "    return {'out': {'v': VALUE}}\n",
        "helpers/__init__.py": "",
    }
    a = write_bundle(tmp_path / "a", {**files, "helpers/value.py": "VALUE = 'a'\n"})
    b = write_bundle(tmp_path / "b", {**files, "helpers/value.py": "VALUE = 'b'\n"})
    assert load_entrypoint(a, "model.run/baseline").run({}, 0) == {"out": {"v": "a"}}
    assert set(bundle_modules(a)) == {"model", "helpers", "helpers.value"}
    assert load_entrypoint(b, "model.run/baseline").run({}, 0) == {"out": {"v": "b"}}
    assert bundle_modules(a) == {}
    assert str(a.resolve()) not in sys.path
    assert load_entrypoint(a, "model.run/baseline").run({}, 0) == {"out": {"v": "a"}}


def test_bundle_module_shadows_an_already_imported_one(tmp_path: Path) -> None:
    elsewhere = write_bundle(tmp_path / "elsewhere", {"shared.py": "WHO = 'elsewhere'\n"})
    sys.path.insert(0, str(elsewhere))
    try:
        import shared  # type: ignore[import-not-found]

        assert shared.WHO == "elsewhere"
    finally:
        sys.path.remove(str(elsewhere))
    bundle = write_bundle(
        tmp_path / "b",
        {"shared.py": "WHO = 'bundle'\ndef f(params, seed):\n    return {'o': {'who': WHO}}\n"},
    )
    assert load_entrypoint(bundle, "shared.f/baseline").run({}, 0) == {"o": {"who": "bundle"}}
    unload_bundles()
    assert "shared" not in sys.modules


def test_modules_imported_before_the_bundle_are_kept(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"pre.py": "X = 1\n", "main.py": FUNCTIONS})
    sys.path.insert(0, str(bundle))
    try:
        import pre  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(bundle))
    load_entrypoint(bundle, "main.plain/baseline")
    unload_bundles()
    assert sys.modules.get("pre") is pre and "main" not in sys.modules
    del sys.modules["pre"]


def test_resolve_entrypoint_checks_params_and_outputs(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"counted.py": COUNTED})
    info = resolve_entrypoint(
        bundle, "counted.Counted/high", params=[{"x": 1}, {"x": 2.5}], outputs=["out"]
    )
    assert info == ModelInfo(
        entrypoint="counted.Counted/high",
        import_path="counted.Counted",
        scenario="high",
        kind="model",
        scenarios=("baseline", "high"),
        parameters=info.parameters,
        outputs=("out",),
    )
    assert info.parameters is not None and [p.name for p in info.parameters] == ["x"]
    with pytest.raises(ModelError, match=r"no parameter\(s\) 'y'"):
        resolve_entrypoint(bundle, "counted.Counted/high", params=[{"x": 1}, {"y": 1}])
    with pytest.raises(ModelError, match="outside"):
        resolve_entrypoint(bundle, "counted.Counted/high", params=[{"x": 11}])
    with pytest.raises(ModelError, match=r"does not produce output\(s\) 'incidence'"):
        resolve_entrypoint(bundle, "counted.Counted/high", outputs=["out", "incidence"])


def test_resolve_plain_function(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"funcs.py": FUNCTIONS})
    info = resolve_entrypoint(bundle, "funcs.plain/baseline", params=[{"x": 1}], outputs=["o"])
    assert (info.kind, info.parameters, info.outputs) == ("function", None, None)
    with pytest.raises(ModelError, match="does not accept a config"):
        resolve_entrypoint(bundle, "funcs.plain/baseline", config={"days": 3})


# -- isolation in worker processes ---------------------------------------------------------------

ISOLATION_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    live, extra = sys.argv[1], sys.argv[2]
    sys.path.insert(0, live)
    sys.path.append(extra)
    import live_helper  # imported before isolation, from the live directory
    from modelops.runtime.loader import isolate_import_path, load_entrypoint
    isolate_import_path()
    found = {}
    for name in ("live_helper", "cwd_helper", "env_helper", "extra_helper"):
        sys.modules.pop(name, None)
        try:
            __import__(name)
            found[name] = True
        except ModuleNotFoundError:
            found[name] = False
    import numpy, modelops.runtime.chunk  # the environment is still there
    runner = load_entrypoint(sys.argv[3], "model.fn/baseline")
    print(json.dumps({"found": found, "run": runner.run({}, 0), "path": sys.path}))
    """
)


def _run_isolated(tmp_path: Path, model: str) -> subprocess.CompletedProcess[str]:
    """Run the isolation script on a snapshot holding ``model.py``, from a cwd, a PYTHONPATH
    entry and two more directories that each hold a ``<name>_helper.py`` of live code."""
    dirs = {name: tmp_path / name for name in ("live", "cwd", "env", "extra")}
    for name, directory in dirs.items():
        write_bundle(directory, {f"{name}_helper.py": "VALUE = 'live'\n"})
    snapshot = write_bundle(tmp_path / "snapshot", {"model.py": model})
    script = tmp_path / "isolate.py"
    script.write_text(ISOLATION_SCRIPT)
    env = {**os.environ, "PYTHONPATH": f"{dirs['env']}{os.pathsep}"}  # '' too: the cwd
    return subprocess.run(
        [sys.executable, str(script), str(dirs["live"]), str(dirs["extra"]), str(snapshot)],
        capture_output=True,
        text=True,
        cwd=dirs["cwd"],
        env=env,
        timeout=60,
        check=False,
    )


def test_isolated_process_imports_model_code_from_the_snapshot_only(tmp_path: Path) -> None:
    proc = _run_isolated(tmp_path, "def fn(params, seed):\n    import live_helper\n    return {}\n")
    # the model's lazy import of a module its snapshot lacks fails, never finds the live one
    assert proc.returncode != 0
    assert "ModuleNotFoundError: No module named 'live_helper'" in proc.stderr, proc.stderr


def test_isolation_drops_every_place_outside_the_environment(tmp_path: Path) -> None:
    proc = _run_isolated(tmp_path, "def fn(p, s):\n    return {}\n")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["found"] == {
        "live_helper": False,
        "cwd_helper": False,
        "env_helper": False,
        "extra_helper": False,
    }
    assert report["path"][0] == str((tmp_path / "snapshot").resolve())
    assert "" not in report["path"]
    assert not any(entry.startswith(str(tmp_path)) for entry in report["path"][1:])
