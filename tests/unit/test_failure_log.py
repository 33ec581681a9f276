"""A background loop's failures are logged once an outage, not once a round."""

from __future__ import annotations

import logging

import pytest

from relos import errors
from relos.runtime.failures import FailureLog
from timehelpers import ManualClock

DOWN = errors.DatabaseUnreachableError("lost the connection to PostgreSQL")



def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == "relos"]
    caplog.clear()
    return lines


def test_an_outage_logs_its_start_a_line_a_minute_and_its_end(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="relos")
    clock = ManualClock()
    log = FailureLog("dequeue", every=60.0, now=clock)
    log.succeeded()
    assert _lines(caplog) == [] and not log.failing
    log.failed(DOWN)
    assert _lines(caplog) == ["dequeue failed: lost the connection to PostgreSQL"]
    assert log.failing
    for _ in range(479):  # eight a second for a minute, less one eighth
        clock.t += 0.125
        log.failed(DOWN)
    assert _lines(caplog) == []
    clock.t += 0.125
    log.failed(DOWN)
    assert _lines(caplog) == ["dequeue still failing, 480 more times in the last 60 s: "
                              "lost the connection to PostgreSQL"]
    clock.t += 1.0
    log.succeeded()
    assert _lines(caplog) == ["dequeue works again, after 481 failures in 61.0 s"]
    assert not log.failing
    log.succeeded()
    log.failed(DOWN, "workflow w1")
    assert _lines(caplog) == ["dequeue (workflow w1) failed: lost the connection to PostgreSQL"]


def test_an_error_that_is_not_relos_s_comes_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="relos")
    log = FailureLog("waking suspended workflows", now=ManualClock())
    try:
        raise KeyError("a bug")
    except KeyError as exc:
        log.failed(exc)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "waking suspended workflows failed: 'a bug'" in record.getMessage()


def test_a_failure_long_after_the_last_starts_a_new_outage(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="relos")
    clock = ManualClock()
    log = FailureLog("stopped again", every=60.0, now=clock, first="{about}: {exc}",
                     again="{n} more times in the last {secs:.0f} s, {about}: {exc}")
    log.failed(DOWN, "w1")
    clock.t += 30.0
    log.failed(DOWN, "w2")
    clock.t += 40.0
    log.failed(DOWN, "w3")
    assert _lines(caplog) == [
        "stopped again (w1): lost the connection to PostgreSQL",
        "2 more times in the last 70 s, stopped again (w3): lost the connection to PostgreSQL"]
    clock.t += 60.0  # (nothing for a minute: that outage is over)
    log.failed(DOWN, "w4")
    assert _lines(caplog) == ["stopped again (w4): lost the connection to PostgreSQL"]
