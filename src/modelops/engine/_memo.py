"""Re-running a finished study without compiling it again.

Compiling is a pure function of the study file's bytes, the bundle's digest, the job id asked
for, the directory relative paths start from, and the ModelOps version. The digest of those
(:func:`source_key`) is recorded in the ledger next to the job it compiled to, so a later run of
the same source finds the job at the cost of hashing one file. If that job is complete (every
task done or cached, every shard its rows live in still on disk), there is nothing to run and
:func:`finished_summary` says so; otherwise the run compiles and proceeds as usual, so a stale
record can only cost a compile, never a wrong answer.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import TYPE_CHECKING

from modelops.engine._types import RunSummary

if TYPE_CHECKING:
    from modelops.store import ResultStore

__all__ = ["finished_summary", "source_key"]


def source_key(study: bytes, bundle_ref: str, job_id: str | None, base: str) -> str:
    """Digest of everything that decides what a study source compiles to."""
    from modelops import __version__

    digest = blake2b(digest_size=32, person=b"mops-compile")
    for part in (__version__, bundle_ref, job_id or "", base):
        digest.update(part.encode() + b"\0")
    digest.update(study)
    return digest.hexdigest()


def finished_summary(store: ResultStore, source: str) -> RunSummary | None:
    """The summary of an all-cached re-run, if ``source`` compiled to a complete job here.

    Complete means every task is done or cached and every shard holding their rows exists
    (a deleted shard makes its tasks run again, which only a full run does).
    """
    record = store.ledger.compiled_job(source)
    if record is None or record.state != "completed":
        return None
    counts = store.ledger.counts(record.job_id)
    finished = counts["done"] + counts["cached"]
    if finished != record.total:
        return None
    _, shards = store.ledger.result_index(record.job_id)
    if not all((store.root / path).is_file() for _, path in shards):
        return None
    return RunSummary(
        job_id=record.job_id,
        state="completed",
        total=record.total,
        succeeded=finished,
        failed=0,
        timed_out=0,
        cached=finished,
        wall_seconds=0.0,
        store=str(store.root),
    )
