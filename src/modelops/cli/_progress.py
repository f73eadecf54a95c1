"""Progress display on stderr: a live bar (or spinner) on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from modelops.engine import Progress as RunProgress

__all__ = ["ProgressDisplay", "StepDisplay"]


class ProgressDisplay:
    """Renders engine progress snapshots on stderr.

    Nothing is shown before the first snapshot, which the engine sends only once the store is
    open and locked: a run that stops on bad input prints its one error line and nothing else.
    """

    def __init__(self, job_id: str, *, quiet: bool = False) -> None:
        self.live = False
        if not quiet:  # rich is loaded only to draw: not for --json
            from rich.console import Console

            self.console = Console(stderr=True)
            self.live = self.console.is_terminal
        self.quiet = quiet
        self.job_id = job_id
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = 0.0
        self._started = False
        self._note: str | None = None

    def __enter__(self) -> ProgressDisplay:
        return self

    def _start(self, total: int) -> None:
        if self.quiet:
            return
        if not self.live:
            print(f"job {self.job_id}: {total} tasks", file=sys.stderr, flush=True)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("cached {task.fields[cached]}  failed {task.fields[failed]}"),
            TextColumn("{task.fields[rate]:.0f} tasks/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.job_id, total=total, cached=0, failed=0, rate=0.0)

    def note(self, text: str | None) -> None:
        """Show a line on the workers' state (Slurm jobs pending and running) when it changes."""
        if text is None or text == self._note or self.quiet:
            return
        self._note = text
        if self._bar is not None:
            self._bar.console.print(text, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def __call__(self, p: RunProgress) -> None:
        if not self._started:
            self._started = True
            self._start(p.total)
        failed = p.failed + p.timed_out
        if self._bar is not None and self._task is not None:
            self._bar.update(
                self._task,
                total=p.total,
                completed=p.finished,
                cached=p.cached,
                failed=failed,
                rate=p.rate,
            )
            return
        now = time.monotonic()
        if self.quiet or (now - self._last_line < 2.0 and p.finished < p.total):
            return
        self._last_line = now
        print(
            f"[{p.elapsed:6.1f}s] {p.finished}/{p.total} tasks "
            f"({p.succeeded} ran, {p.cached} cached, {failed} failed) {p.rate:.0f} tasks/s",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()


class StepDisplay:
    """The steps of a long operation that has no count (building an environment): a spinner
    naming the current step on a terminal, one line per step otherwise. The last step stays."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self._last: str | None = None
        self._console: Any = None  # rich is loaded at the first step: most runs have none
        self._status: Any = None  # a rich Status while a step shows

    def __enter__(self) -> StepDisplay:
        return self

    def __call__(self, line: str) -> None:
        if self.quiet:
            return
        self._last = line
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        if not self._console.is_terminal:
            print(line, file=sys.stderr, flush=True)
        elif self._status is None:
            self._status = self._console.status(line)
            self._status.start()
        else:
            self._status.update(line)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
            if exc is None and self._last is not None:
                self._console.print(self._last, highlight=False)
