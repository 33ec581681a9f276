"""Cron schedules through the public API, on SQLite and PostgreSQL: cron
parsing, decorator validation, an every-second schedule, pause/resume,
delete, trigger, backfill, the missed-tick policies after simulated downtime,
and exactly-once ticks with three processes on one database.

No test module declares ``@DBOS.scheduled`` at import time (the schedule would
then be written by every other test's launch): decorated schedules are made
inside tests and removed afterwards.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import relos.dbos
from relos import DBOS, SUCCESS, ConfigError, ScheduleNotFoundError, schedules
from relos.schedules import parse_cron, plan
from relos.store import open_store

APP = Path(__file__).with_name("schedule_app.py")
UTC = dt.timezone.utc

_runs: dict[str, list[tuple[dt.datetime, dt.datetime, str | None]]] = {}
_lock = threading.Lock()


def _record(key: str, scheduled: dt.datetime, actual: dt.datetime) -> None:
    with _lock:
        _runs.setdefault(key, []).append((scheduled, actual, DBOS.workflow_id))


@DBOS.workflow(name="ts.a")
def sched_a(scheduled_time: dt.datetime, actual_time: dt.datetime) -> str:
    _record("a", scheduled_time, actual_time)
    return scheduled_time.isoformat()


@DBOS.workflow(name="ts.b")
def sched_b(scheduled_time: dt.datetime, actual_time: dt.datetime) -> None:
    _record("b", scheduled_time, actual_time)


@DBOS.workflow(name="ts.wrong_signature")
def wrong_signature(only_one: int) -> None:
    pass


def runs(key: str) -> list[tuple[dt.datetime, dt.datetime, str | None]]:
    with _lock:
        return list(_runs.get(key, []))


@pytest.fixture(autouse=True)
def _clear_runs() -> Iterator[None]:
    with _lock:
        _runs.clear()
    yield


def wait_for(cond: Callable[[], Any], timeout: float = 15.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def ms(when: dt.datetime) -> int:
    return int(round(when.timestamp() * 1000))


def rows_of(name: str) -> list[Any]:
    return DBOS.list_workflows(name=name)


def set_cursor(name: str, epoch_ms: int) -> None:
    """Simulate downtime: move the schedule's cursor into the past."""
    store = relos.dbos._rt().store
    store._run(f"UPDATE {store.prefix}schedules SET last_tick_epoch_ms = "  # type: ignore[attr-defined]
               f"{store._ph('t')} WHERE name = {store._ph('n')}",  # type: ignore[attr-defined]
               {"t": epoch_ms, "n": name})


# --- cron parsing and validation ---------------------------------------------------------


def test_cron_with_and_without_seconds_field():
    t0 = ms(dt.datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC))
    every5s = parse_cron("*/5 * * * * *")
    assert every5s.ticks(t0 - 1, t0 + 20_000, 100) == [t0 + i * 5000 for i in range(5)]
    # Seconds come first: second 30 of every minute.
    assert parse_cron("30 * * * * *").ticks(t0, t0 + 180_000, 10) == [
        t0 + 30_000, t0 + 90_000, t0 + 150_000]
    # Five fields: minutes, no seconds field.
    assert parse_cron("*/15 * * * *").ticks(t0, t0 + 3_600_000, 10) == [
        t0 + i * 900_000 for i in range(1, 5)]
    assert parse_cron("0 9 * * 1-5").next_after(t0) == ms(
        dt.datetime(2030, 1, 1, 9, tzinfo=UTC))  # 2030-01-01 is a Tuesday
    assert parse_cron("  */5   * * * * * ").expression == "*/5 * * * * *"


@pytest.mark.parametrize("bad", ["* * *", "* * * * * * *", "61 * * * * *", "* 60 * * *",
                                 "a b c d e", "", "*/0 * * * *", "* * 32 * *"])
def test_invalid_cron_is_a_config_error_naming_it_and_the_format(bad):
    with pytest.raises(ConfigError) as info:
        parse_cron(bad)
    assert repr(bad) in str(info.value)
    assert "seconds first" in str(info.value)
    with pytest.raises(ConfigError, match="seconds first"):
        DBOS.scheduled(bad)


@pytest.mark.parametrize("bad", ["*/60 * * * *", "*/60 * * * * *", "0 */24 * * *",
                                 "0 0 */31 * *", "0 0 1 */12 *", "0 0 * * */8",
                                 "0 0 1-10/31 * *", "*/61 * * * *"])
def test_a_step_larger_than_its_field_is_refused(bad):
    """``*/60`` minutes would match minute 0 alone: a mistake, refused with
    the field and the largest step that means something."""
    with pytest.raises(ConfigError, match=r"field's step /\d+ is larger than its range") as info:
        parse_cron(bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(ConfigError, match="is larger than its range"):
        DBOS.scheduled(bad)


@pytest.mark.parametrize("good", ["*/59 * * * *", "*/59 * * * * *", "0 */23 * * *",
                                  "0 0 */30 * *", "0 0 1 */11 *", "0 0 * * */7",
                                  "0 0 1-10/3 * *", "0 0 L * *", "0 0 29 2 *"])
def test_the_largest_steps_that_mean_something_are_accepted(good):
    assert parse_cron(good).expression == good


@pytest.mark.parametrize("never", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_cron_that_never_fires_says_so(never):
    with pytest.raises(ConfigError, match="never fires") as info:
        parse_cron(never)
    assert repr(never) in str(info.value)


def test_a_stored_schedule_with_a_step_refused_since_keeps_its_meaning(dbos):
    """A schedule stored before too-large steps were refused (its row written
    directly here) is read as it was then: its field's first value."""
    DBOS.create_schedule("old-step", sched_a, "*/10 * * * * *")
    DBOS.pause_schedule("old-step")
    store = relos.dbos._rt().store
    store._run(f"UPDATE {store.prefix}schedules SET cron = {store._ph('c')} "  # type: ignore[attr-defined]
               f"WHERE name = {store._ph('n')}",  # type: ignore[attr-defined]
               {"c": "*/60 * * * * *", "n": "old-step"})
    DBOS.resume_schedule("old-step")
    info = DBOS.get_schedule("old-step")
    assert info.cron == "*/60 * * * * *" and info.next_tick is not None
    assert info.next_tick.second == 0
    DBOS.pause_schedule("old-step")
    start = dt.datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC)
    handles = DBOS.backfill_schedule("old-step", start, start + dt.timedelta(minutes=3))
    assert [h.workflow_id for h in handles] == [
        f"sched:old-step:{ms(start) + i * 60_000}" for i in range(3)]
    for h in handles:
        h.get_result()
    DBOS.delete_schedule("old-step")


def test_scheduled_decorator_validation():
    with pytest.raises(ConfigError, match="not a workflow"):
        @DBOS.scheduled("* * * * *")
        def plain(scheduled_time: dt.datetime, actual_time: dt.datetime) -> None:
            pass
    with pytest.raises(ConfigError, match="scheduled_time"):
        DBOS.scheduled("* * * * *")(wrong_signature)
    with pytest.raises(ConfigError, match="missed_tick_policy"):
        DBOS.scheduled("* * * * *", missed_tick_policy="burst")
    with pytest.raises(ConfigError):
        DBOS.scheduled(5)  # type: ignore[arg-type]
    assert "ts.wrong_signature" not in schedules.declared()


def test_plan_policies_exactly():
    every_s = parse_cron("*/1 * * * * *")
    now = 1_000_000
    # No downtime: the due tick is fired.
    assert plan(every_s, "skip", now - 1000, now + 5).fire == [now]
    # 30 s down with 'skip': only ticks less than the 2 s minimum grace late fire.
    p = plan(every_s, "skip", now - 30_000, now)
    assert (p.fire, p.skipped, p.advance_to) == ([now - 1000, now], 28, now)
    # A minutely schedule: the grace is one period (60 s).
    minutely = parse_cron("0 * * * * *")
    minute = 17 * 60_000
    p = plan(minutely, "skip", minute - 600_000, minute + 59_000)
    assert p.fire == [minute] and p.skipped == 9
    # Long downtime: counted, not enumerated; nothing older than 60 s fires.
    p = plan(every_s, "skip", 0, 10**9)
    assert p.fire == [10**9 - 1000, 10**9] and p.skipped == 10**6 - 2
    # 'backfill': every missed tick, capped per pass.
    p = plan(every_s, "backfill", now - 30_000, now)
    assert p.fire == list(range(now - 29_000, now + 1, 1000)) and not p.more
    p = plan(every_s, "backfill", now - 5_000_000, now)
    assert len(p.fire) == schedules.BACKFILL_MAX_PER_PASS and p.more
    assert p.advance_to == p.fire[-1] == now - 5_000_000 + 1000 * 1000


# --- a running schedule ----------------------------------------------------------------


def test_every_second_schedule_fires_each_tick_once(dbos):
    @DBOS.scheduled("*/1 * * * * *")
    @DBOS.workflow(name="ts.decorated")
    def decorated(scheduled_time: dt.datetime, actual_time: dt.datetime) -> None:
        _record("decorated", scheduled_time, actual_time)

    try:
        info = DBOS.get_schedule("ts.decorated")
        assert (info.cron, info.defined_by, info.paused, info.missed_tick_policy) == (
            "*/1 * * * * *", "code", False, "skip")
        time.sleep(3.6)
        DBOS.pause_schedule("ts.decorated")
        time.sleep(0.3)
        got = runs("decorated")
        assert 3 <= len(got) <= 5, got
        ticks = [ms(s) for s, _, _ in got]
        assert ticks == sorted(set(ticks))
        assert all(t % 1000 == 0 for t in ticks)
        assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000))  # none missed
        for scheduled, actual, wid in got:
            assert scheduled.tzinfo is not None and scheduled.utcoffset() == dt.timedelta(0)
            assert actual.tzinfo is not None and actual.utcoffset() == dt.timedelta(0)
            # (fired for its own tick, never early; a loaded host has made a
            # tick a few ms more than one second late)
            assert dt.timedelta(0) <= actual - scheduled < dt.timedelta(seconds=3)
            assert wid == f"sched:ts.decorated:{ms(scheduled)}"
        rows = rows_of("ts.decorated")
        assert sorted(r.workflow_id for r in rows) == sorted(w for _, _, w in got)
    finally:
        schedules._declared.pop("ts.decorated", None)
        DBOS.delete_schedule("ts.decorated")


def test_a_host_clock_gone_off_keeps_the_schedules_in_the_databases_time(
        dbos, backend, monkeypatch):
    """A PostgreSQL executor whose host clock jumps an hour ahead while it runs
    takes the database's time again at its next heartbeat: its every-second
    schedule fires at the database's seconds, not an hour ahead."""
    if backend != "postgres":
        pytest.skip("an SQLite file serves one host: one clock")
    from relos.runtime import clock

    real = clock.host_time
    monkeypatch.setattr(clock, "host_time", lambda: real() + 3600)
    wait_for(lambda: abs(clock.offset_ms() + 3_600_000) < 1000)  # (a heartbeat later)
    DBOS.create_schedule("every-second-skewed", sched_a, "*/1 * * * * *")
    wait_for(lambda: len(runs("a")) >= 2)
    DBOS.pause_schedule("every-second-skewed")
    now_ms = real() * 1000
    for scheduled, actual, _ in runs("a"):
        assert abs(ms(scheduled) - now_ms) < 10_000, (scheduled, now_ms)
        assert dt.timedelta(0) <= actual - scheduled < dt.timedelta(seconds=1)


def test_pause_resume_and_delete(dbos):
    created = DBOS.create_schedule("every-second", sched_a, "*/1 * * * * *")
    assert (created.name, created.workflow_name, created.defined_by) == (
        "every-second", "ts.a", "runtime")
    assert [s.name for s in DBOS.list_schedules()] == ["every-second"]
    wait_for(lambda: len(runs("a")) >= 1, 5)
    DBOS.pause_schedule("every-second")
    assert DBOS.get_schedule("every-second").paused
    assert DBOS.get_schedule("every-second").next_tick is None
    time.sleep(0.5)  # a pass that read the schedule just before the pause
    paused_at = len(runs("a"))
    time.sleep(2.2)
    assert len(runs("a")) == paused_at
    resumed_at = time.time()
    DBOS.resume_schedule("every-second")
    assert not DBOS.get_schedule("every-second").paused
    wait_for(lambda: len(runs("a")) > paused_at, 5)
    # Ticks that passed while paused were not fired.
    assert all(s.timestamp() > resumed_at - 1 for s, _, _ in runs("a")[paused_at:])
    DBOS.delete_schedule("every-second")
    time.sleep(0.5)
    deleted_at = len(runs("a"))
    time.sleep(1.6)
    assert len(runs("a")) == deleted_at
    assert DBOS.list_schedules() == []
    for op in (DBOS.get_schedule, DBOS.pause_schedule, DBOS.resume_schedule,
               DBOS.delete_schedule, DBOS.trigger_schedule):
        with pytest.raises(ScheduleNotFoundError, match="every-second"):
            op("every-second")
    with pytest.raises(ScheduleNotFoundError):
        DBOS.backfill_schedule("every-second", 0, 1000)
    counts = Counter(w for _, _, w in runs("a"))
    assert all(c == 1 for c in counts.values())


def test_create_schedule_validation(dbos):
    with pytest.raises(ConfigError, match="not a workflow"):
        DBOS.create_schedule("x", print, "* * * * *")
    with pytest.raises(ConfigError, match="scheduled_time"):
        DBOS.create_schedule("x", wrong_signature, "* * * * *")
    with pytest.raises(ConfigError, match="'nope'"):
        DBOS.create_schedule("x", sched_a, "nope")
    with pytest.raises(ConfigError, match="missed_tick_policy"):
        DBOS.create_schedule("x", sched_a, "* * * * *", missed_tick_policy="all")
    assert DBOS.list_schedules() == []


def test_trigger_runs_once_now(dbos):
    DBOS.create_schedule("yearly", sched_a, "0 0 1 1 *")
    before = dt.datetime.now(UTC)
    handle = DBOS.trigger_schedule("yearly")
    result = handle.get_result()
    assert handle.workflow_id.startswith("sched:yearly:trigger:")
    [(scheduled, actual, wid)] = runs("a")
    assert wid == handle.workflow_id and result == scheduled.isoformat()
    assert before - dt.timedelta(seconds=1) <= scheduled <= actual <= dt.datetime.now(UTC)
    handle2 = DBOS.trigger_schedule("yearly")
    assert handle2.workflow_id != handle.workflow_id
    handle2.get_result()
    assert len(runs("a")) == 2


def test_backfill_starts_each_tick_in_range_exactly_once(dbos):
    DBOS.create_schedule("ten-seconds", sched_a, "*/10 * * * * *")
    DBOS.pause_schedule("ten-seconds")  # only the backfill starts workflows here
    start = dt.datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC)
    end = start + dt.timedelta(minutes=1)
    handles = DBOS.backfill_schedule("ten-seconds", start, end)
    expected = [ms(start) + i * 10_000 for i in range(6)]  # start included, end excluded
    assert [h.workflow_id for h in handles] == [f"sched:ten-seconds:{t}" for t in expected]
    for h in handles:
        h.get_result()
    again = DBOS.backfill_schedule("ten-seconds", start.replace(tzinfo=None),
                                   ms(end) + 5_000)  # naive = UTC; overlaps, one more tick
    assert [h.workflow_id for h in again][:6] == [h.workflow_id for h in handles]
    assert [h.workflow_id for h in again][6:] == [f"sched:ten-seconds:{ms(end)}"]
    for h in again:
        h.get_result()
    got = sorted(ms(s) for s, _, _ in runs("a"))
    assert got == [*expected, ms(end)]  # each tick exactly once
    rows = rows_of("ts.a")
    assert len(rows) == 7 and all(r.status == SUCCESS for r in rows)
    with pytest.raises(ConfigError, match="shorter range"):
        DBOS.backfill_schedule("ten-seconds", start, start + dt.timedelta(days=2))


def test_missed_ticks_skip_versus_backfill_after_downtime(dbos, caplog):
    caplog.set_level("INFO", logger="relos")
    DBOS.create_schedule("skipper", sched_a, "*/1 * * * * *")
    DBOS.create_schedule("filler", sched_b, "*/1 * * * * *", missed_tick_policy="backfill")
    down_from = (int(time.time()) - 30) * 1000  # as if no executor ran for 30 s
    set_cursor("skipper", down_from)
    set_cursor("filler", down_from)
    set_at = time.time()
    wait_for(lambda: len(runs("b")) >= 31, 10)
    time.sleep(1.2)
    DBOS.pause_schedule("skipper")
    DBOS.pause_schedule("filler")
    time.sleep(0.5)

    filled = sorted(ms(s) for s, _, _ in runs("b"))
    # Every missed tick once, then the live ones, none twice.
    assert filled == list(range(down_from + 1000, filled[-1] + 1, 1000))
    assert filled[-1] >= set_at * 1000

    skipped = sorted(ms(s) for s, _, _ in runs("a"))
    assert skipped == sorted(set(skipped))
    # Nothing more than the 2 s minimum grace late was started ...
    assert skipped and skipped[0] >= set_at * 1000 - 2000 - 1000
    assert len(skipped) <= len(filled) - 25
    # ... and the skipped ticks were counted in a warning.
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert any("'skipper'" in w for w in warnings), warnings


def test_a_schedule_of_a_workflow_this_process_lacks_is_left_and_said_once(dbos, caplog):
    """A stored schedule whose workflow this process does not define (another
    service's, or code that lost it) is left to the executors that define it:
    nothing starts here, and one INFO line says so, not one per pass."""
    from relos.runtime.scheduler import Scheduler
    from relos.store.base import ScheduleRow

    caplog.set_level("INFO", logger="relos")
    rt = relos.dbos._rt()
    name = "elsewhere-" + uuid.uuid4().hex[:8]
    rt.store.save_schedule(ScheduleRow(name, "not.defined.here", "* * * * * *",
                                       int(time.time() * 1000) - 5000, defined_by="runtime"))
    scheduler = Scheduler(rt)
    for _ in range(3):
        scheduler.run_once()
    said = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    # (at most once more: from the runtime's own scheduler thread, should it pass meanwhile)
    assert set(said) == {f"schedule {name!r} is left to executors that define its workflow "
                         f"'not.defined.here' (this process does not)"}
    assert len(said) <= 2
    assert DBOS.list_workflows(name="not.defined.here") == []
    [row] = rt.store.get_schedules([name])
    assert row.last_tick_epoch_ms < time.time() * 1000 - 4000  # its ticks are not spent


# --- three processes ---------------------------------------------------------------------


@pytest.mark.slow
def test_schedule_on_three_processes_fires_each_tick_exactly_once(db_url, tmp_path):
    log = tmp_path / f"ticks-{uuid.uuid4().hex}.log"
    setup = open_store(db_url)
    try:
        setup.migrate()  # created once up front, not raced by the processes
    finally:
        setup.close()
    start_at = time.time() + 2.0
    stop_at = start_at + 5.0
    procs = [subprocess.Popen([sys.executable, str(APP), db_url, str(log), str(start_at),
                               str(stop_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err

    lines = [line.split() for line in log.read_text().splitlines()]
    ticks = [int(parts[2]) for parts in lines]
    assert len(ticks) >= 3, lines
    per_tick = Counter(ticks)
    assert all(c == 1 for c in per_tick.values()), per_tick
    assert sorted(ticks) == list(range(min(ticks), max(ticks) + 1000, 1000))  # none missed
    assert all(parts[1] == f"sched:sapp.tick:{parts[2]}" for parts in lines)

    store = open_store(db_url)
    try:
        rows = [r for r in store.list_workflows(relos.store.base.ListFilter(name="sapp.tick"))]
    finally:
        store.close()
    assert sorted(r.workflow_id for r in rows) == sorted(parts[1] for parts in lines)
    assert all(r.status == SUCCESS for r in rows)


# --- the command line ------------------------------------------------------------------


def test_cli_operates_on_schedules_and_records_runs_for_executors(dbos, db_url):
    import json

    from click.testing import CliRunner

    from relos.cli import main

    def cli(*args: str) -> Any:
        result = CliRunner().invoke(main, ["--database-url", db_url, "schedule", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    DBOS.create_schedule("cli-sched", sched_a, "*/10 * * * * *")
    [listed] = cli("list", "--json")
    assert (listed["name"], listed["paused"], listed["defined_by"]) == (
        "cli-sched", False, "runtime")
    assert cli("pause", "cli-sched", "--json")["paused"] is True
    assert DBOS.get_schedule("cli-sched").paused
    assert cli("get", "cli-sched", "--json")["next_tick_epoch_ms"] is None
    # trigger/backfill record PENDING rows; this executor's recovery runs them.
    recorded = cli("backfill", "cli-sched", "--start", "2030-01-01T00:00:00Z",
                   "--end", "2030-01-01T00:00:30Z", "--json")
    assert [r["recorded"] for r in recorded] == [True, True, True]
    assert [r["recorded"] for r in cli("backfill", "cli-sched", "--start",
                                       "2030-01-01T00:00:00Z", "--end",
                                       "2030-01-01T00:00:30Z", "--json")] == [False] * 3
    trig = cli("trigger", "cli-sched", "--json")["workflow_id"]
    wait_for(lambda: len(runs("a")) >= 4, 15)
    time.sleep(0.3)
    got = sorted(w for _, _, w in runs("a"))
    assert got == sorted([r["workflow_id"] for r in recorded] + [trig])
    assert cli("resume", "cli-sched", "--json")["paused"] is False
    assert cli("delete", "cli-sched", "--json") == {"name": "cli-sched", "deleted": True}
    result = CliRunner().invoke(main, ["--database-url", db_url, "schedule", "get", "cli-sched"])
    assert result.exit_code == 1 and "no schedule named 'cli-sched'" in result.output
