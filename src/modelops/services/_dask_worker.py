"""The worker side of the Dask backend: the bundle plugin and the function that runs a chunk.

Imported inside Dask worker processes (by reference, when they unpickle the plugin and the chunk
function), so it must not import the driver side. Each Dask worker thread runs its chunks in a
child process of its own (a one-process :class:`~modelops.services._pool.WorkerPool`): a model
that crashes, leaks or hangs takes down that child, never the Dask worker, and the pool already
knows which task was running and enforces per-task timeouts.

A chunk of a bundle with its own environment (:mod:`modelops.envs`) names the environment's
pins; the worker builds that environment once with uv, in a directory beside its local directory
that the workers of one machine share (so they build it once, and a restarted worker finds it),
and runs the chunk in a child forked from a server running the environment's Python. Idle
children stay warm per bundle and environment, up to two per worker thread: switching between
two bundles on a worker imports neither again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import multiprocessing
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from distributed import WorkerPlugin, get_worker

from modelops.bundle import materialize
from modelops.envs import Environment, Requirements, ensure_environment
from modelops.runtime.chunk import ChunkSpec
from modelops.services._events import ChunkEvent, WorkerDied
from modelops.services._pool import WorkerPool
from modelops.services._worker import PRELOAD, init_worker, run_in_worker
from modelops_contracts.task import bundle_digest

if TYPE_CHECKING:
    from distributed import Worker

__all__ = [
    "BUNDLE_MARKER",
    "BundlePlugin",
    "WireRequirements",
    "abort_chunks",
    "prepare_environment",
    "run_chunk_on_worker",
]

BUNDLE_MARKER = "modelops-dask-bundle:"
"""``ChunkSpec.bundle_dir`` prefix: the worker swaps ``<marker><digest>`` for its local copy."""

_ABORT_CHECK = 0.25  # seconds between checks whether the driver asked to abort the chunk
_CHILDREN_PER_THREAD = 2  # warm children a worker keeps, per thread, across bundles and envs
_ENVS = "modelops-envs"  # beside the workers' own local directories, shared by them

WireRequirements: TypeAlias = "tuple[str, tuple[str, ...]]"
"""A bundle environment as a chunk names it: the requirement file's name and the exact pins."""


@dataclasses.dataclass(eq=False)
class _Child:
    """One child process (a one-process pool), used by one Dask worker thread at a time."""

    pool: WorkerPool
    log_path: Path
    python: str | None = None  # a bundle environment's interpreter; None: the worker's own
    bundle_dir: str | None = None
    token: str | None = None
    abort: threading.Event = dataclasses.field(default_factory=threading.Event)


_lock = threading.Condition()
_idle: list[_Child] = []
_busy: list[_Child] = []
_starting = [0]  # children being started by the warm-up
_bundles: dict[str, Path] = {}
_built: dict[WireRequirements, Environment] = {}  # environments this worker built or found
_aborted: set[str] = set()  # driver runs that asked to stop: a chunk of theirs starting late ends
_children = itertools.count()


class BundlePlugin(WorkerPlugin):
    """Carries a bundle snapshot (zip bytes) to every worker, present and future.

    ``setup`` extracts it once per worker into the worker's local directory, keyed by digest,
    and starts the worker's child processes in the background; Dask runs it on the workers
    registered now and on every worker that joins later.
    """

    def __init__(self, bundle_ref: str, data: bytes) -> None:
        self.bundle_ref = bundle_ref
        self.digest = bundle_digest(bundle_ref)
        self.data = data

    def setup(self, worker: Worker) -> None:
        cache = Path(worker.local_directory) / "modelops" / "bundles"
        path = materialize(self.bundle_ref, self.data, cache)
        self.data = b""  # the scheduler keeps the bytes for later workers; this copy is spent
        with _lock:
            _bundles[self.digest] = path
        directory = Path(worker.local_directory) / "modelops"
        threading.Thread(
            target=_warm_up, args=(directory, worker.state.nthreads), daemon=True
        ).start()

    def teardown(self, worker: Worker) -> None:
        """Keep the extracted copy and the children: the next run on this worker uses them."""


def _warm_up(directory: Path, nthreads: int, python: str | None = None) -> None:
    """Start one child per worker thread now, rather than at each thread's first chunk."""
    with _lock:
        ready = sum(1 for c in [*_idle, *_busy] if c.python == python)
        missing = min(nthreads - ready, _CHILDREN_PER_THREAD * nthreads - len(_idle) - len(_busy))
        missing -= _starting[0]
        _starting[0] += max(0, missing)
    for _ in range(missing):
        try:
            child: _Child | None = _new_child(directory, python)
        except Exception:  # the chunk that needs it starts its own and reports the error
            child = None
        with _lock:
            _starting[0] -= 1
            if child is not None:
                _idle.append(child)
            _lock.notify()


def _new_child(directory: Path, python: str | None) -> _Child:
    # Dask starts its workers as daemon processes, and multiprocessing forbids daemons to have
    # children. Ours exit with the worker (they watch its pid), so lift the flag.
    with contextlib.suppress(AssertionError):
        multiprocessing.current_process().daemon = False
    log_dir = directory / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return _Child(_new_pool(python), log_dir / f"child-{next(_children)}.log", python)


def _new_pool(python: str | None) -> WorkerPool:
    return WorkerPool(
        1, initializer=init_worker, context="forkserver", preload=PRELOAD, executable=python
    )


def _pick(python: str | None, bundle_dir: str, limit: int) -> _Child | None:
    """The idle child to run a chunk in, under ``_lock``: one that has the bundle loaded in the
    environment, else one of the environment with no bundle yet, else (when the worker keeps
    as many children as it may) the least recently used; None: start another."""
    for wanted in ((python, bundle_dir), (python, None)):
        for child in reversed(_idle):  # most recently used first
            if (child.python, child.bundle_dir) == wanted:
                return child
    if _idle and len(_idle) + len(_busy) >= limit:
        return _idle[0]
    return None


def _acquire(token: str, python: str | None, bundle_dir: str) -> _Child:
    """An idle child process for the calling thread (a new one if none fits)."""
    worker = get_worker()
    limit = _CHILDREN_PER_THREAD * worker.state.nthreads
    with _lock:
        while _starting[0] > 0 and not any(c.python == python for c in _idle):
            _lock.wait()  # the warm-up is starting one: wait for it
        child = _pick(python, bundle_dir, limit)
        if child is not None:
            _idle.remove(child)
    if child is None:
        child = _new_child(Path(worker.local_directory) / "modelops", python)
    child.token, child.abort = token, threading.Event()
    with _lock:
        _busy.append(child)
        if token in _aborted:
            child.abort.set()
    return child


def _release(child: _Child, *, discard: bool) -> None:
    """Give the child back, or kill it (the next chunk starts a fresh one)."""
    child.token = None
    with _lock:
        _busy.remove(child)
        if not discard:
            _idle.append(child)
    if discard:
        child.pool.shutdown(kill=True)


def _bundle_path(bundle_dir: str) -> str:
    """This worker's copy of the bundle a chunk names."""
    if not bundle_dir.startswith(BUNDLE_MARKER):
        return bundle_dir
    digest = bundle_dir[len(BUNDLE_MARKER) :]
    with _lock:
        path = _bundles.get(digest)
    if path is None:
        raise RuntimeError(
            f"bundle sha256:{digest} was never delivered to this worker "
            "(its plugin is not registered)"
        )
    return str(path)


def _local_spec(spec: ChunkSpec, log_path: Path) -> ChunkSpec:
    """The spec with this worker's bundle copy and a worker-local log file."""
    log = str(log_path) if spec.log_path is not None else None
    return dataclasses.replace(spec, bundle_dir=_bundle_path(spec.bundle_dir), log_path=log)


def _python(environment: WireRequirements | None) -> str | None:
    """The interpreter of the environment on this worker (built now if it is not there)."""
    if environment is None:
        return None
    return str(_environment(environment, get_worker()).python)


def _environment(environment: WireRequirements, worker: Worker) -> Environment:
    """The bundle environment of ``environment``'s pins on this worker, built once.

    Raises:
        BundleError: uv cannot build it here (its message).
    """
    with _lock:
        found = _built.get(environment)
    if found is None:
        cache = Path(worker.local_directory).parent / _ENVS
        source, pins = environment
        found = ensure_environment(Requirements(source, tuple(pins)), cache)
        with _lock:
            _built[environment] = found
    return found


def prepare_environment(environment: WireRequirements, dask_worker: Worker) -> dict[str, Any]:
    """Build (or find) a bundle environment on this worker and start its children in the
    background (a ``Client.run`` target, before any chunk); returns its provenance.

    Raises:
        BundleError: uv cannot build it here (its message).
    """
    found = _environment(environment, dask_worker)
    directory = Path(dask_worker.local_directory) / "modelops"
    threading.Thread(
        target=_warm_up,
        args=(directory, dask_worker.state.nthreads, str(found.python)),
        daemon=True,
    ).start()
    return found.provenance()


def _take_log(path: Path) -> str:
    """Read and empty the chunk's worker-local log (the child appends to it)."""
    try:
        with open(path, "r+", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
            handle.truncate(0)
    except FileNotFoundError:
        return ""
    return text


def run_chunk_on_worker(
    spec: ChunkSpec,
    task_timeout: float | None,
    token: str,
    ticket: int,
    environment: WireRequirements | None = None,
) -> tuple[ChunkEvent, str]:
    """Run ``spec`` in a child process of this worker (of the bundle environment of
    ``environment``'s pins, built here first if needed); returns its event and the chunk's log.

    The event carries the driver's ``ticket``. A crash or timeout of the child is an event
    (:class:`WorkerDied` or :class:`TaskTimedOut`, with the position of the task it was
    running), not an exception: the Dask worker itself stays up, so Dask never retries the chunk
    on another worker because of the model. ``token`` names the driver run, so
    :func:`abort_chunks` can stop its chunks. The log is what the chunk wrote to its job log
    here; the driver appends it to the job log there.
    """
    python = _python(environment)
    child = _acquire(token, python, _bundle_path(spec.bundle_dir))
    if child.abort.is_set():  # its run was stopped before this chunk began
        _release(child, discard=False)
        return WorkerDied(ticket), ""
    discard = True
    try:
        local = _local_spec(spec, child.log_path)
        if child.bundle_dir not in (None, local.bundle_dir) or child.python != python:
            # a child keeps the models it loaded: another bundle gets a fresh process
            child.pool.shutdown(kill=True)
            child.pool, child.python = _new_pool(python), python
        child.bundle_dir = local.bundle_dir
        child.pool.submit(run_in_worker, local, task_timeout=task_timeout)
        while True:
            events = child.pool.poll(_ABORT_CHECK)
            if events:
                break
            if child.abort.is_set():
                return WorkerDied(ticket), ""
        log = _take_log(child.log_path) if local.log_path is not None else ""
        discard = False
    finally:
        _release(child, discard=discard)
    return dataclasses.replace(events[0], ticket=ticket), log


def abort_chunks(token: str) -> int:
    """Ask every running chunk of the driver run ``token`` to stop (``Client.run`` target).

    Dask cannot interrupt a running task; the chunk function sees the request within a fraction
    of a second and kills its child process. A chunk of that run that Dask starts later ends at
    once. Returns how many running chunks were asked.
    """
    with _lock:
        _aborted.add(token)
        running = [child for child in _busy if child.token == token]
    for child in running:
        child.abort.set()
    return len(running)
