"""Real Dask clusters for the Dask backend tests: a scheduler and workers as separate processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_START_TIMEOUT = 60.0
_STOP_GRACE = 10.0


@dataclass
class DaskCluster:
    """A ``dask scheduler`` process and one ``dask worker`` process hosting ``workers`` workers.

    Everything listens on 127.0.0.1 on ports the OS picks; each process leads its own process
    group, so :meth:`stop` also ends the workers' nannies and children.
    """

    directory: Path
    workers: int
    scheduler: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    address: str = ""
    logs: list[Path] = field(default_factory=list)

    def start(self) -> DaskCluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        scheduler_file = self.directory / "scheduler.json"
        self.scheduler = self._spawn(
            "scheduler",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            "127.0.0.1:0",
            "--scheduler-file",
            str(scheduler_file),
        )
        self.address = self._read_address(scheduler_file)
        self.worker = self._spawn(
            "workers",
            "distributed.cli.dask_worker",
            "--scheduler-file",
            str(scheduler_file),
            "--nworkers",
            str(self.workers),
            "--nthreads",
            "1",
            "--host",
            "127.0.0.1",
            "--no-dashboard",
            "--memory-limit",
            "0",
            "--local-directory",
            str(self.directory / "scratch"),
        )
        self.wait_for_workers()
        return self

    def _spawn(self, name: str, module: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.directory / f"{name}.log"
        self.logs.append(log)
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )

    def _read_address(self, scheduler_file: Path) -> str:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.scheduler is not None
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"the scheduler exited: {self.log_tail()}")
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                return str(json.loads(scheduler_file.read_text())["address"])
            time.sleep(0.05)
        raise RuntimeError(f"the scheduler did not start: {self.log_tail()}")

    def client(self) -> Any:
        """A new ``distributed.Client`` of this cluster (use it as a context manager)."""
        from distributed import Client

        return Client(self.address, set_as_default=False)  # type: ignore[no-untyped-call]

    def wait_for_workers(self, n: int | None = None) -> None:
        """Wait until ``n`` (default: all) workers are registered with the scheduler."""
        with self.client() as client:
            client.wait_for_workers(n or self.workers, timeout=_START_TIMEOUT)

    def worker_pids(self) -> dict[str, int]:
        """The process id of each registered worker (not of its nanny)."""
        with self.client() as client:
            pids = client.run(os.getpid, on_error="return")
        # a worker that just died may still be listed: it answers with an error
        return {address: pid for address, pid in pids.items() if isinstance(pid, int)}

    def kill_scheduler(self) -> None:
        assert self.scheduler is not None
        self.scheduler.kill()
        self.scheduler.wait()

    def stop(self) -> None:
        for proc in (self.worker, self.scheduler):
            if proc is not None:
                _stop_group(proc)

    def log_tail(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-3000:] for log in self.logs)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL what is left of it after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(_STOP_GRACE)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # nannies' children, forkservers, model processes
    proc.wait()


@contextlib.contextmanager
def running_cluster(directory: Path, workers: int) -> Iterator[DaskCluster]:
    """A started cluster, stopped (whole process groups) on exit."""
    cluster = DaskCluster(directory, workers)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
