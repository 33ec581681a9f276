"""The suspended-workflow operations of :class:`~relos.store.sql.SQLStore`
(which delegates to the functions here).

A suspended workflow is a PENDING ``workflow_status`` row with no owner and a
wake-up time (``wake_at_epoch_ms``), plus what it waits for (``waiting_for``).
Each executor's waker claims the due ones (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so concurrent wakers never wait on each other's rows; SQLite's
single writer does the same by itself).

The one race to close is a message (or event) written while its receiver is
being suspended: the receiver checked, found nothing, and is about to write
its suspension. Both sides therefore take the row lock of the workflow whose
message or event it is before anything else (``lock_workflow``): the sender in
:func:`wake_receiver` / :func:`wake_event_waiters`, the receiver in
:func:`suspend_workflow`. Whichever comes second sees the first one's commit
(under READ COMMITTED each statement reads afresh): the sender finds the
suspension and sets its wake-up time to now, or the receiver finds the
message and suspends with a wake-up time of now.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from relos.store.base import WORKFLOW_COLUMNS, StepRow, WorkflowRow

if TYPE_CHECKING:
    from relos.store.sql import SQLStore


def message_wait(topic: str) -> str:
    """``waiting_for`` of a workflow suspended in recv on ``topic``."""
    return "message:" + topic


def event_wait(workflow_id: str, key: str) -> str:
    """``waiting_for`` of a workflow suspended in get_event (unambiguous for
    any ID and key: both are JSON strings)."""
    return "event:" + json.dumps([workflow_id, key])


def suspend_workflow(store: SQLStore, workflow_id: str, owner: str, wake_at: int, now: int,
                     topic: str | None, event: tuple[str, str] | None,
                     step: StepRow | None) -> int | None:
    p, ph = store.prefix, store._ph
    params: dict[str, Any] = {"workflow_id": workflow_id, "owner": owner, "wake_at": wake_at,
                              "now": now, "waiting_for": None}
    wake = f"CAST({ph('wake_at')} AS BIGINT)"
    if topic is not None:
        params.update(topic=topic, waiting_for=message_wait(topic), target=workflow_id)
        found = (f"SELECT 1 FROM {p}notifications WHERE destination_id = {ph('workflow_id')} "
                 f"AND topic = {ph('topic')} AND consumed_at IS NULL")
    elif event is not None:
        params.update(target=event[0], key=event[1], waiting_for=event_wait(*event))
        found = (f"SELECT 1 FROM {p}workflow_events WHERE workflow_id = {ph('target')} "
                 f"AND key = {ph('key')}")
    else:
        params["target"] = None
        found = ""
    if found:
        wake = f"CASE WHEN EXISTS ({found}) THEN CAST({ph('now')} AS BIGINT) ELSE {wake} END"
    sql = (f"UPDATE {p}workflow_status SET owner = NULL, wake_at_epoch_ms = {wake}, "
           f"waiting_for = CAST({ph('waiting_for')} AS TEXT), updated_at = {ph('now')} "
           f"WHERE workflow_id = {ph('workflow_id')} AND status = 'PENDING' "
           f"AND owner = {ph('owner')} RETURNING wake_at_epoch_ms")
    with store._errors(), store._tx() as conn:
        if params["target"] is not None:
            # Critical section: from here to the commit, no send to (or
            # set_event of) the target can commit unseen (module docstring).
            conn.execute(store.q["lock_workflow"], {"workflow_id": params["target"]})
        if step is not None:
            # Refused (not PENDING, or recorded by another process): raises,
            # rolling everything back.
            store.record_step_in(conn, step)
        r = conn.execute(sql, params).fetchone()
    return None if r is None else int(r[0])


def wake_receiver(store: SQLStore, conn: Any, destination_id: str, topic: str,
                  now: int) -> bool:
    """Inside send's transaction, which locked the destination's row first:
    wake the destination if it is suspended waiting for ``topic``."""
    ph = store._ph
    changed = conn.execute(
        f"UPDATE {store.prefix}workflow_status SET wake_at_epoch_ms = {ph('now')} "
        f"WHERE workflow_id = {ph('workflow_id')} AND waiting_for = {ph('waiting_for')} "
        f"AND wake_at_epoch_ms > {ph('now')}",
        {"workflow_id": destination_id, "waiting_for": message_wait(topic), "now": now},
    ).rowcount
    return _announce(store, conn, changed)


def wake_event_waiters(store: SQLStore, conn: Any, workflow_id: str, key: str,
                       now: int) -> bool:
    """Inside set_event's transaction, which locked the workflow's row first:
    wake every workflow suspended waiting for this event."""
    ph = store._ph
    changed = conn.execute(
        f"UPDATE {store.prefix}workflow_status SET wake_at_epoch_ms = {ph('now')} "
        f"WHERE waiting_for = {ph('waiting_for')} AND wake_at_epoch_ms > {ph('now')}",
        {"waiting_for": event_wait(workflow_id, key), "now": now},
    ).rowcount
    return _announce(store, conn, changed)


def _announce(store: SQLStore, conn: Any, changed: int) -> bool:
    if changed <= 0:
        return False
    if store.backend == "postgres":  # delivered at commit, to every executor's waker
        conn.execute("SELECT pg_notify('relos_wake', '*')")
    return True


#: SQLite's planner, without statistics, prefers the index on (status, ...) and
#: would read every PENDING workflow; the wake-up index is the one to read.
_SQLITE_WAKE_INDEX = " INDEXED BY workflow_status_wake_idx"


def _from(store: SQLStore) -> str:
    hint = _SQLITE_WAKE_INDEX if store.backend == "sqlite" else ""
    return f"FROM {store.prefix}workflow_status{hint}"


def _eligible(store: SQLStore, params: dict[str, Any], application_version: str | None,
              workflow_names: list[str]) -> str:
    """The WHERE of a due-or-not suspended workflow this caller may run (the
    first two terms are the condition of workflow_status_wake_idx)."""
    ph = store._ph
    params["version"] = application_version
    names = store._in_list("n", workflow_names, params)
    return (f"status = 'PENDING' AND wake_at_epoch_ms IS NOT NULL "
            f"AND (application_version IS NULL "
            f"OR application_version = CAST({ph('version')} AS TEXT)) AND name IN ({names})")


def claim_due_workflows(store: SQLStore, owner: str, executor_id: str, now: int, limit: int,
                        application_version: str | None,
                        workflow_names: list[str]) -> list[WorkflowRow]:
    if limit <= 0 or not workflow_names:
        return []
    p, ph = store.prefix, store._ph
    params: dict[str, Any] = {"owner": owner, "executor_id": executor_id, "now": now,
                              "limit": limit}
    where = _eligible(store, params, application_version, workflow_names)
    lock = " FOR UPDATE SKIP LOCKED" if store.backend == "postgres" else ""
    # The rows are checked once, by the inner SELECT: on SQLite the statement
    # runs under the database's write lock, on PostgreSQL the rows it returns
    # are locked and re-checked at their latest version. (A condition in the
    # outer WHERE would make SQLite scan every PENDING workflow.)
    sql = (
        f"UPDATE {p}workflow_status SET owner = {ph('owner')}, "
        f"executor_id = {ph('executor_id')}, wake_at_epoch_ms = NULL, waiting_for = NULL, "
        f"updated_at = {ph('now')} "
        f"WHERE workflow_id IN (SELECT workflow_id {_from(store)} WHERE {where} "
        f"AND wake_at_epoch_ms <= {ph('now')} ORDER BY wake_at_epoch_ms "
        f"LIMIT {ph('limit')}{lock}) "
        f"RETURNING {', '.join(WORKFLOW_COLUMNS)}"
    )
    return [WorkflowRow(*r) for r in store._all(sql, params)]


def next_wake_time(store: SQLStore, application_version: str | None,
                   workflow_names: list[str]) -> int | None:
    if not workflow_names:
        return None
    params: dict[str, Any] = {}
    where = _eligible(store, params, application_version, workflow_names)
    r = store._one(f"SELECT wake_at_epoch_ms {_from(store)} "
                   f"WHERE {where} ORDER BY wake_at_epoch_ms LIMIT 1", params)
    return None if r is None else int(r[0])
