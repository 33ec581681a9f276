"""``relos schedule list|get|pause|resume|delete|trigger|backfill``: cron schedules.

list, get, pause, resume and delete act on the ``schedules`` table directly.
The CLI cannot run the application's code, so ``trigger`` and ``backfill``
only *record* the workflows: each becomes a PENDING workflow row with no owner
(executor ID ``--executor-id``, default ``local``, and no application
version), which a running executor with that executor ID takes over at its
next recovery pass (``recovery_interval_seconds``, 5 s by default) and runs.
Their inputs are written with the default JSON serializer, so an application
configured with ``serializer: pickle`` must trigger or backfill from code
(``DBOS.trigger_schedule`` / ``DBOS.backfill_schedule``). Backfilled ticks use
the same workflow IDs as the scheduler (``sched:<name>:<tick ms>``), so a tick
that already ran is not recorded again.
"""

from __future__ import annotations

import uuid
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from relos import errors, schedules
from relos.cli import common
from relos.serialization import get_serializer
from relos.store import SystemStore
from relos.store.base import PENDING, ScheduleRow, WorkflowRow

_json = get_serializer("json")


@click.group()
def schedule() -> None:
    """Inspect and operate on cron schedules."""


def _row(store: SystemStore, name: str) -> ScheduleRow:
    found = store.get_schedules([name])
    if not found:
        raise errors.ScheduleNotFoundError(name)
    return found[0]


def _next_tick(row: ScheduleRow) -> int | None:
    if row.paused:
        return None
    try:
        return schedules.parse_cron(row.cron, stored=True).next_after(
            max(row.last_tick_epoch_ms, common.now_ms()))
    except errors.ConfigError:
        return None


def _json_of(row: ScheduleRow) -> dict[str, Any]:
    data = dict(vars(row))
    data["next_tick_epoch_ms"] = _next_tick(row)
    return data


def _json_option(func: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


@schedule.command("list")
@common.database_url_option
@_json_option
def list_schedules(database_url: str | None, as_json: bool) -> None:
    """Every schedule: its cron, state, policy and next tick."""
    with common.opened_store(common.resolve_url(database_url)) as store:
        rows = store.get_schedules()
    if as_json:
        common.print_json([_json_of(r) for r in rows])
        return
    out = common.console()
    if not rows:
        out.print(Text("no schedules: declare one with @DBOS.scheduled(cron) above "
                       "@DBOS.workflow() in your application", style="dim"))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("Schedule", "Workflow", "Cron (UTC)", "State", "Missed ticks",
                   f"Last tick ({common.utc_offset()})", "Next tick", "Defined by"):
        table.add_column(column, overflow="fold")
    for r in rows:
        state = Text("paused", style="yellow") if r.paused else Text("active", style="green")
        table.add_row(r.name, r.workflow_name, r.cron, state, r.missed_tick_policy,
                      common.local_time(r.last_tick_epoch_ms, offset=False),
                      common.local_time(_next_tick(r), offset=False), r.defined_by)
    out.print(table)


@schedule.command("get")
@click.argument("name")
@common.database_url_option
@_json_option
def get_schedule(name: str, database_url: str | None, as_json: bool) -> None:
    """One schedule in detail."""
    with common.opened_store(common.resolve_url(database_url)) as store:
        row = _row(store, name)
    data = _json_of(row)
    if as_json:
        common.print_json(data)
        return
    out = common.console()
    for key, value in data.items():
        if key.endswith(("_epoch_ms", "_at")) and isinstance(value, int):
            value = common.local_time(value)
        out.print(f"[bold]{key}[/bold]: {'-' if value is None else value}")


def _set_paused(name: str, database_url: str | None, as_json: bool, paused: bool) -> None:
    with common.opened_store(common.resolve_url(database_url)) as store:
        if not store.set_schedule_paused(name, paused, common.now_ms(store)):
            raise errors.ScheduleNotFoundError(name)
        row = _row(store, name)
    if as_json:
        common.print_json(_json_of(row))
        return
    common.console().print(f"schedule {name!r} {'paused' if paused else 'resumed'}")


@schedule.command("pause")
@click.argument("name")
@common.database_url_option
@_json_option
def pause(name: str, database_url: str | None, as_json: bool) -> None:
    """Stop firing the schedule (every executor notices within about a second)."""
    _set_paused(name, database_url, as_json, True)


@schedule.command("resume")
@click.argument("name")
@common.database_url_option
@_json_option
def resume(name: str, database_url: str | None, as_json: bool) -> None:
    """Fire the schedule again from its next tick (ticks missed while paused are not run)."""
    _set_paused(name, database_url, as_json, False)


@schedule.command("delete")
@click.argument("name")
@common.database_url_option
@_json_option
def delete(name: str, database_url: str | None, as_json: bool) -> None:
    """Delete the schedule (its workflows stay; a schedule declared in code comes
    back at the application's next launch)."""
    with common.opened_store(common.resolve_url(database_url)) as store:
        if not store.delete_schedule(name):
            raise errors.ScheduleNotFoundError(name)
    if as_json:
        common.print_json({"name": name, "deleted": True})
        return
    common.console().print(f"schedule {name!r} deleted")


def _record(store: SystemStore, row: ScheduleRow, workflow_id: str, tick_ms: int,
            executor_id: str) -> bool:
    """Record the tick's workflow as PENDING with no owner; whether it is new."""
    now = common.now_ms(store)
    inputs = _json.dumps({"args": [schedules.to_datetime(tick_ms), schedules.to_datetime(now)],
                          "kwargs": {}})
    existing = store.insert_workflow(WorkflowRow(
        workflow_id=workflow_id, status=PENDING, name=row.workflow_name,
        executor_id=executor_id, created_at=now, updated_at=now, inputs=inputs,
        recovery_attempts=0))
    return existing is None


_EXECUTOR_HELP = ("The executor ID whose executors run the workflow (they take it over at "
                  "their next recovery pass).")


@schedule.command("trigger")
@click.argument("name")
@click.option("--executor-id", default="local", show_default=True, help=_EXECUTOR_HELP)
@common.database_url_option
@_json_option
def trigger(name: str, executor_id: str, database_url: str | None, as_json: bool) -> None:
    """Record one run of the schedule's workflow now; a running executor runs it."""
    with common.opened_store(common.resolve_url(database_url)) as store:
        row = _row(store, name)
        wid = f"sched:{name}:trigger:{uuid.uuid4().hex}"
        _record(store, row, wid, common.now_ms(store), executor_id)
    if as_json:
        common.print_json({"workflow_id": wid})
        return
    common.console().print(f"recorded workflow {wid} (PENDING): an executor with executor "
                           f"ID {executor_id!r} runs it at its next recovery pass")


@schedule.command("backfill")
@click.argument("name")
@click.option("--start", "start", required=True, metavar="TIME",
              help="First tick time (ISO 8601; local time unless it has an offset).")
@click.option("--end", "end", required=True, metavar="TIME",
              help="End time, excluded (ISO 8601).")
@click.option("--executor-id", default="local", show_default=True, help=_EXECUTOR_HELP)
@common.database_url_option
@_json_option
def backfill(name: str, start: str, end: str, executor_id: str, database_url: str | None,
             as_json: bool) -> None:
    """Record a run for every tick in [START, END) not run yet; running executors run them."""
    lo = common.parse_time(start, "--start")
    hi = common.parse_time(end, "--end")
    with common.opened_store(common.resolve_url(database_url)) as store:
        row = _row(store, name)
        ticks = schedules.parse_cron(row.cron, stored=True).ticks(lo - 1, hi - 1,
                                                     schedules.BACKFILL_MAX_TICKS + 1)
        if len(ticks) > schedules.BACKFILL_MAX_TICKS:
            raise errors.ConfigError(
                f"more than {schedules.BACKFILL_MAX_TICKS} ticks in that range: backfill a "
                f"shorter range at a time")
        result = []
        for t in ticks:
            wid = schedules.workflow_id(name, t)
            result.append({"workflow_id": wid, "tick_epoch_ms": t,
                           "recorded": _record(store, row, wid, t, executor_id)})
    if as_json:
        common.print_json(result)
        return
    new = sum(1 for r in result if r["recorded"])
    common.console().print(f"{len(result)} tick(s) in range: {new} recorded (PENDING), "
                           f"{len(result) - new} already existed")
