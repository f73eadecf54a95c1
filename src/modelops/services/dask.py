"""Run tasks on a Dask cluster: the same jobs, store and cache as the local pool, on many machines.

How the pieces of the backend contract are met on Dask:

- **Bundle by digest, no shared filesystem.** :meth:`DaskSimulationService.start` registers a
  ``WorkerPlugin`` holding the bundle's zip bytes. Dask sends it once to every worker, and to every
  worker that joins later; its ``setup`` extracts the snapshot into the worker's local directory
  under its digest. Chunks carry ``modelops-dask-bundle:<digest>`` as their bundle directory, and
  the worker swaps that for its own copy.
- **One chunk per Dask task, in a child process.** Each chunk is one future
  (``client.submit(..., pure=False)`` with a unique key), at most two per worker thread in
  flight (``capabilities.chunks_per_worker``).
  On the worker, the chunk runs in a child process owned by the worker thread (the local pool's
  process machinery, one process per thread): the child records which task it is running, so a
  model that segfaults, calls ``os._exit`` or is killed by the OOM killer yields
  :class:`WorkerDied` with that task's position, and ``task_timeout`` kills the child (not the
  Dask worker) and yields :class:`TaskTimedOut` with the position. The chunk function returns
  that event itself, with the chunk's log beside it. The engine then charges that task and
  re-runs the rest, so the run's retry count alone decides when a task is FAILED.
- **Lost workers.** A Dask worker process that dies (SIGKILL, a lost node) takes its chunk with
  it; Dask reschedules that chunk on another worker (up to the scheduler's
  ``distributed.scheduler.allowed-failures`` times), and as nothing of an unfinished chunk was
  committed, its rows still arrive once. When Dask gives up (``KilledWorker``) the chunk is
  reported as :class:`WorkerDied` without a position, and the engine charges each of its tasks.
- **Results** come back through futures' done-callbacks into a queue that :meth:`poll` drains;
  finished chunks are gathered in one call and their futures released at once.
- **Scheduler loss.** When the client loses the scheduler, Dask cancels every future; :meth:`poll`
  then raises :class:`ClusterError`. The engine commits what finished and marks the job
  interrupted, so running the same command against a new scheduler resumes it.

- **Bundle environments.** A bundle that declares requirements names their exact pins with each
  chunk; every worker builds that environment once with uv (at :meth:`start`, so one that cannot
  be built fails the run before any task) and runs the chunk in a child of its Python.

Workers need ModelOps installed, and the model's own dependencies unless the bundle declares
them; nothing else is assumed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from modelops.runtime.chunk import ChunkSpec
from modelops.services._base import BackendCapabilities, ChunkBackend
from modelops.services._dask_worker import (
    BUNDLE_MARKER,
    BundlePlugin,
    WireRequirements,
    abort_chunks,
    prepare_environment,
    run_chunk_on_worker,
)
from modelops.services._events import ChunkEvent, ChunkRaised, RemoteError, WorkerDied
from modelops.services.batch import BatchCluster, BatchSettings
from modelops_contracts.errors import BundleError, ClusterError, ContractViolationError
from modelops_contracts.task import bundle_digest

if TYPE_CHECKING:
    from modelops.envs import Environment

# distributed's Client, Future and LocalCluster methods are mostly unannotated: they are held as
# Any here rather than annotating every call.
_Client: TypeAlias = Any
_Future: TypeAlias = Any

__all__ = ["ClusterError", "DaskSimulationService"]

_REFRESH_SECONDS = 1.0  # how often free_slots asks the scheduler how many threads there are
_CLOSE_TIMEOUT = 10.0
# a second chunk waits behind each running one, so a worker thread never idles for the driver's
# round trip through the scheduler; memory stays bounded at two per thread
_CHUNKS_PER_THREAD = 2


_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def _check_address(address: str) -> str:
    """Check the form of a Dask scheduler address before any connection is tried.

    Accepted: ``SCHEME://HOST:PORT`` with a scheme Dask speaks (tcp, tls, ws, wss, ucx),
    ``HOST:PORT`` (tcp), and ``inproc://...``; HOST may be an IPv6 address in brackets.
    Returns the address unchanged.

    Raises:
        ContractViolationError: any other form, or a port that is not in 1-65535.
    """
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme == "inproc" and rest:
        return address
    host, colon, port = rest.rpartition(":")
    valid = (
        scheme in _SCHEMES
        and bool(colon)
        and bool(host.strip("[]"))
        and not any(c in host for c in "/ ?#@")
        and port.isdigit()
        and 0 < int(port) < 65536
    )
    if not valid:
        raise ContractViolationError(
            f"the Dask scheduler address must look like tcp://HOST:PORT (or tls://, ws://, "
            f"wss://, ucx://), got {address[:80]!r}",
            field="scheduler",
            value=address[:80],
        )
    return address


def _probe(address: str, timeout: float) -> None:
    """Open and close a TCP connection to the scheduler: a refused port fails at once, where
    Dask would retry it until its timeout (ucx and inproc addresses are not probed).

    Raises:
        OSError: nothing listens there, or the host cannot be resolved.
    """
    scheme, sep, rest = address.partition("://")
    if sep and scheme not in ("tcp", "tls", "ws", "wss"):
        return
    host, _, port = (rest if sep else address).rpartition(":")
    socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()


class DaskSimulationService(ChunkBackend):
    """Runs chunks of tasks on a Dask cluster; a chunk backend and a ``SimulationService``.

    ``workers`` counts the cluster's worker threads (refreshed from the scheduler). Timeouts and
    crashes are handled in a child process per worker thread; no shared filesystem is needed.

    Args:
        scheduler: address of a running scheduler, ``tcp://HOST:PORT`` (``"local"`` is the same
            as ``local=True``).
        workers: with ``local=True``, the number of single-threaded worker processes (default 2).
            A remote cluster's size is set where its workers are started.
        local: start a ``distributed.LocalCluster`` on this machine for the run and stop it at
            :meth:`close`.
        store: store root where the port methods find bundle snapshots (the engine passes the
            snapshot itself through :meth:`start`).
        connect_timeout: seconds to wait for the scheduler to answer.
        batch: start a batch-system cluster for the run (Slurm, PBS, SGE or LSF through
            dask-jobqueue, see :mod:`modelops.services.batch`), scaled between 1 and its
            ``jobs`` jobs, and close it (cancelling its jobs) at :meth:`close`.
        log_directory: where a batch cluster's jobs write their logs (default: ``workers/``
            beside the job's log, known at :meth:`start`).

    Raises:
        ContractViolationError: not exactly one of ``scheduler``, ``local`` and ``batch``, or
            ``workers`` without ``local``.
    """

    capabilities: ClassVar[BackendCapabilities] = BackendCapabilities(
        enforces_timeouts=True,
        isolates_crashes=True,
        needs_shared_filesystem=False,
        chunks_per_worker=_CHUNKS_PER_THREAD,
        runs_environments=True,
    )

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        workers: int | None = None,
        local: bool = False,
        store: Path | str | None = None,
        connect_timeout: float = 30.0,
        batch: BatchSettings | None = None,
        log_directory: Path | str | None = None,
    ) -> None:
        if scheduler == "local":
            scheduler, local = None, True
        if (scheduler is not None) + local + (batch is not None) != 1:
            raise ContractViolationError(
                "pass one of a scheduler address, local=True or batch=",
                field="scheduler",
                value=scheduler,
            )
        if workers is not None and (not local or workers < 1):
            raise ContractViolationError(
                "workers applies to local=True only and must be at least 1",
                field="workers",
                value=workers,
            )
        self._address = _check_address(scheduler) if scheduler is not None else None
        self._local_workers = workers or 2
        self.workers = self._local_workers if local else 1
        self._batch_settings = batch
        self._batch: BatchCluster | None = None
        self._closed_batch: dict[str, Any] | None = None
        self._log_directory = Path(log_directory) if log_directory is not None else None
        if batch is not None:  # the driver keeps enough chunks queued for every job to start
            self.workers = batch.jobs * batch.cores
        self._store_root = Path(store) if store is not None else None
        self._connect_timeout = connect_timeout
        self._token = uuid.uuid4().hex[:16]
        self._client: _Client | None = None
        self._cluster: Any = None
        self._connecting: threading.Thread | None = None
        self._connect_error: BaseException | None = None
        self._plugins: dict[str, str] = {}  # digest -> plugin name
        self._digest: str | None = None
        self._futures: dict[str, tuple[int, str | None, _Future]] = {}
        self._done: queue.SimpleQueue[_Future] = queue.SimpleQueue()
        self._tickets = 0
        self._refreshed = 0.0
        self._environment: WireRequirements | None = None
        self._prepared: dict[WireRequirements, dict[str, Any]] = {}  # its provenance, per env

    # -- connection ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Connect (or start the local cluster) in the background while the job compiles; a
        batch cluster waits for :meth:`connect` or :meth:`start`, which know where its logs go."""
        if self._client is None and self._connecting is None and self._batch_settings is None:
            self._connecting = threading.Thread(
                target=self._connect_in_background, name="modelops-dask-connect", daemon=True
            )
            self._connecting.start()

    def connect(self, *, log_directory: Path | str | None = None) -> None:
        """Connect now (or wait for :meth:`warm_up`'s connection), so that a scheduler that
        cannot be reached fails before anything is registered. A batch cluster is started here
        and waited for until its first worker runs (its jobs write their logs to
        ``log_directory``).

        Raises:
            ClusterError: the scheduler cannot be reached, the local cluster cannot start, or no
                batch job started within the settings' ``start_timeout`` (its jobs are then
                cancelled).
        """
        if log_directory is not None:
            self._log_directory = Path(log_directory)
        self._ensure_client()

    def _connect_in_background(self) -> None:
        try:
            self._connect()
        except BaseException as exc:  # re-raised by _ensure_client in the caller's thread
            self._connect_error = exc

    def _ensure_client(self) -> _Client:
        if self._connecting is not None:
            self._connecting.join()
            self._connecting = None
        if self._connect_error is not None:
            error, self._connect_error = self._connect_error, None
            raise error
        if self._client is None:
            self._connect()
        assert self._client is not None
        return self._client

    def _connect(self) -> None:
        from distributed import Client, LocalCluster

        if self._batch_settings is not None:
            self._connect_batch(self._batch_settings)
        elif self._address is None:
            self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=self._local_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            )
            self._client = Client(self._cluster, set_as_default=False)  # type: ignore[no-untyped-call]
        else:
            try:
                _probe(self._address, self._connect_timeout)
                self._client = Client(  # type: ignore[no-untyped-call]
                    self._address, timeout=self._connect_timeout, set_as_default=False
                )
            except (OSError, TimeoutError, ValueError) as exc:
                raise ClusterError(
                    f"cannot reach the Dask scheduler at {self._address}: {exc}",
                    hint="check the address, or start one with `dask scheduler`",
                ) from exc
        self._refresh_workers(force=True)

    def _connect_batch(self, settings: BatchSettings) -> None:
        """Start the batch cluster and wait for its first worker (all cancelled on failure)."""
        from distributed import Client

        if self._log_directory is None:
            raise RuntimeError("a batch cluster needs its log directory before it starts")
        batch = BatchCluster(settings, self._log_directory)
        cluster = batch.start()
        self._batch, self._cluster = batch, cluster
        try:
            self._client = Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
            self._client.wait_for_workers(1, timeout=settings.start_timeout)
        except BaseException as exc:
            states = batch.status_line() or f"no {settings.kind} job seen"
            self.close()
            if isinstance(exc, TimeoutError | OSError):
                raise ClusterError(
                    f"no {settings.kind} job started within {settings.start_timeout:g} s "
                    f"({states}); its jobs are cancelled",
                    hint="check the queue with squeue, or allow a longer start timeout",
                ) from exc
            raise

    def _where(self) -> str:
        if self._batch is not None:
            return f"the {self._batch.settings.kind} cluster"
        if self._cluster is not None:
            return f"the local Dask cluster at {self._cluster.scheduler_address}"
        return f"the Dask scheduler at {self._address}"

    def _lost(self, exc: BaseException | None = None) -> ClusterError:
        hint = (
            "the job is resumable: run it again (a new local cluster starts with it)"
            if self._cluster is not None
            else "the job is resumable: start a scheduler and run the job again against it"
        )
        error = ClusterError(f"lost {self._where()}", hint=hint)
        if exc is not None:
            error.__cause__ = exc
        return error

    def _connected_client(self) -> _Client:
        client = self._ensure_client()
        if client.status != "running":
            raise self._lost()
        return client

    # -- ChunkBackend ---------------------------------------------------------------------------

    def start(
        self, *, bundle_ref: str, bundle_zip: Path, cache_dir: Path, log_path: Path | None
    ) -> None:
        """Connect, then ship the bundle snapshot to every worker (and to later ones).

        ``cache_dir`` is not used: each worker extracts its own copy into its local directory.

        Raises:
            ClusterError: the scheduler cannot be reached.
            BundleError: the snapshot cannot be read or extracted on a worker.
        """
        if self._log_directory is None and log_path is not None:
            self._log_directory = Path(log_path).parent / "workers"
        client = self._connected_client()
        digest = bundle_digest(bundle_ref)
        if digest not in self._plugins:
            try:
                data = Path(bundle_zip).read_bytes()
            except OSError as exc:
                raise BundleError(f"cannot read bundle snapshot {bundle_zip}: {exc}") from exc
            name = f"modelops-bundle-{digest[:16]}-{self._token}"
            self._plugins[digest] = name  # unregistered at close(), even if setup failed
            try:
                client.register_plugin(BundlePlugin(bundle_ref, data), name=name)
            except BundleError:
                raise
            except (OSError, TimeoutError) as exc:
                raise self._lost(exc) from exc
            except Exception as exc:
                raise ClusterError(
                    f"the Dask workers cannot take the bundle: {type(exc).__name__}: {exc}",
                    hint="workers need modelops and the model's dependencies installed",
                ) from exc
        self._digest = digest
        self._refresh_workers(force=True)
        if self._environment is not None and self._environment not in self._prepared:
            self._prepared[self._environment] = self._prepare(client, self._environment)

    def use_environment(self, environment: Environment | None) -> None:
        """Run the chunks submitted from now on in the bundle environment of ``environment``'s
        pins, which each worker builds for itself (at the next :meth:`start` for the workers
        there then, at their first chunk for workers that join later)."""
        if environment is None:
            self._environment = None
            return
        wanted = environment.requirements
        self._environment = (wanted.source, wanted.pins)

    def _prepare(self, client: _Client, environment: WireRequirements) -> dict[str, Any]:
        """Build the environment on every worker now, so that one that cannot be built fails
        the run before any task; the workers' record of it (the first, where they agree).

        Raises:
            BundleError: a worker cannot build it (uv's message).
            ClusterError: the scheduler went away.
        """
        try:
            records = client.run(prepare_environment, environment)
        except BundleError as exc:
            raise BundleError(f"on a Dask worker: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise self._lost(exc) from exc
        found = list(records.values())
        if not found:
            return {}
        record = dict(found[0])
        if any(other != found[0] for other in found[1:]):
            record["workers"] = records  # they differ: keep each one's
        return record

    def bundle_dir(self) -> str:
        if self._digest is None:
            raise RuntimeError("DaskSimulationService.start() was not called")
        return BUNDLE_MARKER + self._digest

    def _refresh_workers(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._refreshed < _REFRESH_SECONDS:
            return
        client = self._client
        if client is None or client.status != "running":
            raise self._lost()
        try:
            threads = sum(client.nthreads().values())
        except (OSError, TimeoutError) as exc:
            raise self._lost(exc) from exc
        self._refreshed = now
        if self._batch is not None:  # sized for every job, so adaptive scaling sees the backlog
            settings = self._batch.settings
            self.workers = max(threads, settings.jobs * settings.cores)
            return
        # with no worker yet (a batch system still starting them) one chunk waits on the scheduler
        self.workers = max(1, threads)

    def free_slots(self) -> int:
        if self._client is None:
            return 0
        self._refresh_workers()
        return max(0, _CHUNKS_PER_THREAD * self.workers - len(self._futures))

    def submit_chunk(self, spec: ChunkSpec, *, task_timeout: float | None) -> int:
        client = self._connected_client()
        self._tickets += 1
        key = f"modelops-chunk-{self._token}-{self._tickets}"
        future = client.submit(
            run_chunk_on_worker,
            spec,
            task_timeout,
            self._token,
            self._tickets,
            self._environment,
            key=key,
            pure=False,
        )
        self._futures[key] = (self._tickets, spec.log_path, future)
        future.add_done_callback(self._done.put)
        return self._tickets

    def poll(self, timeout: float) -> list[ChunkEvent]:
        """Events of the chunks that ended within ``timeout`` seconds.

        Raises:
            ClusterError: the scheduler went away; the chunks still in flight are lost.
        """
        if not self._futures:
            return []
        done: list[_Future] = []
        try:
            done.append(self._done.get(timeout=timeout))
        except queue.Empty:
            if self._client is not None and self._client.status != "running":
                raise self._lost() from None
            return []
        with contextlib.suppress(queue.Empty):
            while True:
                done.append(self._done.get_nowait())
        done = [f for f in done if f.key in self._futures]  # skip futures of a closed run
        return self._events(done)

    def _events(self, done: list[_Future]) -> list[ChunkEvent]:
        client = self._connected_client()
        if any(f.status == "cancelled" for f in done) and client.status != "running":
            raise self._lost()
        finished = [f for f in done if f.status == "finished"]
        try:
            outcomes: list[Any] = client.gather(finished) if finished else []
        except Exception as exc:  # a result holder died and its recomputation failed
            if client.status != "running":
                raise self._lost(exc) from exc
            outcomes = [_result_or_none(f) for f in finished]
        results = dict(zip([f.key for f in finished], outcomes, strict=True))
        events: list[ChunkEvent] = []
        for future in done:
            ticket, log_path, _ = self._futures.pop(future.key)
            outcome = results.get(future.key)
            if outcome is None:
                events.append(_event_of_failed(ticket, future))
            else:
                event, log = outcome
                if log and log_path is not None:
                    _append_log(log_path, log)
                events.append(event)
            future.release()
        return events

    def close(self, *, kill: bool = False) -> None:
        """Stop this run's chunks and plugins, disconnect, and stop the local cluster if any."""
        self._drop_port()
        if self._connecting is not None:
            self._connecting.join()
            self._connecting = None
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        batch, self._batch = self._batch, None
        futures = [f for _, _, f in self._futures.values()]
        self._futures.clear()
        self._done = queue.SimpleQueue()
        plugins, self._plugins = self._plugins, {}
        self._digest = None
        token, self._token = self._token, uuid.uuid4().hex[:16]  # a restart is a new run
        if client is not None:
            if client.status == "running":
                with contextlib.suppress(Exception):
                    if futures:
                        client.cancel(futures, force=True)
                        if kill:
                            client.run(abort_chunks, token, on_error="ignore")
                    for name in plugins.values():
                        client.unregister_worker_plugin(name)
            del futures
            # after a lost scheduler, Dask logs the reconnection attempt that closing cancels;
            # the run already raised ClusterError, which says it better
            quiet = _quiet_client_logs() if client.status != "running" else contextlib.nullcontext()
            with quiet, contextlib.suppress(Exception):
                client.close(timeout=_CLOSE_TIMEOUT)
        if batch is not None:
            self._closed_batch = batch.provenance()
            batch.close(timeout=_CLOSE_TIMEOUT)  # cancels its jobs
        elif cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=_CLOSE_TIMEOUT)

    # -- display ------------------------------------------------------------------------------

    def status_line(self) -> str | None:
        """How many of a batch cluster's jobs are pending and running (None otherwise)."""
        return self._batch.status_line() if self._batch is not None else None

    def provenance(self) -> dict[str, Any]:
        """A batch cluster's kind, settings and every job id it submitted, and the bundle
        environment the last chunks ran in as the workers built it."""
        found: dict[str, Any] = {}
        if self._batch is not None:
            found["cluster"] = self._batch.provenance()
        elif self._closed_batch is not None:
            found["cluster"] = dict(self._closed_batch)
        if self._environment is not None and self._prepared.get(self._environment):
            found["environment"] = self._prepared[self._environment]
        return found

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's URL while connected (``None`` when the scheduler has none)."""
        if self._connecting is not None:
            self._connecting.join()
        client = self._client
        if client is None:
            return None
        try:
            link = client.dashboard_link
        except Exception:
            return None
        return str(link) if link else None

    @property
    def description(self) -> str:
        if self._connecting is not None:
            self._connecting.join()  # say where tasks will run, not where they might
        client = self._client
        address = self._address
        if client is not None:
            with contextlib.suppress(Exception):
                address = client.scheduler.address
        if self._batch_settings is not None:
            kind = f"Dask on {self._batch_settings.kind} (dask-jobqueue)"
        else:
            kind = "Dask LocalCluster" if self._address is None else "Dask cluster"
        threads = f"{self.workers} worker thread{'s' if self.workers != 1 else ''}"
        return f"{kind} {address or '(not started)'}, {threads}"

    def __enter__(self) -> DaskSimulationService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _quiet_client_logs() -> Iterator[None]:
    logger = logging.getLogger("distributed.client")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _result_or_none(future: _Future) -> Any:
    try:
        return future.result()
    except Exception:
        return None


def _event_of_failed(ticket: int, future: _Future) -> ChunkEvent:
    """The event of a chunk whose function never returned: Dask gave up on it, or it raised."""
    from distributed import KilledWorker

    if future.status == "cancelled":
        return WorkerDied(ticket)
    exc = future.exception()
    if isinstance(exc, KilledWorker):
        return WorkerDied(ticket, worker=str(getattr(exc.last_worker, "address", exc.last_worker)))
    text = "".join(traceback.format_exception(type(exc), exc, future.traceback()))
    return ChunkRaised(ticket, RemoteError(type(exc).__name__, str(exc), text))


def _append_log(log_path: str, text: str) -> None:
    """Append what a chunk logged on its worker to the job log on the driver."""
    try:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        pass  # the log is a convenience; losing it must not lose the chunk's results
