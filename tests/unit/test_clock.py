"""The process clock (relos.runtime.clock): this host's, set to the database's
where the two disagree by TRUSTED_SKEW_MS or more."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relos.runtime import clock

HOST = 1_800_000_000.0  # a fixed host time, epoch seconds


@pytest.fixture(autouse=True)
def fixed_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(clock, "host_time", lambda: HOST)
    clock.reset()
    yield
    clock.reset()


def reading(skew_ms: float, round_trip: float = 0.002) -> tuple[int, float, float]:
    """A reading of a database whose clock is ``skew_ms`` ahead of the host's,
    asked ``round_trip`` seconds before it was answered."""
    sent = HOST - round_trip
    return round((sent + round_trip / 2) * 1000 + skew_ms), sent, HOST


def test_an_hour_behind_is_set_to_the_databases_time() -> None:
    clock.observe(*reading(3_600_000))
    assert clock.offset_ms() == 3_600_000
    assert clock.now_ms() == round(HOST * 1000) + 3_600_000
    assert clock.now() == pytest.approx(HOST + 3600, abs=0.002)
    clock.observe(*reading(-3_600_000))  # (and an hour ahead, or a clock set back meanwhile)
    assert clock.offset_ms() == -3_600_000


def test_a_small_difference_is_left_alone() -> None:
    clock.observe(*reading(40))
    assert clock.offset_ms() == 0
    assert clock.now_ms() == round(HOST * 1000)


def test_a_corrected_clock_stays_corrected_until_the_difference_is_small() -> None:
    clock.observe(*reading(150))
    assert clock.offset_ms() == 150
    clock.observe(*reading(70))  # (between half the threshold and the threshold: still corrected)
    assert clock.offset_ms() == 70
    clock.observe(*reading(20))
    assert clock.offset_ms() == 0
    clock.observe(*reading(70))  # (trusted again: corrected only from the threshold on)
    assert clock.offset_ms() == 0


def test_a_slow_round_trip_teaches_nothing() -> None:
    clock.observe(*reading(3_600_000, round_trip=clock.MAX_ROUND_TRIP_S + 0.1))
    assert clock.offset_ms() == 0


def test_reset_trusts_the_host_again() -> None:
    clock.observe(*reading(-500_000))
    clock.reset()
    assert clock.offset_ms() == 0
