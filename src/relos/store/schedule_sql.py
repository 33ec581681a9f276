"""The schedule operations of :class:`~relos.store.sql.SQLStore` (which
delegates its schedule methods to the functions here).

Schedules are small rows read about once a second by each executor's
scheduler thread. The only contended write is the cursor
(``last_tick_epoch_ms``), advanced by compare-and-swap so that of several
executors handling the same ticks one moves it and the others notice; the
ticks' workflows themselves are made exactly once by their deterministic IDs,
not by this table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relos.store.base import SCHEDULE_COLUMNS, ScheduleRow

if TYPE_CHECKING:
    from relos.store.sql import SQLStore


def save_schedule(store: SQLStore, row: ScheduleRow) -> ScheduleRow:
    params = {c: getattr(row, c) for c in SCHEDULE_COLUMNS}
    params["paused"] = int(row.paused)
    with store._errors(), store._tx() as conn:
        conn.execute(store.q["save_schedule"], params)
        found = conn.execute(store.q["get_schedule"], {"name": row.name}).fetchone()
    return _schedule_row(found)


def get_schedules(store: SQLStore, names: list[str] | None = None) -> list[ScheduleRow]:
    params: dict[str, Any] = {}
    sql = f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM {store.prefix}schedules"
    if names is not None:
        if not names:
            return []
        sql += f" WHERE name IN ({store._in_list('n', names, params)})"
    return [_schedule_row(r) for r in store._all(sql + " ORDER BY name", params)]


def set_schedule_paused(store: SQLStore, name: str, paused: bool, now: int) -> bool:
    params = {"name": name, "paused": int(paused), "now": now}
    return store._run(store.q["set_schedule_paused"], params) == 1


def delete_schedule(store: SQLStore, name: str) -> bool:
    return store._run(store.q["delete_schedule"], {"name": name}) == 1


def advance_schedule(store: SQLStore, name: str, expected_last_tick: int, new_last_tick: int,
                     now: int) -> bool:
    params = {"name": name, "expected_last_tick": expected_last_tick,
              "new_last_tick": new_last_tick, "now": now}
    return store._run(store.q["advance_schedule"], params) == 1


def _schedule_row(r: Any) -> ScheduleRow:
    row = ScheduleRow(*r)
    row.paused = bool(row.paused)
    return row
