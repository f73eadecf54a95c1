"""``modelops.calibrate``: check the inputs, find or start the journal, run the loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.calibration._handle import Calibration
from modelops.calibration._journal import Journal
from modelops.calibration._memo import command_key, finished_by_key, remember_key
from modelops.calibration._spec import CalibrationSpec, check_count
from modelops.sampling._load import is_space_file
from modelops_contracts.entrypoint import DEFAULT_SCENARIO
from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    from modelops.analysis import Target
    from modelops.calibration._algorithms import Algorithm
    from modelops.calibration._run import CalibrationProgress
    from modelops.engine import RunOptions
    from modelops.envs import Environment
    from modelops.model import Model
    from modelops.sampling import ParameterSpace
    from modelops.services._base import ChunkBackend
    from modelops.services.batch import BatchSettings

__all__ = ["DEFAULT_BATCH", "calibrate", "resolve_inputs"]

DEFAULT_BATCH = 8
"""Points per round. Fixed, not a multiple of the worker count: the points asked, and so the
result, must not depend on the machine the calibration runs on."""


def resolve_inputs(
    source: str | Path | ParameterSpace | type[Model],
    targets: Sequence[Target] | str | Path | None,
    *,
    bundle: Path,
    model: str | None,
    scenario: str,
    fix: Mapping[str, object] | None,
    python: Path | str | None = None,
) -> tuple[ParameterSpace, list[Target]]:
    """The space (with ``fix`` applied) and the targets of a calibration.

    ``source`` is a :class:`ParameterSpace`, a Model class, a Model's import path inside
    ``bundle`` or a space file; a space file may hold a ``targets:`` list, used when
    ``targets`` is None (its data paths relative to the file). A Model's import path is imported
    in a worker of ``python`` when given (a bundle environment's interpreter).

    Raises:
        ContractViolationError: bad space, targets or fixed values, or no targets at all.
        ModelError: the model cannot be imported.
    """
    from modelops.analysis import load_targets
    from modelops.model import Model
    from modelops.sampling import ParameterSpace, load_space

    found: list[Target] = []
    if isinstance(source, ParameterSpace):
        space = source if model is None else _with_model(source, model)
    elif isinstance(source, type) and issubclass(source, Model):
        space = ParameterSpace.from_model(source)
        space = space if model is None else _with_model(space, model)
    elif is_space_file(source):
        space, found = _space_file(Path(str(source)), model)
    else:
        declared = None
        if python is not None:
            from modelops.services import parameters_in

            declared = parameters_in(python)
        space = load_space(str(source), bundle, model=model, scenario=scenario, declared=declared)
    if targets is None:
        chosen = found
    elif isinstance(targets, str | Path):
        chosen = load_targets(targets)
    else:
        chosen = list(targets)
    if not chosen:
        raise ContractViolationError(
            "a calibration needs targets: give --targets FILE or a 'targets:' list in the "
            "space file",
            field="targets",
        )
    return space.with_fixed(dict(fix or {})), chosen


def _with_model(space: ParameterSpace, model: str) -> ParameterSpace:
    from modelops.sampling import ParameterSpace

    return ParameterSpace(space.parameters, space.fixed, model, space.declared)


def _check_model_path(source: object, model: str | None) -> None:
    """A space file needs the model's import path: said before anything is hashed or read.

    Raises:
        ContractViolationError: ``field="model"``.
    """
    if model is None and is_space_file(source):
        raise ContractViolationError("a space file needs the model's import path", field="model")


def _space_file(path: Path, model: str | None) -> tuple[ParameterSpace, list[Target]]:
    """A space file's space and its ``targets:`` list, if any."""
    from modelops.analysis import targets_from_dicts
    from modelops.sampling import ParameterSpace
    from modelops_contracts._loading import read_document

    _check_model_path(path, model)
    doc = read_document(path, what="space file")
    if not isinstance(doc, Mapping):
        raise ContractViolationError(f"{path} must hold a mapping of parameter to range")
    items = doc.get("targets")
    rest = {k: v for k, v in doc.items() if k != "targets"}
    space = ParameterSpace.from_dict(rest)
    found: list[Target] = []
    if items is not None:
        if not isinstance(items, list):
            raise ContractViolationError(f"{path}: 'targets' must be a list", field="targets")
        found = targets_from_dicts(items, base=path.parent)
    return ParameterSpace(space.parameters, space.fixed, model, space.declared), found


def calibrate(
    source: str | Path | ParameterSpace | type[Model],
    targets: Sequence[Target] | str | Path | None = None,
    *,
    algorithm: str = "tpe",
    budget: int = 100,
    replicates: int = 4,
    batch: int = DEFAULT_BATCH,
    seed: int = 0,
    bundle: Path | str = ".",
    store: Path | str | None = None,
    model: str | None = None,
    scenario: str = DEFAULT_SCENARIO,
    config: Mapping[str, Any] | None = None,
    fix: Mapping[str, object] | None = None,
    settings: Mapping[str, Any] | None = None,
    top_k: int = 5,
    reeval_replicates: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    cluster: BatchSettings | None = None,
    backend: ChunkBackend | None = None,
    options: RunOptions | None = None,
    on_progress: Callable[[CalibrationProgress], None] | None = None,
    env: str | Environment | None = "auto",
) -> Calibration:
    """Fit the free parameters of a model to ``targets``; a handle to the answer.

    ``source`` is a Model (class or import path inside ``bundle``), a :class:`ParameterSpace`
    or a space file (then ``model`` names the model). ``budget`` points are evaluated, in rounds
    of ``batch``, each on ``replicates`` seeds; then the best ``top_k`` are re-run on
    ``reeval_replicates`` (default ``4 * replicates``) new seeds and the best re-evaluated mean is
    the answer. ``settings`` go to the algorithm (``tpe``, ``cmaes``, ``random``, ``sobol``,
    ``abc-smc``). Running the same call again resumes a killed calibration, or returns a
    finished one at once, from the journal in the store. Tasks run on ``backend``, else on the
    local pool of ``workers``, the Dask cluster at ``scheduler``, or a batch cluster (Slurm...)
    started for the calibration from ``cluster``, its jobs' logs beside the journal. ``env``
    chooses the environment the tasks run in, as for :func:`modelops.run`.

    Raises:
        ContractViolationError, ModelError, BundleError: bad input; nothing is written then.
        StoreError: the store is unusable or another run holds it.
    """
    from modelops.bundle import compute_digest
    from modelops.store import default_store

    for name, value in (("budget", budget), ("replicates", replicates), ("batch", batch)):
        check_count(name, value)
    check_count("top-k", top_k)
    reeval = (
        4 * replicates
        if reeval_replicates is None
        else check_count("re-evaluation replicates", reeval_replicates)
    )
    _check_model_path(source, model)
    bundle_dir = Path(bundle)
    store_root = Path(store) if store is not None else default_store()
    bundle_ref = compute_digest(bundle_dir, exclude=[store_root])
    key = None
    if isinstance(source, str | Path) and (targets is None or isinstance(targets, str | Path)):
        inputs = {
            "source": str(source), "targets": None if targets is None else str(targets),
            "bundle_ref": bundle_ref, "algorithm": algorithm, "budget": budget,
            "replicates": replicates, "batch": batch, "seed": seed, "model": model,
            "scenario": scenario, "config": dict(config or {}), "fix": dict(fix or {}),
            "settings": dict(settings or {}), "top_k": top_k, "reeval": reeval,
        }  # fmt: skip
        source_file = Path(str(source)) if Path(str(source)).is_file() else None
        key = command_key(inputs, [source_file, None if targets is None else Path(targets)])
        found = finished_by_key(store_root, key)
        if found is not None:  # finished: no model import, no optimiser, no worker
            return Calibration(found, store_root)
    from modelops.envs import environment_for

    environment = (
        environment_for(bundle_dir, store_root / "envs", env) if isinstance(env, str) else env
    )
    python = environment.python if environment is not None else None
    space, chosen = resolve_inputs(
        source, targets, bundle=bundle_dir, model=model, scenario=scenario, fix=fix, python=python
    )
    if space.model is None:
        raise ContractViolationError("give the model's import path", field="model")
    from modelops.calibration._algorithms import make_algorithm  # numpy, optuna: only now

    algo = make_algorithm(
        algorithm, space, seed=seed, budget=budget, batch=batch, **(settings or {})
    )
    spec = CalibrationSpec(
        model=space.model,
        scenario=scenario,
        bundle_ref=bundle_ref,
        space=space,
        targets=tuple(chosen),
        algorithm=algorithm,
        settings=algo.settings(),
        seed=seed,
        budget=budget,
        replicates=replicates,
        batch=batch,
        top_k=top_k,
        reeval_replicates=reeval,
        config=dict(config) if config else None,
    )
    journal = Journal(store_root, spec.calibration_id)
    if not journal.finished():
        _check_model(spec, bundle_dir, store_root, environment)
        workers_dir = store_root / "calibrations" / spec.calibration_id / "workers"
        runner = backend or _backend(scheduler, workers, cluster, workers_dir)
        if environment is not None:
            runner.use_environment(environment)
        _run(spec, algo, journal, store_root, bundle_dir, runner, options, on_progress)
    handle = Calibration(spec.calibration_id, store_root)
    handle.keep_summary()
    remember_key(store_root, key, spec.calibration_id)
    return handle


def _backend(
    scheduler: str | None, workers: int | None, batch: BatchSettings | None, log_directory: Path
) -> ChunkBackend:
    from modelops.services import backend_for

    runner = backend_for(scheduler=scheduler, workers=workers, batch=batch)
    if batch is not None:  # the batch jobs' logs go beside the calibration's journal
        from modelops.services.dask import DaskSimulationService

        assert isinstance(runner, DaskSimulationService)
        runner.connect(log_directory=log_directory)
    return runner


def _check_model(
    spec: CalibrationSpec, bundle: Path, store_root: Path, environment: Environment | None
) -> None:
    """Import the model once, in a worker, for one point of the space with the targets' outputs.

    Raises:
        ModelError, ContractViolationError: the model cannot run the calibration's tasks, or a
            target's observed data is unusable.
    """
    import numpy as np

    from modelops.api import compile_study
    from modelops_contracts import SimulationStudy

    middle = spec.space.scale(np.full((1, len(spec.space.parameters)), 0.5))
    probe = SimulationStudy(
        model=spec.model,
        scenario=spec.scenario,
        parameter_sets=middle,
        outputs=list(spec.outputs),
        config=dict(spec.config) if spec.config else None,
    )
    python = environment.python if environment is not None else None
    compile_study(probe, bundle, store=store_root, python=python)
    for target in spec.targets:
        target.read_observed()


def _run(
    spec: CalibrationSpec,
    algo: Algorithm,
    journal: Journal,
    store_root: Path,
    bundle: Path,
    chosen: ChunkBackend,
    options: RunOptions | None,
    on_progress: Callable[[CalibrationProgress], None] | None,
) -> None:
    from modelops.calibration._run import run_calibration
    from modelops.engine import Session
    from modelops.store import open_store

    chosen.warm_up()
    try:
        result_store = open_store(store_root)
    except BaseException:
        chosen.close(kill=True)
        raise
    try:
        with Session(result_store, chosen, bundle=bundle) as session:
            run_calibration(spec, algo, journal, session, options=options, on_progress=on_progress)
    except BaseException:
        chosen.close(kill=True)  # the session was never entered, or closed it already
        raise
    finally:
        result_store.close()
