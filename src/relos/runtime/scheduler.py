"""The per-process scheduler thread: starts the workflows of cron schedules.

Every executor runs one. Each pass reads the ``schedules`` table, and for each
active schedule whose workflow is registered in this process works out the
due ticks from the schedule's cursor (``last_tick_epoch_ms``) and its
missed-tick policy (:func:`relos.schedules.plan`), starts a workflow for each
tick to fire, then moves the cursor by compare-and-swap. The thread then
sleeps until the next tick of any schedule, but at most one second, so
schedules created, changed, paused or resumed elsewhere are picked up within
about a second; it stops as soon as the runtime is destroyed.

Exactly once per tick: the tick's workflow ID is ``sched:<name>:<tick ms>``
and the start is the idempotent one (INSERT ... ON CONFLICT DO NOTHING), so
when several executors fire the same tick one creates the workflow and the
others find it. The workflows are started *before* the cursor moves, so a
process that dies in between leaves the cursor behind and the next pass (here
or elsewhere) starts the same IDs again, which are no-ops: a tick is never
lost and never doubled. The compare-and-swap only keeps the executors from
all enumerating the same ticks again and again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING

from relos import errors, schedules
from relos.runtime import clock, context, registry
from relos.runtime import workflow as wf
from relos.runtime.registry import WorkflowInfo

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime

logger = logging.getLogger("relos")

#: The longest the thread sleeps between passes (picks up changes made elsewhere).
MAX_SLEEP_SECONDS = 1.0


def start_tick(rt: Runtime, info: WorkflowInfo, name: str, tick_ms: int,
               workflow_id: str | None = None) -> str:
    """Start (once) the workflow of schedule ``name``'s tick ``tick_ms``; its ID."""
    wid = workflow_id or schedules.workflow_id(name, tick_ms)
    token = context._next_workflow_id.set(wid)
    try:
        start = wf.begin(rt, info, (schedules.to_datetime(tick_ms),
                                    dt.datetime.now(schedules.UTC)), {})
    finally:
        context._next_workflow_id.reset(token)
    if start.run is not None:
        wf.dispatch(rt, info, start)
    return start.workflow_id


class Scheduler:
    """Fires the due ticks of every schedule this process can run."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._said: set[tuple[str, str]] = set()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            wait = MAX_SLEEP_SECONDS
            try:
                wait = self.run_once(stop)
            except errors.RelosError as exc:
                if not stop.is_set():
                    logger.warning("scheduler: %s", exc)
            stop.wait(max(0.0, min(wait, MAX_SLEEP_SECONDS)))

    def _say_once(self, name: str, message: str, *args: object,
                   level: int = logging.WARNING) -> None:
        if (name, message) not in self._said:
            self._said.add((name, message))
            logger.log(level, message, *args)

    def run_once(self, stop: threading.Event | None = None) -> float:
        """One pass over every schedule; the seconds until the next tick."""
        rt = self.rt
        wait = MAX_SLEEP_SECONDS
        workflows = registry.workflows()
        for row in rt.store.get_schedules():
            if stop is not None and stop.is_set():
                break
            if row.paused:
                continue
            info = workflows.get(row.workflow_name)
            if info is None:
                # Another executor (with this code) fires it; said once, for
                # the process whose code lost the workflow by mistake.
                self._say_once(row.name, "schedule %r is left to executors that define its "
                                "workflow %r (this process does not)", row.name,
                                row.workflow_name, level=logging.INFO)
                continue
            try:
                cron = schedules.parse_cron(row.cron, stored=True)
            except errors.ConfigError as exc:
                self._say_once(row.name, "schedule %r is not run: %s", row.name, exc)
                continue
            now = clock.now_ms()
            plan = schedules.plan(cron, row.missed_tick_policy, row.last_tick_epoch_ms, now)
            if len(plan.fire) > 1 and row.missed_tick_policy == "backfill":
                logger.info("schedule %r: starting %d missed tick(s) from %s", row.name,
                            len(plan.fire), schedules.to_datetime(plan.fire[0]).isoformat())
            fired_to: int | None = None
            for tick in plan.fire:
                if stop is not None and stop.is_set():
                    break
                start_tick(rt, info, row.name, tick)
                fired_to = tick
            advance_to = plan.advance_to if fired_to == (plan.fire[-1] if plan.fire
                                                         else None) else fired_to
            if advance_to is not None and rt.store.advance_schedule(
                    row.name, row.last_tick_epoch_ms, advance_to, clock.now_ms()) and plan.skipped:
                logger.warning(
                    "schedule %r (missed_tick_policy='skip'): skipped %d tick(s) missed "
                    "while no executor ran it; use missed_tick_policy='backfill' or "
                    "DBOS.backfill_schedule to run missed ticks", row.name, plan.skipped)
            if plan.more:
                continue  # the rest of the backfill: next pass, in a second
            cursor = advance_to if advance_to is not None else row.last_tick_epoch_ms
            nxt = cron.next_after(max(cursor, now))
            wait = min(wait, (nxt - clock.now_ms() + 1) / 1000)
        return wait
