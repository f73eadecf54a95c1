"""The pure chunk policy: blame for lost chunks and chunk sizes, driven by synthetic events."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelops.services._events import TaskTimedOut, WorkerDied
from modelops.services._policy import AttemptTracker, ChunkSizer

IDS = ["a", "b", "c", "d"]


def test_a_death_charges_the_running_task_and_reruns_the_others_together() -> None:
    tracker = AttemptTracker(retries=2)
    verdict = tracker.lost(IDS, WorkerDied(1, position=2, exitcode=-11))
    assert verdict.rerun == [[0, 1, 3], [2]]
    assert verdict.failures == []
    # the innocent tasks were not charged: they finish on their first counted attempt
    assert tracker.finish("a") == 1
    assert tracker.finish("c") == 2


def test_a_task_fails_once_its_retries_are_used_up() -> None:
    tracker = AttemptTracker(retries=1)
    assert tracker.lost(["x"], WorkerDied(1, position=0)).rerun == [[0]]
    verdict = tracker.lost(["x"], WorkerDied(2, position=0, exitcode=-11))
    assert verdict.rerun == []
    (failure,) = verdict.failures
    assert (failure.index, failure.status, failure.error_type, failure.attempts) == (
        0,
        "failed",
        "WorkerDied",
        2,
    )
    assert failure.message == "worker process died (SIGSEGV) while running this task, 2 times"
    assert tracker.finish("x") == 1  # forgotten once failed


def test_an_unknown_position_charges_every_task_of_the_chunk() -> None:
    tracker = AttemptTracker(retries=0)
    verdict = tracker.lost(IDS, WorkerDied(1, position=None, exitcode=3))
    assert verdict.rerun == []
    assert [f.index for f in verdict.failures] == [0, 1, 2, 3]
    assert all("exit code 3" in f.message for f in verdict.failures)

    generous = AttemptTracker(retries=1)
    assert generous.lost(IDS, WorkerDied(1, position=7)).rerun == [[0], [1], [2], [3]]


def test_a_timeout_fails_the_running_task_at_once() -> None:
    tracker = AttemptTracker(retries=5, task_timeout=1.5)
    verdict = tracker.lost(IDS, TaskTimedOut(1, position=0))
    assert verdict.rerun == [[1, 2, 3]]
    (failure,) = verdict.failures
    assert (failure.status, failure.error_type, failure.attempts) == ("timeout", "TaskTimeout", 1)
    assert "1.5 s limit" in failure.message
    assert "--" not in failure.message  # no CLI flags below the CLI


@given(
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=0, max_value=3),
    st.lists(st.integers(min_value=-1, max_value=9), min_size=1, max_size=30),
)
def test_every_task_ends_rerun_or_failed_exactly_once(
    size: int, retries: int, positions: list[int]
) -> None:
    tracker = AttemptTracker(retries)
    ids = [f"t{i}" for i in range(size)]
    for pos in positions:
        verdict = tracker.lost(ids, WorkerDied(1, position=None if pos < 0 else pos))
        rerun = [i for group in verdict.rerun for i in group]
        failed = [f.index for f in verdict.failures]
        assert sorted(rerun + failed) == list(range(size))
        assert all(f.attempts == retries + 1 for f in verdict.failures)


def test_chunk_sizer_grows_to_the_target_and_splits_the_tail() -> None:
    sizer = ChunkSizer(target=0.5, max_chunk=5000)
    assert sizer.next_size(remaining=10_000, workers=2) == 4  # cautious before any measurement
    sizer.observe([0.001] * 4, wall=0.004)
    assert sizer.next_size(10_000, 2) == 32  # grows at most 8x per observation
    for _ in range(10):
        sizer.observe([0.001] * sizer.size, wall=0.001 * sizer.size)
    assert 490 <= sizer.next_size(10_000, 2) <= 500  # ~0.5 s of 1 ms tasks
    assert sizer.next_size(remaining=40, workers=2) == 10  # the tail is shared out
    assert sizer.next_size(remaining=1, workers=2) == 1
    assert sizer.next_size(remaining=0, workers=2) == 1


def test_a_session_sizer_sends_a_small_tail_as_one_share_per_worker() -> None:
    sizer = ChunkSizer(target=0.5, max_chunk=5000, share_tail=True)
    for _ in range(10):
        sizer.observe([0.001] * max(sizer.size, 4), wall=0.001 * max(sizer.size, 4))
    # more than one target chunk per worker is left: split finer and finer, as without
    assert sizer.next_size(remaining=4000, workers=2) == sizer.size
    assert sizer.next_size(remaining=1200, workers=2) == 300
    # less: one equal share per worker, since finer splits only add round trips
    assert sizer.next_size(remaining=40, workers=2) == 20
    assert sizer.next_size(remaining=41, workers=2) == 21
    assert sizer.next_size(remaining=20, workers=2, free=1) == 20  # the other one is busy
    assert sizer.next_size(remaining=1, workers=2) == 1


def test_chunk_sizer_bounds() -> None:
    slow = ChunkSizer(target=0.5, max_chunk=5000)
    slow.observe([2.0])
    assert slow.next_size(100, 2) == 1  # tasks longer than the target go one by one
    capped = ChunkSizer(target=0.5, max_chunk=50)
    for _ in range(5):
        capped.observe([1e-7] * 10)
    assert capped.next_size(10_000, 2) == 50
    overhead = ChunkSizer(target=0.5, max_chunk=5000)
    overhead.observe([1e-6] * 4, wall=1.0)  # the round trip, not the task, is what counts
    assert overhead.next_size(10_000, 2) == 2


def test_a_workers_first_round_trip_does_not_count() -> None:
    sizer = ChunkSizer(target=0.5, max_chunk=5000)
    sizer.observe_chunk("w1", [0.001] * 4, wall=2.0)  # start-up and model import: ignored
    assert sizer.next_size(10_000, 2) == 32
    sizer.observe_chunk("w1", [0.001] * 32, wall=4.0)  # warm now: the round trip counts
    assert sizer.next_size(10_000, 2) < 32
