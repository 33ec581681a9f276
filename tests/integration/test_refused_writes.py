"""Work waits out a database that answers but refuses writes for a while.

A full disk (on SQLite, the file capped at its size with ``max_page_count``:
every write that needs a new page fails with SQLITE_FULL, as on a full disk)
or a read-only server (on PostgreSQL, ``default_transaction_read_only`` on the
database and its sessions ended, as after a fail-over to a standby): the
workflows running meanwhile stop without an outcome, are started again by
their own process with growing waits between the starts (not at once, again
and again), are never dead-lettered for it (these workflows allow no recovery
attempt at all), and finish once writes go through, each transaction's effect
committed once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from dbhelpers import cut_connections, eventually
from relos import DBOS, PENDING, SUCCESS, Queue, SetWorkflowID

runs: Counter[str] = Counter()
_runs_lock = threading.Lock()
#: Set by the test once writes are refused: the workflows go on past their first step.
go_on = threading.Event()
refused_queue = Queue("refused.queue")


def _ran(key: str) -> None:
    with _runs_lock:
        runs[key] += 1


@DBOS.step(name="refused.small")
def small_step(tag: str) -> int:
    _ran(f"{tag}:small")
    return 1


@DBOS.step(name="refused.big")
def big_step(tag: str) -> str:
    """Its output (300 kB) needs new pages of an SQLite file."""
    _ran(f"{tag}:big")
    return "x" * 300_000


@DBOS.transaction(name="refused.effect")
def effect(tag: str) -> int:
    conn = DBOS.sql_connection
    mark = "?" if isinstance(conn, sqlite3.Connection) else "%s"
    conn.execute("CREATE TABLE IF NOT EXISTS refused_effects (tag TEXT NOT NULL)")
    conn.execute(f"INSERT INTO refused_effects (tag) VALUES ({mark})", (tag,))
    _ran(f"{tag}:tx")
    return 2


def _work(tag: str) -> int:
    first = small_step(tag)
    assert go_on.wait(60)
    return first + effect(tag) + len(big_step(tag))


@DBOS.workflow(name="refused.work", max_recovery_attempts=0)
def refused_work(tag: str) -> int:
    return _work(tag)


@DBOS.workflow(name="refused.queued", max_recovery_attempts=1)
def refused_queued(tag: str) -> int:
    return _work(tag)


def _runtime() -> Any:
    from relos import dbos as facade

    return facade._runtime


def _row(workflow_id: str) -> Any:
    row = _runtime().store.get_workflow(workflow_id)
    assert row is not None
    return row


@contextmanager
def _full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Cap the runtime's SQLite file at its present size on each of its
    connections, those opened meanwhile too; lifted at the end of the block."""
    store = _runtime().store
    real = store._connection
    capped = True

    def cap(conn: sqlite3.Connection) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    def connection() -> sqlite3.Connection:
        fresh = getattr(store._local, "conn", None) is None
        conn: sqlite3.Connection = real()
        if fresh and capped:
            cap(conn)
        return conn

    monkeypatch.setattr(store, "_connection", connection)
    with store._lock:
        for conn in store._all_conns:
            cap(conn)
    try:
        yield
    finally:
        capped = False
        with store._lock:
            for conn in store._all_conns:
                conn.execute("PRAGMA max_page_count = 4294967294")


@contextmanager
def _read_only(db_url: str) -> Iterator[None]:
    """Make the PostgreSQL database read-only for new sessions and end its
    sessions (the pool reconnects to a server that refuses writes); undone
    the same way at the end of the block."""
    import psycopg

    base, database = db_url.rsplit("/", 1)

    def set_read_only(on: bool) -> None:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = '
                          f'{"on" if on else "off"}')
        cut_connections(db_url, times=1, every=0)

    set_read_only(True)
    try:
        yield
    finally:
        set_read_only(False)


def _refusing(backend: str, monkeypatch: pytest.MonkeyPatch, db_url: str
              ) -> Callable[[], Any]:
    if backend == "sqlite":
        return lambda: _full_disk(monkeypatch)
    return lambda: _read_only(db_url)


def _effects(tag: str) -> int:
    store = _runtime().store
    mark = "?" if store.backend == "sqlite" else "%s"
    conn = store.raw_connection()
    try:
        found = conn.execute(f"SELECT COUNT(*) FROM refused_effects WHERE tag = {mark}",
                             (tag,)).fetchone()
    finally:
        if store.backend != "sqlite":
            conn.close()
    return int(found[0])


attempts: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _count_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Count the maintenance thread's tries to start each workflow again (on
    PostgreSQL a read-only server refuses even the claim of a try)."""
    from relos.runtime import workflow

    real = workflow.recover

    def recover(rt: Any, workflow_id: str, *args: Any, **kwargs: Any) -> Any:
        attempts[workflow_id] += 1
        return real(rt, workflow_id, *args, **kwargs)

    monkeypatch.setattr(workflow, "recover", recover)


def _through_refused_writes(start: Callable[[str], Any], refusing: Callable[[], Any],
                            while_refused: Callable[[Any], None]) -> Any:
    """Start a workflow by ``start(tag)``; once its first step ran, refuse
    writes until it was tried again three times and ``while_refused(handle)``
    returned; then check that it finishes, each effect once. Its final row."""
    go_on.clear()
    tag = uuid.uuid4().hex
    handle = start(tag)
    eventually(lambda: runs[f"{tag}:small"] == 1, timeout=20)
    with refusing():
        go_on.set()
        eventually(lambda: attempts[handle.workflow_id] >= 3, timeout=20)
        while_refused(handle)
    assert handle.get_result(timeout_seconds=60) == 1 + 2 + 300_000
    # (The first step's record waits in memory for the workflow's next write,
    # which a read-only server refuses: that step may run once more.)
    assert runs[f"{tag}:small"] in (1, 2) and runs[f"{tag}:tx"] == 1 and _effects(tag) == 1
    row = _row(handle.workflow_id)
    assert row.status == SUCCESS
    return row


def test_a_workflow_waits_out_refused_writes_and_finishes_once(
        launch: Any, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    launch()
    refused_at = time.monotonic()

    def while_refused(handle: Any) -> None:
        time.sleep(1.0)
        elapsed = time.monotonic() - refused_at
        assert _row(handle.workflow_id).status == PENDING
        # Tried again with waits that double from 0.1 s (at once each time,
        # it made dozens of starts a second, and was dead-lettered by them).
        assert attempts[handle.workflow_id] <= 3 + elapsed / 0.4, elapsed

    row = _through_refused_writes(lambda tag: DBOS.start_workflow(refused_work, tag),
                                  _refusing(backend, monkeypatch, db_url), while_refused)
    assert row.recovery_attempts == 1  # (never counted: the workflow allows none)


def test_a_queued_workflow_waits_out_refused_writes_within_one_attempt(
        launch: Any, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A queued workflow stopped by refused writes goes back to its queue each
    time; its recovery attempts stay at 2 (the first dequeue after a stop
    counts, so that it loads its recorded steps; later ones do not)."""
    launch()

    def while_refused(handle: Any) -> None:
        assert _row(handle.workflow_id).status in (PENDING, "ENQUEUED")

    row = _through_refused_writes(lambda tag: refused_queue.enqueue(refused_queued, tag),
                                  _refusing(backend, monkeypatch, db_url), while_refused)
    assert row.recovery_attempts <= 2


def test_a_workflow_that_cannot_start_again_does_not_hold_up_the_others(
        launch: Any, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Two workflows stopped by refused writes. The first (by ID) cannot start
    again for a reason of its own (its row names a function this code does
    not define): it is tried again with growing waits, and the second starts
    again and finishes all the same (the first's failure used to end each
    pass, before the second's turn)."""
    launch()
    go_on.clear()
    tag = uuid.uuid4().hex
    with SetWorkflowID(f"a-{tag}"):
        stuck = DBOS.start_workflow(refused_work, f"{tag}-a")
    with SetWorkflowID(f"b-{tag}"):
        other = DBOS.start_workflow(refused_work, f"{tag}-b")
    eventually(lambda: runs[f"{tag}-a:small"] == 1 and runs[f"{tag}-b:small"] == 1, timeout=20)
    store = _runtime().store
    store._run(f"UPDATE {store.prefix}workflow_status SET name = {store._ph('name')} "
               f"WHERE workflow_id = {store._ph('id')}",
               {"name": "refused.gone", "id": stuck.workflow_id})
    with _refusing(backend, monkeypatch, db_url)():
        go_on.set()
        eventually(lambda: attempts[other.workflow_id] >= 2, timeout=20)
    assert other.get_result(timeout_seconds=60) == 1 + 2 + 300_000
    tried = attempts[stuck.workflow_id]
    time.sleep(1.5)
    # Tried again, with waits that grow (each at most a second apart before).
    assert tried >= 2 and attempts[stuck.workflow_id] - tried <= 3
    assert _row(stuck.workflow_id).status == PENDING
    assert any(f"cannot start workflow {stuck.workflow_id} again" in r.getMessage()
               for r in caplog.records)
