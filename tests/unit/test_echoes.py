"""The registry of a process's own enqueue NOTIFYs, which its listener drops."""

from __future__ import annotations

import time

import pytest

from relos.store import echoes
from relos.store.echoes import Echoes


def _listening() -> Echoes:
    e = Echoes()
    e.reset(listening=True)
    return e


def test_an_expected_notification_is_dropped_once() -> None:
    e = _listening()
    assert e.expect(101, "q")
    assert e.heard(101, "q")
    assert not e.heard(101, "q")  # (a second one of the same connection wakes)


def test_only_the_expected_connection_and_queue_match() -> None:
    e = _listening()
    e.expect(101, "q")
    assert not e.heard(102, "q")
    assert not e.heard(101, "other")
    assert e.heard(101, "q")


def test_each_expectation_answers_one_notification() -> None:
    e = _listening()
    for _ in range(3):
        e.expect(101, "q")
    assert [e.heard(101, "q") for _ in range(4)] == [True, True, True, False]


def test_a_withdrawn_expectation_drops_nothing() -> None:
    e = _listening()
    e.expect(101, "q")
    e.expect(101, "q")
    e.withdraw(101, "q")
    assert e.heard(101, "q")
    assert not e.heard(101, "q")
    e.withdraw(101, "q")  # (nothing left to withdraw: no error)
    assert not e.heard(101, "q")


def test_nothing_is_expected_while_the_listener_does_not_listen() -> None:
    e = Echoes()
    assert not e.expect(101, "q")
    assert not e.heard(101, "q")
    e.reset(listening=True)
    e.expect(101, "q")
    e.reset(listening=False)  # (the listener lost its connection)
    assert not e.expect(101, "q")
    assert not e.heard(101, "q")


def test_a_reconnected_listener_forgets_what_was_expected() -> None:
    e = _listening()
    e.expect(101, "q")
    e.reset(listening=True)
    assert not e.heard(101, "q")


def test_an_unanswered_expectation_lapses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(echoes, "LAPSE_SECONDS", 0.05)
    e = _listening()
    e.expect(101, "q")
    time.sleep(0.1)
    e.expect(101, "q")
    assert e.heard(101, "q")  # (the fresh one)
    assert not e.heard(101, "q")  # (the lapsed one was dropped, not answered)


def test_the_registry_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(echoes, "MAX_EXPECTED", 10)
    e = _listening()
    for pid in range(25):
        e.expect(pid, "q")
    assert e._count <= 10
