"""Import a model from an unpacked bundle and wrap it in a :class:`Runner`.

An entrypoint ``module.Object/scenario`` names either a plain function
``f(params, seed) -> {output: table}`` or a :class:`~modelops.model.Model` subclass. The bundle
directory goes to the front of ``sys.path``; only one bundle is active per process at a time, and
switching to another one first drops every module imported from the previous one, so two bundles
that both contain ``model.py`` never mix. Runners, and the model instance inside them, are cached
per (bundle directory, entrypoint): a worker builds a model once and reuses it for every task.

The loader mutates ``sys.path`` and ``sys.modules``; it serialises itself with a lock but a process
should still run one chunk at a time (see :mod:`modelops.runtime.chunk`).

A worker process calls :func:`isolate_import_path` once, so that model code comes from the
snapshot alone: what the driver had on ``sys.path`` (its current directory, its script's
directory, ``PYTHONPATH``, the live bundle directory) could otherwise supply a module the bundle
leaves out, and results would change under the same digest.
"""

from __future__ import annotations

import importlib
import inspect
import os
import site
import sys
import sysconfig
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from modelops.model import Model, Parameter
from modelops_contracts.entrypoint import DEFAULT_SCENARIO, parse_entrypoint
from modelops_contracts.errors import ContractViolationError, ModelError

__all__ = [
    "EntrypointCheck",
    "ModelInfo",
    "Runner",
    "bundle_modules",
    "isolate_import_path",
    "load_entrypoint",
    "resolve_entrypoint",
    "resolve_in_worker",
    "unload_bundles",
]

_lock = threading.RLock()
_active_bundle: str | None = None
_preexisting: set[str] = set()
_PROTECTED = frozenset({"modelops", "modelops_contracts"})
_runners: dict[tuple[str, str], Runner] = {}
_instances: dict[tuple[str, str], Model] = {}
_isolated: list[bool] = [False]
_UNNAMED_MAINS = frozenset({"__main__", "__mp_main__"})


@dataclass(frozen=True)
class ModelInfo:
    """What the driver learns about an entrypoint before running anything (picklable).

    ``parameters`` and ``outputs`` are ``None`` when the model does not declare them (plain
    functions never do).
    """

    entrypoint: str
    import_path: str
    scenario: str
    kind: str
    scenarios: tuple[str, ...]
    parameters: tuple[Parameter, ...] | None
    outputs: tuple[str, ...] | None


class Runner(ABC):
    """Runs one entrypoint: ``run(params, seed, config)`` returns the model's raw outputs.

    ``check`` validates parameters and requested outputs without running anything, so the driver
    can report a mistake before any task starts. A runner is reused for every task in a process
    and is not thread-safe.
    """

    kind: str = "model"
    """``"function"`` or ``"model"``: what the entrypoint names."""

    def __init__(self, entrypoint: str, import_path: str, scenario: str) -> None:
        self.entrypoint = entrypoint
        self.import_path = import_path
        self.scenario = scenario

    @property
    def parameters(self) -> tuple[Parameter, ...] | None:
        """The declared parameters, or ``None`` if the model declares none (plain functions)."""
        return None

    @property
    def outputs(self) -> tuple[str, ...] | None:
        """The declared output names, or ``None`` if the model does not declare them."""
        return None

    @abstractmethod
    def scenario_names(self) -> tuple[str, ...]:
        """The scenarios this model knows."""

    @abstractmethod
    def prepare(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters as ``simulate`` will receive them.

        Raises:
            ModelError: if the parameters do not fit the model.
        """

    @abstractmethod
    def run(
        self, params: Mapping[str, Any], seed: int, config: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any]:
        """Run the model once and return ``{output name: table}`` as the model produced it.

        Raises:
            ModelError: if the parameters or config do not fit the model, or the model returned
                something other than a mapping with string keys.
            Exception: whatever the model itself raises.
        """

    def check(
        self,
        params: Mapping[str, Any] | None = None,
        outputs: Sequence[str] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """Validate parameters, requested outputs and config without running the model.

        Raises:
            ModelError: naming what does not fit.
        """
        if params is not None:
            self.prepare(params)
        declared = self.outputs
        if outputs is not None and declared is not None:
            missing = [name for name in outputs if name not in declared]
            if missing:
                raise ModelError(
                    f"{self.import_path} does not produce output(s) "
                    f"{', '.join(map(repr, missing))}",
                    hint=f"it declares: {', '.join(declared)}",
                )

    def info(self) -> ModelInfo:
        """A picklable description of this entrypoint."""
        return ModelInfo(
            entrypoint=self.entrypoint,
            import_path=self.import_path,
            scenario=self.scenario,
            kind=self.kind,
            scenarios=self.scenario_names(),
            parameters=self.parameters,
            outputs=self.outputs,
        )

    def _checked_result(self, result: object) -> Mapping[str, Any]:
        if type(result) is not dict and not isinstance(result, Mapping):
            raise ModelError(
                f"{self.import_path} returned {type(result).__name__}, "
                "expected a mapping of output name to table"
            )
        for key in result:
            if type(key) is not str and not isinstance(key, str):
                raise ModelError(f"{self.import_path} returned a non-string output name {key!r}")
        return result


class _FunctionRunner(Runner):
    """A plain function ``f(params, seed[, scenario=..., config=...])``."""

    kind = "function"

    def __init__(
        self, entrypoint: str, import_path: str, scenario: str, func: Callable[..., Any]
    ) -> None:
        super().__init__(entrypoint, import_path, scenario)
        self._func = func
        accepted = _keyword_names(func)
        self._pass_scenario = "scenario" in accepted
        self._pass_config = "config" in accepted
        if scenario != DEFAULT_SCENARIO and not self._pass_scenario:
            raise ModelError(
                f"{import_path} has no scenario {scenario!r}",
                hint="a plain function only has 'baseline' unless it accepts a 'scenario' keyword",
            )

    def scenario_names(self) -> tuple[str, ...]:
        return (self.scenario,) if self._pass_scenario else (DEFAULT_SCENARIO,)

    def prepare(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return dict(params)

    def check(
        self,
        params: Mapping[str, Any] | None = None,
        outputs: Sequence[str] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().check(params, outputs, config)
        if config and not self._pass_config:
            raise ModelError(
                f"{self.import_path} does not accept a config",
                hint="add a 'config' keyword argument to the function or drop the job's config",
            )

    def run(
        self, params: Mapping[str, Any], seed: int, config: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any]:
        kwargs: dict[str, Any] = {}
        if self._pass_scenario:
            kwargs["scenario"] = self.scenario
        if self._pass_config:
            kwargs["config"] = config
        elif config:
            self.check(config=config)
        return self._checked_result(self._func(dict(params), seed, **kwargs))


class _ModelRunner(Runner):
    """A :class:`Model` subclass, instantiated once and reused."""

    def __init__(self, entrypoint: str, import_path: str, scenario: str, model: Model) -> None:
        super().__init__(entrypoint, import_path, scenario)
        self.model = model
        self._cls = type(model)
        self._patch = self._cls.get_scenario(scenario)
        self._config_in: Mapping[str, Any] | None = None
        self._config: Mapping[str, Any] = MappingProxyType(dict(self._patch.config))

    @property
    def parameters(self) -> tuple[Parameter, ...] | None:
        return self._cls.parameter_space()

    @property
    def outputs(self) -> tuple[str, ...] | None:
        declared = self._cls.outputs
        return None if declared is None else tuple(declared)

    def scenario_names(self) -> tuple[str, ...]:
        return self._cls.scenario_names()

    def prepare(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._cls.prepare_params(params, self.scenario)

    def run(
        self, params: Mapping[str, Any], seed: int, config: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any]:
        prepared = self._cls.prepare_params(params, self.scenario)
        if config is not self._config_in:
            # Tasks of a chunk share one config object: merge once, not per task.
            self._config = MappingProxyType({**(config or {}), **self._patch.config})
            self._config_in = config
        model = self.model
        model.config = self._config
        model.scenario = self.scenario
        result = self._checked_result(model.simulate(prepared, seed))
        declared = self._cls.outputs
        if declared is not None:
            extra = [name for name in result if name not in declared]
            if extra:
                raise ModelError(
                    f"{self.import_path} returned undeclared output(s) "
                    f"{', '.join(map(repr, extra))}",
                    hint=f"add them to {self._cls.__qualname__}.outputs",
                )
        return result


def _keyword_names(func: Callable[..., Any]) -> set[str]:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return set()
    names = set()
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return {"scenario", "config"}
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            names.add(parameter.name)
    return names


def load_entrypoint(bundle_dir: Path | str, entrypoint: str) -> Runner:
    """Import the object an entrypoint names from ``bundle_dir`` and return its (cached) runner.

    Raises:
        ModelError: if the entrypoint is malformed, the module cannot be imported (the message
            carries the original exception's type and text), the object is missing or is neither
            a function nor a Model subclass, or the scenario is unknown.
    """
    try:
        import_path, scenario = parse_entrypoint(entrypoint)
    except ContractViolationError as err:
        raise ModelError(str(err)) from None
    bundle = str(Path(bundle_dir).resolve())
    with _lock:
        runner = _runners.get((bundle, entrypoint))
        if runner is None:
            _activate(bundle)
            runner = _make_runner(bundle, entrypoint, import_path, scenario)
            _runners[(bundle, entrypoint)] = runner
        return runner


def resolve_entrypoint(
    bundle_dir: Path | str,
    entrypoint: str,
    *,
    params: Iterable[Mapping[str, Any]] = (),
    outputs: Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> ModelInfo:
    """Load an entrypoint in this process and check a study against it before anything runs.

    Checks the scenario, every parameter set in ``params``, the requested ``outputs`` (when the
    model declares its outputs) and whether the model can take ``config``.

    Raises:
        ModelError: for the first problem found, naming it.
    """
    runner = load_entrypoint(bundle_dir, entrypoint)
    runner.check(outputs=outputs, config=config)
    for one in params:
        runner.prepare(one)
    return runner.info()


@dataclass(frozen=True)
class EntrypointCheck:
    """What :func:`resolve_in_worker` checks: the arguments of :func:`resolve_entrypoint`."""

    bundle_dir: str
    entrypoint: str
    params: tuple[Mapping[str, Any], ...] = ()
    outputs: tuple[str, ...] | None = None
    config: Mapping[str, Any] | None = None


def resolve_in_worker(check: EntrypointCheck, on_position: Callable[[int], None]) -> ModelInfo:
    """Pool function: :func:`resolve_entrypoint` in a worker that sees only the bundle.

    Run in a child process so that a model whose import exits, hangs or signals cannot take
    the caller along; imports are isolated as in a worker (:func:`isolate_import_path`).

    Raises:
        ModelError: as :func:`resolve_entrypoint`.
        ContractViolationError: a parameter set is invalid for the model.
    """
    on_position(0)
    isolate_import_path()
    return resolve_entrypoint(
        check.bundle_dir,
        check.entrypoint,
        params=check.params,
        outputs=check.outputs,
        config=check.config,
    )


def isolate_import_path() -> None:
    """Import model code in this process from the active bundle only (call once, in a worker).

    ``sys.path`` keeps the Python environment alone: the standard library, site-packages and
    the directories their ``.pth`` files add (editable installs). The current directory, the
    scripts directory, ``PYTHONPATH`` and whatever the parent process added at run time are
    dropped, and modules already imported from such places are forgotten. Every bundle this
    process activates afterwards goes in front of that path.
    """
    with _lock:
        _isolated[0] = True
        kept = _environment_path()
        sys.path[:] = [entry for entry in sys.path if _real(entry) in kept]
        roots = tuple(root.rstrip(os.sep) + os.sep for root in kept | _prefixes())
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if (
                isinstance(file, str)
                and name not in _UNNAMED_MAINS
                and name.partition(".")[0] not in _PROTECTED
                and not os.path.realpath(file).startswith(roots)
            ):
                del sys.modules[name]
        importlib.invalidate_caches()


def _prefixes() -> set[str]:
    return {
        os.path.realpath(prefix)
        for prefix in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix)
    }


def _real(entry: str) -> str:
    return os.path.realpath(entry) if entry else ""


def _environment_path() -> set[str]:
    """Real paths of the ``sys.path`` entries that belong to the Python environment."""
    prefixes = tuple(prefix.rstrip(os.sep) + os.sep for prefix in _prefixes())
    scripts = {os.path.realpath(Path(sys.executable).parent)}
    scripts.add(os.path.realpath(sysconfig.get_path("scripts")))
    kept = {
        real
        for real in map(_real, sys.path)
        if real and real not in scripts and (real + os.sep).startswith(prefixes)
    }
    site_dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        site_dirs.append(site.getusersitepackages())
    for site_dir in site_dirs:
        kept.add(os.path.realpath(site_dir))
        kept.update(_pth_entries(site_dir))
    return kept


def _pth_entries(site_dir: str) -> set[str]:
    """The directories the ``.pth`` files of a site directory put on ``sys.path``."""
    entries = set()
    for pth in sorted(Path(site_dir).glob("*.pth")):
        try:
            lines = pth.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in map(str.rstrip, lines):
            if line and not line.startswith(("#", "import ", "import\t")):
                entries.add(os.path.realpath(Path(site_dir) / line))
    return entries


def unload_bundles() -> None:
    """Forget every loaded bundle: drop its modules, its ``sys.path`` entry and cached models."""
    global _active_bundle
    with _lock:
        if _active_bundle is not None:
            _drop_modules(_active_bundle)
            while _active_bundle in sys.path:
                sys.path.remove(_active_bundle)
        _active_bundle = None
        _runners.clear()
        _instances.clear()


def bundle_modules(bundle_dir: Path | str) -> dict[str, ModuleType]:
    """The modules currently imported whose files live inside ``bundle_dir``."""
    root = str(Path(bundle_dir).resolve())
    return {name: module for name, module in list(sys.modules.items()) if _inside(module, root)}


def _activate(bundle: str) -> None:
    global _active_bundle
    if _isolated[0]:
        for entry in [e for e in sys.path if not Path(e).is_absolute()]:
            sys.path.remove(entry)  # a relative entry would find the current directory's code
    if _active_bundle == bundle:
        if bundle not in sys.path:
            sys.path.insert(0, bundle)
        return
    unload_bundles()
    _preexisting.clear()
    _preexisting.update(sys.modules)
    sys.path.insert(0, bundle)
    importlib.invalidate_caches()
    _active_bundle = bundle


def _drop_modules(bundle: str) -> None:
    """Forget the modules the bundle brought in (never ones imported before it was active)."""
    for name in bundle_modules(bundle):
        if name not in _preexisting:
            del sys.modules[name]


def _inside(module: ModuleType | None, root: str) -> bool:
    if module is None:
        return False
    locations: list[str] = []
    file = getattr(module, "__file__", None)
    if isinstance(file, str):
        locations.append(file)
    spec = getattr(module, "__spec__", None)
    search = getattr(spec, "submodule_search_locations", None)
    if search is not None:
        locations.extend(str(location) for location in search)
    prefix = root.rstrip("/\\")
    return any(
        location == prefix or location.startswith((prefix + "/", prefix + "\\"))
        for location in locations
    )


def _make_runner(bundle: str, entrypoint: str, import_path: str, scenario: str) -> Runner:
    _unshadow(bundle, import_path.split(".", 1)[0])
    obj = _import_object(import_path)
    if isinstance(obj, type) and issubclass(obj, Model):
        if obj.simulate is Model.simulate:
            raise ModelError(f"{import_path} does not implement simulate()")
        obj.get_scenario(scenario)
        model = _instances.get((bundle, import_path))
        if model is None:
            try:
                model = obj()
            except Exception as err:
                raise ModelError(
                    f"cannot create {import_path}(): {type(err).__name__}: {err}",
                    hint="a Model is created with no arguments, once per worker process",
                ) from err
            _instances[(bundle, import_path)] = model
        return _ModelRunner(entrypoint, import_path, scenario, model)
    if inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethod(obj):
        return _FunctionRunner(entrypoint, import_path, scenario, obj)
    raise ModelError(
        f"{import_path} is a {type(obj).__name__}, not a function or a Model subclass",
        hint="point the entrypoint at 'module.function' or 'module.ModelClass'",
    )


def _unshadow(bundle: str, top: str) -> None:
    """Forget a same-named module imported from elsewhere so the bundle's own copy is imported."""
    loaded = sys.modules.get(top)
    if loaded is None or top in _PROTECTED or _inside(loaded, bundle):
        return
    root = Path(bundle)
    if (root / f"{top}.py").is_file() or (root / top).is_dir():
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
            _preexisting.discard(name)


def _import_object(import_path: str) -> Any:
    module_name, _, attribute = import_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as err:
        raise ModelError(
            f"cannot import {import_path!r} from bundle: {type(err).__name__}: {err}",
            hint="check that the module is inside the bundle and its dependencies are installed",
        ) from err
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ModelError(
            f"module {module_name!r} has no attribute {attribute!r}",
            hint=f"entrypoint is {import_path!r}",
        ) from None
