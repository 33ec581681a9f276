"""Cron schedules: a workflow started at every tick of a cron expression.

Declared in code with ``@DBOS.scheduled(cron)`` above ``@DBOS.workflow()``,
or at run time with ``DBOS.create_schedule``; either way the schedule is a row
of the ``schedules`` table, so it can be listed, paused, resumed, deleted,
triggered and backfilled from any process (and listed, paused, resumed and
deleted from the CLI).

Cron expressions are evaluated in UTC and have five fields (``minute hour
day-of-month month day-of-week``) or six, with seconds FIRST (``second minute
hour day-of-month month day-of-week``): ``"*/5 * * * * *"`` is every five
seconds, ``"0 9 * * 1-5"`` is 09:00 UTC on weekdays.

A scheduled workflow is called as ``fn(scheduled_time, actual_time)``, both
timezone-aware UTC datetimes: the tick it is for, and when it was started.

Exactly once per tick: the workflow of tick ``t`` (epoch ms) has the ID
``sched:<name>:<t>`` and is started through the idempotent start path, so
however many executors fire the same tick, it exists (and runs) once.

Missed ticks (while no executor ran the schedule) follow the schedule's
``missed_tick_policy``; see :func:`plan` for the exact rules.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from croniter import CroniterBadDateError, croniter

from relos import errors, identifiers
from relos.store.base import ScheduleRow

#: The policies for ticks missed while no executor ran the schedule.
MISSED_TICK_POLICIES = ("skip", "backfill")
#: 'backfill': at most this many missed ticks are started per scheduler pass
#: (then the scheduler pauses one second before the next pass).
BACKFILL_MAX_PER_PASS = 1000
#: 'skip': a tick is still started when it is at most this late, whatever its
#: period, so a busy scheduler never drops a tick of a fast schedule ...
SKIP_MIN_GRACE_MS = 2_000
#: ... and never when it is more than this late, whatever its period.
SKIP_MAX_GRACE_MS = 60_000
#: ``DBOS.backfill_schedule`` refuses ranges holding more ticks than this.
BACKFILL_MAX_TICKS = 10_000

CRON_FORMAT = (
    "5 fields 'minute hour day-of-month month day-of-week' (e.g. '*/15 * * * *') or 6 "
    "fields with seconds first 'second minute hour day-of-month month day-of-week' "
    "(e.g. '*/5 * * * * *'), evaluated in UTC"
)

UTC = dt.timezone.utc


@dataclass(frozen=True)
class Cron:
    """A validated cron expression."""

    expression: str

    @property
    def has_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    def _iter(self, after_ms: int) -> Any:
        start = dt.datetime.fromtimestamp(after_ms / 1000, tz=UTC)
        return croniter(self.expression, start, second_at_beginning=self.has_seconds)

    def next_after(self, after_ms: int) -> int:
        """The first tick strictly after ``after_ms`` (epoch ms)."""
        nxt: dt.datetime = self._iter(after_ms).get_next(dt.datetime)
        return int(round(nxt.timestamp() * 1000))

    def ticks(self, after_ms: int, until_ms: int, limit: int) -> list[int]:
        """Ticks ``t`` with ``after_ms < t <= until_ms``, oldest first, at most ``limit``."""
        out: list[int] = []
        it = self._iter(after_ms)
        while len(out) < limit:
            t = int(round(it.get_next(dt.datetime).timestamp() * 1000))
            if t > until_ms:
                break
            if t > after_ms:
                out.append(t)
        return out


def parse_cron(expression: str, stored: bool = False) -> Cron:
    """Validate a cron expression; ConfigError naming it and the expected format.

    ``stored``: the expression of a stored schedule, accepted when it was
    created: a step too large for its field (refused since) is read as it was
    then (its field's first value), so that such a schedule keeps firing."""
    if not isinstance(expression, str):
        raise errors.ConfigError(
            f"a cron schedule must be a string, not {expression!r}: use {CRON_FORMAT}")
    return _parse(expression, stored)


@functools.lru_cache(maxsize=256)
def _parse(expression: str, stored: bool) -> Cron:
    text = " ".join(expression.split())
    fields = len(text.split())
    if fields not in (5, 6):
        raise errors.ConfigError(
            f"invalid cron expression {expression!r}: it has {fields} field(s); use "
            f"{CRON_FORMAT}")
    try:
        valid = croniter.is_valid(text, second_at_beginning=fields == 6)
    except Exception:  # croniter raises several types for malformed fields
        valid = False
    if not valid:
        raise errors.ConfigError(f"invalid cron expression {expression!r}: use {CRON_FORMAT}")
    if not stored:
        _check_steps(expression, text.split())
    cron = Cron(text)
    try:
        cron.next_after(0)
    except CroniterBadDateError:
        raise errors.ConfigError(
            f"cron expression {expression!r} never fires: no date has that day of the month "
            "in those months (e.g. February 30, April 31); use a day every chosen month "
            "has, or 'L' for the last day of the month") from None
    except Exception:
        raise errors.ConfigError(
            f"invalid cron expression {expression!r}: use {CRON_FORMAT}") from None
    return cron


#: Each field's name and the span of its values, five-field order.
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12),
           ("day-of-week", 0, 7))
_STEP = re.compile(r"/(\d+)")


def _check_steps(expression: str, parts: list[str]) -> None:
    """Refuse a step no longer than its field's span allows (``*/60`` for
    minutes matches minute 0 alone: an hourly schedule written as a
    minutely step is a mistake, not a request)."""
    fields = (("second", 0, 59),) + _FIELDS if len(parts) == 6 else _FIELDS
    for part, (name, low, high) in zip(parts, fields, strict=True):
        for step in _STEP.findall(part):
            if int(step) > high - low:
                raise errors.ConfigError(
                    f"invalid cron expression {expression!r}: the {name} field's step "
                    f"/{step} is larger than its range {low}-{high} allows (it would match "
                    f"its first value alone); write that value instead, or a step up to "
                    f"{high - low}")


def check_policy(policy: str) -> str:
    if policy not in MISSED_TICK_POLICIES:
        raise errors.ConfigError(
            f"missed_tick_policy must be 'skip' or 'backfill', not {policy!r}")
    return policy


def check_schedule_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise errors.ConfigError("a schedule needs a non-empty string name")
    return identifiers.check(name, "the schedule name")


def check_signature(func: Callable[..., Any], what: str) -> None:
    """The workflow must accept ``(scheduled_time, actual_time)``."""
    try:
        inspect.signature(func).bind(dt.datetime.now(UTC), dt.datetime.now(UTC))
    except TypeError as exc:
        raise errors.ConfigError(
            f"{what} cannot be scheduled: a scheduled workflow is called with two "
            f"arguments (scheduled_time: datetime, actual_time: datetime), and its "
            f"signature does not accept them ({exc})"
        ) from None
    except ValueError:  # no signature (a builtin): let the call itself decide
        pass


def workflow_id(name: str, tick_ms: int) -> str:
    """The ID of the workflow of schedule ``name``'s tick ``tick_ms``."""
    return f"sched:{name}:{tick_ms}"


def to_datetime(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_epoch_ms(value: dt.datetime | int | float, what: str) -> int:
    """A datetime (naive means UTC) or epoch milliseconds, as epoch milliseconds."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(round(value.timestamp() * 1000))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    raise errors.ConfigError(f"{what} must be a datetime or epoch milliseconds, not {value!r}")


# --- what a scheduler pass does ----------------------------------------------------------


@dataclass
class Plan:
    """What to do with one schedule now."""

    #: Ticks to start, oldest first.
    fire: list[int]
    #: How many due ticks are skipped (policy 'skip').
    skipped: int
    #: The new cursor (None: leave it), covering fired and skipped ticks.
    advance_to: int | None
    #: Whether more due ticks remain (backfill cap reached).
    more: bool


def plan(cron: Cron, policy: str, cursor: int, now: int) -> Plan:
    """The ticks due for a schedule whose cursor is ``cursor`` at time ``now``.

    The due ticks are those ``t`` with ``cursor < t <= now``.

    - ``skip`` (default): a due tick is started only if it is less than its
      grace late (``now - t < grace``), where the grace is the schedule's
      period at that tick (the time to the following tick) bounded to
      [SKIP_MIN_GRACE_MS, SKIP_MAX_GRACE_MS] = [2 s, 60 s]. In normal
      operation every tick is started within milliseconds, so nothing is
      skipped; after downtime the stale ticks are skipped (counted and logged
      as a warning) and the schedule resumes with the fresh ones, i.e. usually
      at the next tick. The cursor moves past every due tick.
    - ``backfill``: every due tick is started, oldest first, at most
      BACKFILL_MAX_PER_PASS (1000) per pass; the cursor moves to the last one
      started, and the next pass continues (after a one-second pause).
    """
    if policy == "backfill":
        ticks = cron.ticks(cursor, now, BACKFILL_MAX_PER_PASS + 1)
        more = len(ticks) > BACKFILL_MAX_PER_PASS
        ticks = ticks[:BACKFILL_MAX_PER_PASS]
        return Plan(ticks, 0, ticks[-1] if ticks else None, more)
    fire: list[int] = []
    skipped = 0
    last: int | None = None
    # Only the ticks of the last SKIP_MAX_GRACE_MS can be fresh: count the
    # older ones without enumerating a long downtime tick by tick.
    horizon = now - SKIP_MAX_GRACE_MS
    if cursor < horizon:
        skipped = _count_ticks(cron, cursor, horizon)
        if skipped:
            last = horizon
        cursor = horizon
    for t in cron.ticks(cursor, now, 10_000_000):
        period = cron.next_after(t) - t
        grace = min(max(period, SKIP_MIN_GRACE_MS), SKIP_MAX_GRACE_MS)
        if now - t < grace:
            fire.append(t)
        else:
            skipped += 1
        last = t
    return Plan(fire, skipped, last, False)


def _count_ticks(cron: Cron, after: int, until: int) -> int:
    """How many ticks in (after, until]: counted up to 10000, then estimated
    (only for the log message)."""
    ticks = cron.ticks(after, until, 10_000)
    if len(ticks) < 10_000:
        return len(ticks)
    span = ticks[-1] - ticks[0]
    return int((until - after) * (len(ticks) - 1) / span) if span else len(ticks)


# --- schedules declared in code ------------------------------------------------------------

_declared: dict[str, ScheduleRow] = {}
_lock = threading.Lock()


def declare(name: str, workflow_name: str, cron: str, policy: str) -> None:
    with _lock:
        _declared[name] = ScheduleRow(name=name, workflow_name=workflow_name, cron=cron,
                                      last_tick_epoch_ms=0, missed_tick_policy=policy,
                                      defined_by="code")


def declared() -> dict[str, ScheduleRow]:
    """The schedules declared with ``@DBOS.scheduled`` in this process."""
    with _lock:
        return dict(_declared)


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as returned by ``DBOS.list_schedules`` / ``get_schedule``."""

    name: str
    workflow_name: str
    cron: str
    paused: bool
    missed_tick_policy: str
    defined_by: str
    #: The latest tick fired or skipped (UTC), or the creation time before any.
    last_tick: dt.datetime
    #: The next tick to fire (None when paused or the cron never fires again).
    next_tick: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


def info_of(row: ScheduleRow) -> ScheduleInfo:
    nxt: dt.datetime | None = None
    if not row.paused:
        try:
            nxt = to_datetime(parse_cron(row.cron, stored=True).next_after(
                row.last_tick_epoch_ms))
        except errors.ConfigError:
            nxt = None
    return ScheduleInfo(row.name, row.workflow_name, row.cron, row.paused,
                        row.missed_tick_policy, row.defined_by,
                        to_datetime(row.last_tick_epoch_ms), nxt,
                        to_datetime(row.created_at), to_datetime(row.updated_at))
