"""``@DBOS.transaction``: the user's writes and the step's record in one
database transaction, so they commit together or not at all (exactly once).

When the application database is the system database the record is the step
row itself. A separate application database keeps its own
``transaction_outputs`` table, written in the user's transaction; the step row
in the system database follows in a second commit, and on recovery the
application table is consulted first, so a crash between the two commits
neither loses the output nor runs the transaction again.

Serialization failures and deadlocks (PostgreSQL) roll back and retry.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from relos import errors, serialization
from relos.runtime import context, steps
from relos.runtime.registry import StepInfo

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime

_MAX_TX_RETRIES = 20


def _is_retryable(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate in ("40001", "40P01")


def run_transaction(rt: Runtime, info: StepInfo, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
    p = steps.plan(info.name)
    if p.replay is not None:
        return steps.replay(rt, p.replay)
    app = rt.app_store
    if p.ctx is not None and p.ctx.recorded is not None and app is not None:
        from relos.runtime.appdb import get_output

        found = get_output(app, p.ctx.workflow_id, p.function_id)
        if found is not None:  # committed before a crash: copy the record, don't re-run
            rt.store.record_step(steps.step_row(rt, p, info.name, info.kind, *found))
            return steps.replay(rt, steps.step_row(rt, p, info.name, info.kind, *found))
    db = app if app is not None else rt.store
    for attempt in range(1, _MAX_TX_RETRIES + 1):
        try:
            return _attempt(rt, info, p, db, args, kwargs)
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, errors.StoreError) else exc
            if _is_retryable(exc) or _is_retryable(cause or exc):
                time.sleep(min(1.0, 0.001 * 2 ** attempt) * random.random())
                continue
            if p.ctx is None or isinstance(exc, (errors.WorkflowCancelledError,
                                                 errors.WorkflowConflictError,
                                                 errors.DatabaseUnreachableError)):
                # (a lost connection is not the transaction's outcome: it may
                # even have committed; the workflow stops, and runs again from
                # what the database holds)
                raise
            # The transaction rolled back; record its error so replay raises it too.
            return steps.record(rt, p, info, None, exc)
    raise errors.StoreError(
        f"transaction {info.name!r} kept failing with serialization conflicts after "
        f"{_MAX_TX_RETRIES} attempts; reduce contention or lower its isolation level"
    )


def _attempt(rt: Runtime, info: StepInfo, p: steps.Plan, db: Any,
             args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    separate = db is not rt.store
    row = None
    with db.transaction(info.isolation_level) as conn:
        token = context._tx_connection.set(conn)
        ok = False
        step_token = steps.enter(p)
        try:
            result = info.func(*args, **kwargs)
            ok = True
        finally:
            steps.leave(p, step_token)
            _close_session(flush=ok)
            context._tx_connection.reset(token)
        if p.ctx is not None:
            out = serialization.serialize_value(
                rt.serializer, result, f"the return value of transaction {info.name!r}"
            )
            row = steps.step_row(rt, p, info.name, info.kind, out, None)
            if separate:
                from relos.runtime.appdb import record_output_in

                record_output_in(db, conn, row)
            else:
                rt.store.record_step_in(conn, row)
    if separate and row is not None:
        rt.store.record_step(row)
    return result


def _close_session(flush: bool) -> None:
    from relos.runtime import sqla

    sqla.close_session(flush)
