"""The registry of a process's own enqueue NOTIFYs, which its listener drops."""

from __future__ import annotations

import time

import pytest

from relos import ENQUEUED
from relos.store import echoes
from relos.store.base import RowBatch, WorkflowRow
from relos.store.echoes import Echoes, announced_queues


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


class _Conn:
    """What Expecting reads of a psycopg connection: its backend's PID."""

    class info:  # noqa: N801 (psycopg's attribute name)
        backend_pid = 7


def test_a_statement_expects_its_queues_and_keeps_those_it_announced() -> None:
    e = _listening()
    with e.expecting({"a", "b"}) as echo:
        echo.expect(_Conn())
        echo.sent({"a"})  # (every row for b was kept out: no NOTIFY for b)
    assert e.heard(7, "a")
    assert not e.heard(7, "b")


def test_a_failed_statement_expects_nothing() -> None:
    e = _listening()
    with pytest.raises(RuntimeError), e.expecting({"a"}) as echo:
        echo.expect(_Conn())
        raise RuntimeError("the commit failed")
    assert not e.heard(7, "a")


def test_a_statement_that_announces_nothing_expects_nothing() -> None:
    e = _listening()
    with e.expecting(set()) as echo:
        echo.expect(_Conn())
    assert e._count == 0


def _row(wid: str, status: str, queue: str | None) -> WorkflowRow:
    return WorkflowRow(wid, status, "wf", "local", 0, 0, queue_name=queue)


def test_the_queues_an_enqueue_announces() -> None:
    rows = [_row("1", ENQUEUED, "a"), _row("2", "DELAYED", "b"), _row("3", ENQUEUED, "c"),
            _row("4", "PENDING", "d"), _row("5", ENQUEUED, None)]
    kept_out = _row("3", ENQUEUED, "c")
    assert announced_queues(rows, [None, None, kept_out, None, None]) == {"a", "b"}
    batch = RowBatch(_row("", ENQUEUED, "q"), ["x", "y"], ["[]", "[]"])
    assert announced_queues(batch, [None, kept_out]) == {"q"}
    assert announced_queues(batch, [kept_out, kept_out]) == set()
