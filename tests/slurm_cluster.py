"""A real, throw-away Slurm for the tests: munged, slurmctld and slurmd on 127.0.0.1.

``start_slurm(root)`` runs ``tests/slurm/slurm-up.sh root`` (which installs the Debian packages when
they are missing, writes everything under ``root`` and waits for the node to be idle) and
``stop_slurm(cluster)`` runs ``tests/slurm/slurm-down.sh root``. Every Slurm client only needs
``SLURM_CONF`` from :meth:`SlurmCluster.env`. Meant for one session-scoped fixture per test run.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "slurm"
UP = SCRIPTS / "slurm-up.sh"
DOWN = SCRIPTS / "slurm-down.sh"
PARTITION = "debug"

# slurm-up.sh gives up after 60 s waiting for the node; a first apt-get install comes on top.
UP_TIMEOUT_S = 600.0
DOWN_TIMEOUT_S = 120.0
CLIENT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SlurmCluster:
    """A running test Slurm: its directory, its ``slurm.conf`` and its one partition."""

    root: Path
    conf: Path
    partition: str

    def env(self) -> dict[str, str]:
        """``os.environ`` plus ``SLURM_CONF``: all that sbatch/squeue/scancel/sinfo need."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def jobs(self, *, all_states: bool = False) -> list[tuple[str, str]]:
        """The cluster's jobs as squeue shows them: ``(job id, state)``, e.g. ``("3", "RUNNING")``.

        By default only unfinished jobs (pending, running, completing, ...), so ``[]`` means nothing
        is left running. ``all_states=True`` adds finished ones (``COMPLETED``, ``CANCELLED``,
        ``TIMEOUT``, ...), which stay listed for ``MinJobAge`` (30 s) after they end.
        """
        cmd = ["squeue", "-h", "-o", "%i %T"]
        if all_states:
            cmd += ["-t", "all"]
        out = subprocess.run(
            cmd,
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=CLIENT_TIMEOUT_S,
        ).stdout
        return [(job, state) for job, state in (line.split() for line in out.splitlines() if line)]


def _run(script: Path, root: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), str(root)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_slurm(root: Path) -> SlurmCluster:
    """Start a Slurm whose files all live under ``root`` (created) and wait until it is idle.

    Raises :class:`RuntimeError` with the script's output when it fails (nothing it started is left
    running then). It does not skip: a test run that needs Slurm fails without it.
    """
    root = Path(root).resolve()
    try:
        proc = _run(UP, root, UP_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        _run(DOWN, root, DOWN_TIMEOUT_S)
        raise RuntimeError(f"{UP.name} {root} did not finish in {UP_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        raise RuntimeError(
            f"{UP.name} {root} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    conf = root / "slurm.conf"
    env_line = (root / "env").read_text().strip()
    if env_line != f"SLURM_CONF={conf}":
        raise RuntimeError(f"{UP.name} wrote an unexpected {root / 'env'}: {env_line!r}")
    return SlurmCluster(root=root, conf=conf, partition=PARTITION)


def stop_slurm(cluster: SlurmCluster) -> None:
    """Cancel the cluster's jobs and stop the daemons it started. Safe to call twice."""
    proc = _run(DOWN, cluster.root, DOWN_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{DOWN.name} {cluster.root} failed (exit {proc.returncode}):\n"
            f"{proc.stdout}{proc.stderr}"
        )
