"""The wall-clock time relos writes and compares: delays, schedules, sleeps,
timeouts, wake-ups and the times in status rows.

It is this host's clock, set to the database server's when the two disagree
by :data:`TRUSTED_SKEW_MS` or more. Executors on several hosts share one
PostgreSQL; a host whose clock runs an hour behind would otherwise start
another host's delayed workflows an hour early, wake sleeps an hour late and
fire schedules off time. The runtime learns the difference at launch and at
every heartbeat (:func:`observe`, from ``SystemStore.clock_ms``) and applies
it here, to every reading. A smaller difference is left alone: it is within
what a round trip to the database can measure, and correcting it would only
add jitter. Durations measured within one process use ``time.monotonic``,
not this.
"""

from __future__ import annotations

import threading
import time

#: A difference between this host's clock and the database's below this is
#: not corrected (nor is one below half of it once corrected: no flapping).
TRUSTED_SKEW_MS = 100
#: A reading whose round trip took longer than this says too little.
MAX_ROUND_TRIP_S = 0.5

#: Seconds added to this host's clock (0.0: the host's clock is trusted).
_offset = 0.0
#: Per kind of claim, the last value :func:`stamp_ms` gave.
_last_stamps: dict[str, int] = {}
_stamp_lock = threading.Lock()
#: The :func:`stamp_ms` key of take-overs and wake-ups (a dequeue's is its queue's).
OTHER_CLAIMS = "claims"
#: A clock set back by more than this (ms) is not waited for: stamps go on
#: from the last one until the clock catches up.
_SET_BACK_MS = 50


def host_time() -> float:
    """This host's own clock, in epoch seconds."""
    return time.time()


def now() -> float:
    """The time, in epoch seconds."""
    return host_time() + _offset


def now_ms() -> int:
    """The time, in epoch milliseconds."""
    return int(now() * 1000)


def stamp_ms(key: str) -> int:
    """The time in epoch milliseconds for a claim of kind ``key`` (a queue's
    dequeues, or :data:`OTHER_CLAIMS`), never the same value twice for one
    key in this process: should a claim's commit go unanswered (the
    connection lost), that value, the kind and this process's owner name the
    rows it took, if it committed (``SystemStore.find_claimed``). A second
    claim within the same millisecond waits for the next (claims of one kind
    are far apart: this is rare); the stamp is the time, not ahead of it, as
    claims compare it with delays and wake-up times."""
    with _stamp_lock:
        last = _last_stamps.get(key, 0)
        now = now_ms()
        if now <= last and last - now > _SET_BACK_MS:
            now = last + 1  # (the clock was set back: no wait for it to catch up)
        while now <= last:
            time.sleep(0.0002)
            now = now_ms()
        _last_stamps[key] = now
        return now


def offset_ms() -> int:
    """What is added to this host's clock, in milliseconds."""
    return round(_offset * 1000)


def observe(database_ms: int, sent: float, received: float) -> None:
    """Learn from one reading of the database's clock, ``database_ms``, asked
    at ``sent`` and answered at ``received`` (both :func:`host_time`): the
    reading stands for the middle of the round trip."""
    global _offset
    if received - sent > MAX_ROUND_TRIP_S:
        return
    skew = database_ms / 1000 - (sent + received) / 2
    threshold_ms = TRUSTED_SKEW_MS / 2 if _offset else TRUSTED_SKEW_MS
    _offset = skew if abs(skew) * 1000 >= threshold_ms else 0.0


def reset() -> None:
    """Trust this host's clock again (a runtime shutting down)."""
    global _offset
    _offset = 0.0
