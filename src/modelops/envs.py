"""Bundle environments: a virtual environment per set of declared requirements, built with uv.

A bundle declares its dependencies in ``requirements.txt`` or in ``pyproject.toml``'s
``[project].dependencies``; a ``uv.lock`` (exported with ``uv export --frozen``) or a
``requirements.lock`` of pins takes precedence. :func:`declared_requirements` reads them and
resolves them to exact pins (``uv pip compile`` for this Python); the environment's key is a hash
of those pins, the Python version and the ModelOps version, so two bundles with the same
requirements share one environment. Given the cache, a resolution is kept in it
(``<cache>/resolved/``) and reused: the same requirement lines give the same pins on every later
run, until :func:`prune_environments` forgets them.

:func:`ensure_environment` builds it once under ``<cache>/<key>/``: a ``uv venv`` for the driver's
Python, the pins, and the ModelOps runtime (this ModelOps, without its own dependencies, plus the
few packages the runtime imports, at the driver's versions where the bundle does not pin them),
resolved together and compiled to bytecode at install (``UV_COMPILE_BYTECODE=0`` skips that):
nothing else from the driver. It is
built in a temporary directory and renamed into place when complete, under a file lock, so two
runs building the same environment build it once and a failed build leaves nothing behind.
``env.json`` in it records the key, the Python, the pins and every installed package's version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops_contracts.errors import BundleError

__all__ = [
    "ENV_FILE",
    "ENV_MODES",
    "Environment",
    "EnvironmentWarning",
    "Requirements",
    "declared_requirements",
    "ensure_environment",
    "environment_for",
    "list_environments",
    "prune_environments",
    "uv_executable",
]

ENV_FILE = "env.json"
RUNTIME_PACKAGES = ("pydantic", "pydantic-core", "pyarrow", "numpy", "pyyaml", "pathspec")
"""What the ModelOps runtime imports in a worker, installed at the driver's own versions unless
the bundle pins one of them itself (its pin wins: a model may need an older numpy)."""

_TEMP = ".building-"
_RESOLVED = "resolved"
ENV_MODES = ("auto", "current")
"""``auto``: a bundle that declares requirements runs in its own environment; ``current``: in
this Python, as a bundle without requirements does."""


class EnvironmentWarning(UserWarning):
    """A bundle runs in the current environment although it does not meet its requirements."""


_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?==[^\s;]+(\s*;.*)?$")


@dataclass(frozen=True)
class Requirements:
    """A bundle's declared requirements: the file they came from and the exact pins."""

    source: str
    pins: tuple[str, ...]

    @property
    def key(self) -> str:
        """16 hex naming the environment: the pins, this Python, this ModelOps and the versions
        of the runtime's packages it installs."""
        runtime = _runtime_pins(self.pins)
        header = ["modelops:env:v2", sys.version.split()[0], _modelops_version()]
        text = "\n".join([*header, *sorted(self.pins), "runtime", *runtime])
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Environment:
    """A built environment: its key, directory, Python executable and record."""

    key: str
    path: Path
    record: dict[str, Any]

    @property
    def python(self) -> Path:
        """The environment's Python interpreter."""
        return self.path / "bin" / "python"

    @property
    def packages(self) -> dict[str, str]:
        """Every installed package and its version (the run's provenance)."""
        return dict(self.record.get("packages", {}))

    @property
    def requirements(self) -> Requirements:
        """The pins it was built from: what another machine builds the same environment from."""
        record = self.record
        return Requirements(str(record.get("source", "")), tuple(record.get("requirements", ())))

    def provenance(self) -> dict[str, Any]:
        """What a job's provenance keeps of the environment its tasks ran in."""
        return {
            "key": self.key,
            "source": self.record.get("source"),
            "requirements": list(self.record.get("requirements", [])),
            "python": self.record.get("python"),
            "packages": self.packages,
        }


def uv_executable() -> str:
    """The uv binary that came with ModelOps (the ``uv`` package), else one on PATH.

    Raises:
        BundleError: no uv at all.
    """
    with contextlib.suppress(ImportError, FileNotFoundError):
        import uv

        return str(uv.find_uv_bin())
    on_path = shutil.which("uv")
    if on_path is None:
        raise BundleError("uv is not installed: pip install uv")
    return on_path


def declared_requirements(
    bundle: Path | str, cache: Path | str | None = None
) -> Requirements | None:
    """The bundle's requirements resolved to pins, or None when it declares none.

    Requirements that are not all pins are resolved by uv, once per ``cache`` when one is given.

    Raises:
        BundleError: a requirement file cannot be read, or uv cannot resolve it (with uv's
            message).
    """
    root = Path(bundle)
    if (root / "uv.lock").is_file() and (root / "pyproject.toml").is_file():
        text = _uv(
            ["export", "--frozen", "--no-hashes", "--no-emit-project", "--no-header",
             "--format", "requirements-txt", "--project", str(root)],
            "export uv.lock",
        )  # fmt: skip
        return Requirements("uv.lock", _lines(text))
    lock = root / "requirements.lock"
    if lock.is_file():
        return Requirements("requirements.lock", _lines(_read(lock)))
    plain = root / "requirements.txt"
    if plain.is_file():
        lines = _lines(_read(plain))
        if lines and all(_PIN.match(line) for line in lines):
            return Requirements("requirements.txt", lines)
        return Requirements("requirements.txt", _compile(lines, cache)) if lines else None
    project = root / "pyproject.toml"
    if project.is_file():
        try:
            data = tomllib.loads(_read(project))
        except tomllib.TOMLDecodeError as err:
            raise BundleError(f"cannot read {project}: {err}") from None
        deps = data.get("project", {}).get("dependencies") or []
        if deps:
            return Requirements("pyproject.toml", _compile([str(d) for d in deps], cache))
    return None


def ensure_environment(
    requirements: Requirements,
    cache: Path | str,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> Environment:
    """The environment of ``requirements`` under ``cache``, built now if it is not there.

    Raises:
        BundleError: uv cannot create the environment or install a requirement (its message);
            nothing is left in the cache then.
    """
    root = Path(cache)
    root.mkdir(parents=True, exist_ok=True)
    key = requirements.key
    done = root / key
    say = on_progress or (lambda _: None)
    with _locked(root / f"{key}.lock"):
        if (done / ENV_FILE).is_file():
            _touch(done)
            return _open(done)
        started = time.monotonic()
        say(f"building environment {key} ({len(requirements.pins)} requirements)")
        building = root / f"{_TEMP}{key}-{uuid.uuid4().hex[:8]}"
        try:
            _build(requirements, building, say)
            building.rename(done)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        say(f"environment {key} built in {time.monotonic() - started:.1f} s")
        _touch(done)
        return _open(done)


def list_environments(cache: Path | str) -> list[Environment]:
    """The built environments under ``cache``, most recently used first."""
    root = Path(cache)
    if not root.is_dir():
        return []
    found = [
        _open(path)
        for path in root.iterdir()
        if path.is_dir() and not path.name.startswith(_TEMP) and (path / ENV_FILE).is_file()
    ]
    return sorted(found, key=lambda env: -float(env.record.get("last_used", 0.0)))


def prune_environments(cache: Path | str, *, older_than_days: float = 0.0) -> list[str]:
    """Remove the environments not used for ``older_than_days`` (and any half-built one left
    by a killed build); returns the keys removed."""
    root = Path(cache)
    removed = []
    limit = time.time() - older_than_days * 86400
    for env in list_environments(root):
        if float(env.record.get("last_used", 0.0)) <= limit:
            with _locked(root / f"{env.key}.lock"):
                shutil.rmtree(env.path, ignore_errors=True)
            removed.append(env.key)
    if root.is_dir():
        for path in root.glob(f"{_TEMP}*"):
            shutil.rmtree(path, ignore_errors=True)
        for kept in (root / _RESOLVED).glob("*.txt"):  # resolved again at the next run
            with contextlib.suppress(OSError):
                if kept.stat().st_mtime <= limit:
                    kept.unlink()
        for lock in root.glob("*.lock"):  # of builds that failed: no environment behind them
            if not (root / lock.stem).exists():
                lock.unlink(missing_ok=True)
    return removed


def environment_for(
    bundle: Path | str,
    cache: Path | str,
    mode: str = "auto",
    *,
    on_progress: Callable[[str], None] | None = None,
) -> Environment | None:
    """The environment the bundle's tasks run in: None for this Python.

    With ``mode="current"`` a bundle whose pins this Python does not meet gets an
    :class:`EnvironmentWarning` naming them.

    Raises:
        ContractViolationError: an unknown mode.
        BundleError: the requirements cannot be resolved or installed (uv's message).
    """
    from modelops_contracts.errors import ContractViolationError

    if mode not in ENV_MODES:
        raise ContractViolationError(
            f"env must be one of {', '.join(ENV_MODES)}, got {mode!r}", field="env", value=mode
        )
    requirements = declared_requirements(bundle, cache)
    if requirements is None:
        return None
    if mode == "current":
        unmet = _unmet(requirements)
        if unmet:
            import warnings

            warnings.warn(
                f"the bundle requires {', '.join(unmet)}, which this environment does not have; "
                "its tasks run here anyway (env current)",
                EnvironmentWarning,
                stacklevel=2,
            )
        return None
    return ensure_environment(requirements, cache, on_progress=on_progress)


def _name(pin: str) -> str:
    """The normalised project name of a pin (``Foo_Bar[x]==1; ...`` is ``foo-bar``)."""
    name = pin.partition(";")[0].partition("==")[0].split("[")[0].strip()
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_pins(pins: tuple[str, ...]) -> list[str]:
    """The runtime's packages at this ModelOps's versions, but for those the bundle pins."""
    pinned = {_name(pin) for pin in pins}
    return [
        f"{name}=={importlib.metadata.version(name)}"
        for name in RUNTIME_PACKAGES
        if name not in pinned
    ]


def _unmet(requirements: Requirements) -> list[str]:
    unmet = []
    for pin in requirements.pins:
        name = _name(pin)
        version = pin.partition(";")[0].partition("==")[2]
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have != version.strip():
            unmet.append(pin)
    return unmet


# -- building ------------------------------------------------------------------------------------


def _build(requirements: Requirements, path: Path, say: Callable[[str], None]) -> None:
    _uv(["venv", "--quiet", "--python", sys.executable, str(path)], "create the environment")
    python = str(path / "bin" / "python")
    pins = path / "requirements.txt"
    pins.write_text("\n".join(requirements.pins) + "\n", encoding="utf-8")
    say(f"installing {len(requirements.pins)} requirements and the ModelOps runtime")
    install = ["pip", "install", "--quiet", "--python", python]
    runtime = _runtime_pins(requirements.pins)  # resolved with the pins: one consistent set
    _uv([*install, "-r", str(pins), *runtime], "install the bundle's requirements")
    _uv([*install, "--no-deps", _modelops_source()], "install ModelOps")
    listed = _uv(["pip", "list", "--format", "json", "--python", python], "list the environment")
    packages = {str(p["name"]).lower(): str(p["version"]) for p in json.loads(listed)}
    record = {
        "key": requirements.key,
        "source": requirements.source,
        "requirements": list(requirements.pins),
        "python": sys.version.split()[0],
        "modelops": _modelops_version(),
        "packages": dict(sorted(packages.items())),
        "created": time.time(),
        "last_used": time.time(),
    }
    (path / ENV_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _modelops_source() -> str:
    """Where this ModelOps was installed from: its source directory, or its released version."""
    dist = importlib.metadata.distribution("modelops")
    with contextlib.suppress(FileNotFoundError, TypeError, json.JSONDecodeError):
        url = str(json.loads(dist.read_text("direct_url.json") or "").get("url", ""))
        if url.startswith("file://"):
            return url.removeprefix("file://")
    return f"modelops=={dist.version}"


def _modelops_version() -> str:
    return importlib.metadata.version("modelops")


def _compile(lines: tuple[str, ...] | list[str], cache: Path | str | None) -> tuple[str, ...]:
    """The pins uv resolves ``lines`` to for this Python, kept under ``cache`` when given."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    kept = None
    if cache is not None:
        what = json.dumps([list(lines), version, sys.platform, os.uname().machine])
        kept = Path(cache) / _RESOLVED / f"{hashlib.sha256(what.encode()).hexdigest()[:24]}.txt"
        with contextlib.suppress(OSError, UnicodeDecodeError):
            pins = _lines(kept.read_text(encoding="utf-8"))
            os.utime(kept)  # in use: what prune_environments goes by
            return pins
    text = _uv(
        ["pip", "compile", "--quiet", "--no-header", "--no-annotate", "--python-version",
         version, "-"],
        "resolve the requirements",
        stdin="\n".join(lines) + "\n",
    )  # fmt: skip
    pins = _lines(text)
    if kept is not None:
        with contextlib.suppress(OSError):
            kept.parent.mkdir(parents=True, exist_ok=True)
            temp = kept.with_name(f".{kept.name}.{uuid.uuid4().hex[:8]}")
            temp.write_text("\n".join(pins) + "\n", encoding="utf-8")
            temp.replace(kept)
    return pins


def _uv(args: list[str], what: str, *, stdin: str | None = None) -> str:
    """Run uv; its first error lines become one BundleError."""
    try:
        done = subprocess.run(
            [uv_executable(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            # bytecode compiled at install, unless the caller's UV_COMPILE_BYTECODE says not
            env={"UV_COMPILE_BYTECODE": "1", **os.environ, "UV_NO_PROGRESS": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"cannot {what} with uv: {exc}") from None
    if done.returncode != 0:
        detail = " ".join(line.strip() for line in done.stderr.strip().splitlines()[:6])
        raise BundleError(f"cannot {what}: {detail[:600] or f'uv exited {done.returncode}'}")
    return done.stdout


def _lines(text: str) -> tuple[str, ...]:
    out = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            out.append(line)
    return tuple(out)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BundleError(f"cannot read {path}: {err}") from None


def _open(path: Path) -> Environment:
    record = json.loads((path / ENV_FILE).read_text(encoding="utf-8"))
    return Environment(str(record.get("key", path.name)), path, record)


def _touch(path: Path) -> None:
    """Record that the environment was used now (what :func:`prune_environments` goes by)."""
    file = path / ENV_FILE
    with contextlib.suppress(OSError, json.JSONDecodeError):
        record = json.loads(file.read_text(encoding="utf-8"))
        record["last_used"] = time.time()
        temp = file.with_name(f".{ENV_FILE}.{uuid.uuid4().hex[:8]}")
        temp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        temp.replace(file)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
