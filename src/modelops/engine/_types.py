"""What a caller gives a run (options) and gets back (progress snapshots, a summary)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from modelops_contracts.errors import ContractViolationError

__all__ = ["Progress", "RunOptions", "RunSummary"]


@dataclass(frozen=True)
class RunOptions:
    """How to run a job; the flags of ``mops run`` map onto these.

    ``max_task_output_bytes`` caps the Arrow size of one task's rows (key columns included):
    a task returning more fails, so the driver never holds it; ``None`` lifts the cap. The
    driver commits when its buffered tables reach ``commit_bytes``, ``commit_rows`` or
    ``commit_seconds``, whichever comes first. A buffered task costs the driver ~0.6 KB
    besides its rows, so ``commit_rows`` keeps a commit of tiny tasks at a few tens of MB
    (measured: 100,000 one-row tasks per commit raise the driver's peak by ~60 MB).

    Raises:
        ContractViolationError: a negative ``retries``, a non-positive ``task_timeout``,
            ``commit_bytes`` or ``max_task_output_bytes``.
    """

    retries: int = 2
    task_timeout: float | None = None
    fail_fast: bool = False
    use_cache: bool = True
    target_chunk_seconds: float = 0.5
    max_chunk: int = 5000
    commit_rows: int = 50_000
    commit_seconds: float = 2.0
    commit_bytes: int = 256 * 2**20
    max_task_output_bytes: int | None = 64 * 2**20

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ContractViolationError(
                f"retries must be >= 0, got {self.retries}", field="retries", value=self.retries
            )
        if self.task_timeout is not None and self.task_timeout <= 0:
            raise ContractViolationError(
                f"task_timeout must be positive, got {self.task_timeout}",
                field="task_timeout",
                value=self.task_timeout,
            )
        for name in ("commit_bytes", "max_task_output_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ContractViolationError(
                    f"{name} must be positive, got {value}", field=name, value=value
                )


@dataclass
class Progress:
    """A snapshot of a running job for progress displays."""

    total: int
    cached: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    elapsed: float = 0.0

    @property
    def finished(self) -> int:
        """Tasks that need no more work (cached, succeeded, failed or timed out)."""
        return self.cached + self.succeeded + self.failed + self.timed_out

    @property
    def rate(self) -> float:
        """Tasks run per second in this run (cached tasks excluded)."""
        ran = self.succeeded + self.failed + self.timed_out
        return ran / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class RunSummary:
    """How a run ended; :meth:`to_dict` is what ``--json`` output prints."""

    job_id: str
    state: str
    total: int
    succeeded: int
    failed: int
    timed_out: int
    cached: int
    wall_seconds: float
    store: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return asdict(self)
