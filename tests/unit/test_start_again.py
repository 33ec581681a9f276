"""When the maintenance thread starts a stopped workflow again (runtime/again.py)."""

from __future__ import annotations

import pytest

from relos import errors
from relos.runtime.again import FIRST_DELAY_SECONDS, MAX_DELAY_SECONDS, StartAgain
from timehelpers import ManualClock

LOST = errors.DatabaseUnreachableError("the connection went")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_a_first_stop_starts_again_at_once(clock: ManualClock) -> None:
    again = StartAgain(clock)
    assert not again and again.seconds_to_next() is None
    assert again.add("w", LOST) == 0.0
    assert again and "w" in again
    assert again.seconds_to_next() == 0.0
    assert again.due() == [("w", False)]
    again.started("w")
    assert not again and again.due() == []


def test_stops_soon_after_each_start_double_the_wait_up_to_the_cap(clock: ManualClock) -> None:
    again = StartAgain(clock)
    waits = []
    for _ in range(12):
        waits.append(again.add("w", LOST))
        clock.t += again.seconds_to_next() or 0.0
        assert again.due() == [("w", False)]
        again.started("w")
        clock.t += 0.05  # (stopped again at its first write)
    expected = [0.0] + [min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** i) for i in range(11)]
    assert waits == pytest.approx(expected)
    assert max(waits) == MAX_DELAY_SECONDS


def test_not_due_before_its_wait_ends(clock: ManualClock) -> None:
    again = StartAgain(clock)
    again.add("w", LOST)
    again.started("w")
    assert again.add("w", LOST) == pytest.approx(FIRST_DELAY_SECONDS)
    assert again.due() == []
    assert again.seconds_to_next() == pytest.approx(FIRST_DELAY_SECONDS)
    clock.t += FIRST_DELAY_SECONDS
    assert again.due() == [("w", False)]


def test_a_stop_long_after_the_last_start_starts_again_at_once(clock: ManualClock) -> None:
    again = StartAgain(clock)
    for _ in range(5):  # (the wait grew to 0.8 s)
        again.add("w", LOST)
        clock.t += again.seconds_to_next() or 0.0
        again.started("w")
    clock.t += 10.0  # it ran a while before it stopped again
    assert again.add("w", LOST) == 0.0
    assert again.due() == [("w", False)]


def test_whether_the_start_counts_follows_the_cause(clock: ManualClock) -> None:
    again = StartAgain(clock)
    again.add("by-db", LOST)
    again.add("refused", errors.StoreError("the database refused the write"))
    again.add("crashed", RuntimeError("cannot deserialize its inputs"))
    assert again.due() == [("by-db", False), ("crashed", True), ("refused", True)]
    # A second cause while it waits: it counts if either does.
    again.add("by-db", ValueError("not the database"))
    assert ("by-db", True) in again.due()


def test_skipped_and_postponed_workflows_wait(clock: ManualClock) -> None:
    again = StartAgain(clock)
    for w in ("a", "b", "c"):
        again.add(w, LOST)
    assert [w for w, _ in again.due(skip={"b"})] == ["a", "c"]
    again.postpone(["a", "b"], 1.0)
    assert [w for w, _ in again.due()] == ["c"]
    assert again.seconds_to_next() == 0.0
    again.started("c")
    assert again.seconds_to_next() == pytest.approx(1.0)
    clock.t += 1.0
    assert [w for w, _ in again.due()] == ["a", "b"]


def test_old_starts_are_forgotten(clock: ManualClock) -> None:
    again = StartAgain(clock)
    for i in range(100):
        again.add(f"w{i}", LOST)
        again.started(f"w{i}")
    clock.t += 3 * MAX_DELAY_SECONDS
    again.due()
    assert again._started == {}
