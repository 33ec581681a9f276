"""The schedule part of the SystemStore contract (``save_schedule``,
``get_schedules``, ``set_schedule_paused``, ``delete_schedule``,
``advance_schedule``): every guarantee of their docstrings in
``relos/store/base.py``, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from relos import errors
from relos.store import open_store
from relos.store.base import ScheduleRow

T0 = 1_700_000_000_000


def srow(name: str = "s", **fields: Any) -> ScheduleRow:
    base: dict[str, Any] = {"name": name, "workflow_name": "wf", "cron": "*/5 * * * * *",
                            "last_tick_epoch_ms": T0, "created_at": T0, "updated_at": T0}
    base.update(fields)
    return ScheduleRow(**base)


def test_save_schedule_inserts_and_returns_the_stored_row(store):
    saved = store.save_schedule(srow("a", missed_tick_policy="backfill", defined_by="runtime"))
    assert saved == ScheduleRow("a", "wf", "*/5 * * * * *", T0, False, "backfill", "runtime",
                                T0, T0)
    assert isinstance(saved.paused, bool)
    assert store.get_schedules() == [saved]


def test_update_changes_the_definition_but_never_state_or_creation(store):
    store.save_schedule(srow("a"))
    assert store.set_schedule_paused("a", True, T0 + 1)
    assert store.advance_schedule("a", T0, T0 + 5000, T0 + 2)
    again = store.save_schedule(srow("a", workflow_name="wf2", cron="0 * * * *",
                                     missed_tick_policy="backfill", last_tick_epoch_ms=T0 + 9,
                                     paused=False, created_at=T0 + 9, updated_at=T0 + 9))
    assert (again.workflow_name, again.cron, again.missed_tick_policy, again.updated_at) == (
        "wf2", "0 * * * *", "backfill", T0 + 9)
    assert (again.paused, again.last_tick_epoch_ms, again.created_at) == (True, T0 + 5000, T0)


def test_code_row_does_not_replace_runtime_row_but_runtime_replaces_anything(store):
    store.save_schedule(srow("a", defined_by="runtime", cron="1 * * * *"))
    kept = store.save_schedule(srow("a", defined_by="code", cron="2 * * * *", updated_at=T0 + 1))
    assert (kept.cron, kept.defined_by, kept.updated_at) == ("1 * * * *", "runtime", T0)
    store.save_schedule(srow("b", defined_by="code", cron="2 * * * *"))
    changed = store.save_schedule(srow("b", defined_by="runtime", cron="3 * * * *"))
    assert (changed.cron, changed.defined_by) == ("3 * * * *", "runtime")
    code = store.save_schedule(srow("c", defined_by="code", cron="2 * * * *"))
    code = store.save_schedule(replace(code, cron="4 * * * *"))
    assert code.cron == "4 * * * *"


def test_get_schedules_by_name_ordered(store):
    for name in ("c", "a", "b"):
        store.save_schedule(srow(name))
    assert [r.name for r in store.get_schedules()] == ["a", "b", "c"]
    assert [r.name for r in store.get_schedules(["c", "a", "zz"])] == ["a", "c"]
    assert store.get_schedules([]) == []


def test_pause_and_resume_move_the_cursor_only_on_resume(store):
    store.save_schedule(srow("a"))
    assert store.set_schedule_paused("a", True, T0 + 10_000)
    [row] = store.get_schedules(["a"])
    assert row.paused and row.last_tick_epoch_ms == T0 and row.updated_at == T0 + 10_000
    # Resuming: ticks that passed while paused are never fired.
    assert store.set_schedule_paused("a", False, T0 + 20_000)
    [row] = store.get_schedules(["a"])
    assert not row.paused and row.last_tick_epoch_ms == T0 + 20_000
    # Resuming an active schedule, or with a cursor ahead of now, leaves the cursor.
    assert store.advance_schedule("a", T0 + 20_000, T0 + 50_000, T0)
    assert store.set_schedule_paused("a", False, T0 + 30_000)
    assert store.set_schedule_paused("a", True, T0 + 30_000)
    assert store.set_schedule_paused("a", False, T0 + 40_000)
    assert store.get_schedules(["a"])[0].last_tick_epoch_ms == T0 + 50_000
    assert not store.set_schedule_paused("missing", True, T0)


def test_delete_schedule(store):
    store.save_schedule(srow("a"))
    assert store.delete_schedule("a")
    assert not store.delete_schedule("a")
    assert store.get_schedules() == []


def test_advance_is_a_compare_and_swap(store):
    store.save_schedule(srow("a"))
    assert not store.advance_schedule("a", T0 - 1, T0 + 1000, T0)  # stale expectation
    assert not store.advance_schedule("a", T0, T0, T0)  # must move forward
    assert not store.advance_schedule("a", T0, T0 - 1000, T0)
    assert store.advance_schedule("a", T0, T0 + 1000, T0 + 7)
    [row] = store.get_schedules(["a"])
    assert (row.last_tick_epoch_ms, row.updated_at) == (T0 + 1000, T0 + 7)
    assert not store.advance_schedule("missing", T0, T0 + 1000, T0)


def test_concurrent_advances_exactly_one_wins(db_url, store, concurrently):
    store.save_schedule(srow("a"))
    stores = [open_store(db_url) for _ in range(6)]
    try:
        won = concurrently(6, lambda i: stores[i].advance_schedule("a", T0, T0 + 1000 + i, T0))
    finally:
        for s in stores:
            s.close()
    assert sum(won) == 1
    assert store.get_schedules(["a"])[0].last_tick_epoch_ms == T0 + 1000 + won.index(True)


def test_invalid_policy_or_definer_is_refused(store):
    with pytest.raises(errors.RelosError):
        store.save_schedule(srow("a", missed_tick_policy="burst"))
    with pytest.raises(errors.RelosError):
        store.save_schedule(srow("b", defined_by="someone"))
    assert store.get_schedules() == []
