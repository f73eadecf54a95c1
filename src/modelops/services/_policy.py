"""Pure decisions about chunks: how big to make them and whom to blame when one is lost.

Shared by the engine and the task-level port, so both size chunks and charge worker deaths the
same way. Nothing here does I/O or looks at a clock; tests drive it with synthetic events.

Blame rules, for a chunk whose worker died or was killed for a timeout:

- the task at the event's ``position`` is the suspect; every other task of the chunk is
  innocent and runs again (as one chunk), its attempts unchanged;
- a timed-out suspect fails at once with status ``timeout`` (running it again would only
  time out again);
- a suspect whose worker died is charged one attempt and runs again alone while its attempts
  stay within ``retries``; past that it fails with ``WorkerDied``;
- when the position is unknown, every task of the chunk is a suspect and is charged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from modelops.services._events import TaskTimedOut, WorkerDied

__all__ = ["AttemptTracker", "ChunkSizer", "Failure", "LostChunk"]

_SIGNALS = {-9: "SIGKILL", -11: "SIGSEGV", -6: "SIGABRT", -15: "SIGTERM", -7: "SIGBUS"}


@dataclass(frozen=True, slots=True)
class Failure:
    """A task that has no attempts left; ``index`` is its position in the lost chunk."""

    index: int
    status: Literal["failed", "timeout"]
    error_type: str
    message: str
    attempts: int


@dataclass(frozen=True, slots=True)
class LostChunk:
    """What to do with the tasks of a lost chunk.

    ``rerun`` holds groups of chunk positions, each to be submitted again as one chunk;
    ``failures`` the tasks that are finished for good.
    """

    rerun: list[list[int]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


class AttemptTracker:
    """Counts the attempts of tasks that are not finished yet, and applies the blame rules.

    Args:
        retries: how many times a task whose worker died may run again.
        task_timeout: the per-task limit in seconds, named in timeout messages.
    """

    def __init__(self, retries: int, task_timeout: float | None = None) -> None:
        self.retries = retries
        self.task_timeout = task_timeout
        self._charged: dict[str, int] = {}

    def pending(self) -> bool:
        """True while some task has been charged an attempt that has not finished yet."""
        return bool(self._charged)

    def finish(self, task_id: str) -> int:
        """The task ran to an end (success or a model error): its attempts, this one included."""
        if not self._charged:  # no worker died in this run: nothing to look up
            return 1
        return self._charged.pop(task_id, 0) + 1

    def lost(self, task_ids: Sequence[str], event: WorkerDied | TaskTimedOut) -> LostChunk:
        """Decide the fate of every task of a chunk whose worker died or timed out."""
        pos = event.position
        if pos is None or not 0 <= pos < len(task_ids):
            verdict = LostChunk()
            for index, task_id in enumerate(task_ids):
                self._charge(index, task_id, event, verdict)
            return verdict
        innocent = [i for i in range(len(task_ids)) if i != pos]
        verdict = LostChunk(rerun=[innocent] if innocent else [])
        if isinstance(event, TaskTimedOut):
            limit = f"the {self.task_timeout:g} s limit" if self.task_timeout else "its time limit"
            verdict.failures.append(
                Failure(
                    pos,
                    "timeout",
                    "TaskTimeout",
                    f"task ran longer than {limit}; its worker was killed",
                    self.finish(task_ids[pos]),
                )
            )
        else:
            self._charge(pos, task_ids[pos], event, verdict)
        return verdict

    def _charge(
        self, index: int, task_id: str, event: WorkerDied | TaskTimedOut, verdict: LostChunk
    ) -> None:
        attempts = self._charged.get(task_id, 0) + 1
        if attempts <= self.retries:
            self._charged[task_id] = attempts
            verdict.rerun.append([index])
            return
        self._charged.pop(task_id, None)
        times = f"{attempts} time{'s' if attempts > 1 else ''}"
        message = f"worker process died ({_cause(event.exitcode)}) while running this task, {times}"
        verdict.failures.append(Failure(index, "failed", "WorkerDied", message, attempts))


def _cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown cause"
    if exitcode < 0:
        return _SIGNALS.get(exitcode, f"signal {-exitcode}")
    return f"exit code {exitcode}"


class ChunkSizer:
    """Chooses chunk sizes so that a chunk holds about ``target`` seconds of work.

    Starts small, learns the time per task from finished chunks (an exponential average), and
    grows at most eightfold per observation. Near the end of a job it splits what is left so
    that every worker finishes at about the same time (see :meth:`next_size`).
    """

    def __init__(
        self,
        target: float = 0.5,
        max_chunk: int = 5000,
        *,
        start: int = 4,
        share_tail: bool = False,
    ) -> None:
        self.target = target
        self.share_tail = share_tail
        self.max_chunk = max_chunk
        self.per_task: float | None = None
        self.size = start
        self._warm: set[str] = set()  # workers past their first chunk

    def observe_chunk(self, worker: str, durations: Sequence[float], wall: float) -> None:
        """Learn from a chunk that ``worker`` finished, ``wall`` seconds after it was sent.

        A worker's first chunk also paid for its start-up and the model import: timing that
        round trip would make tiny tasks look slow and shrink the next chunks to one task, so
        only its task durations count.
        """
        warm = worker in self._warm
        self._warm.add(worker)
        self.observe(durations, wall if warm else None)

    def observe(self, durations: Sequence[float], wall: float | None = None) -> None:
        """Learn from a finished chunk: its tasks' durations and, when known, its round trip."""
        if not durations:
            return
        mean = max(sum(durations) / len(durations), 1e-6)
        if wall is not None:
            mean = max(mean, wall / len(durations))
        self.per_task = mean if self.per_task is None else 0.7 * self.per_task + 0.3 * mean
        wanted = int(self.target / self.per_task)
        self.size = max(1, min(self.max_chunk, wanted, self.size * 8))

    def next_size(self, remaining: int, workers: int, free: int | None = None) -> int:
        """Size of the next chunk, with ``remaining`` tasks not yet sent to ``workers`` workers,
        ``free`` of them idle now (default: all).

        With ``share_tail``, what is left when it is less than one target chunk per worker goes
        out as one equal share per idle worker: for the many small jobs of a search, where finer
        splits only add round trips.
        """
        if remaining <= 0:
            return 1
        small = self.per_task is not None and remaining * self.per_task <= self.target * workers
        if self.share_tail and small:
            idle = max(1, workers if free is None else min(free, workers))
            return max(1, min(self.max_chunk, math.ceil(remaining / idle)))
        tail = math.ceil(remaining / (2 * max(1, workers)))
        return max(1, min(self.size, tail))
