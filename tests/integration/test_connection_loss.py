"""Work is not stranded when the database connection is lost.

A claim whose commit is never answered may or may not have taken its
workflows; a workflow whose write fails because the connection is gone stops
without an outcome. Either way the rows stay PENDING under the live process
that was running them, and no other process takes them over (its heartbeat
goes on). These tests check that the process itself finishes every one:

* faults injected into the real store: the statement runs and commits on the
  real database, then the caller gets ``DatabaseUnreachableError`` as if the
  connection had dropped before the answer came (or, for a write, the error
  comes before anything is sent);
* on PostgreSQL, one pooled connection ended by the server after the pool's
  check (a transaction's BEGIN, a read, then fail on it), and every connection
  of the database terminated (``pg_terminate_backend``), again and again,
  while a queue is worked through.

A direct start whose insert goes unanswered is covered too: its caller gets
the error, and the workflow, if its row was written, still runs exactly once,
whether or not the caller retries.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from dbhelpers import cut_connections, eventually
from relos import DBOS, PENDING, SUCCESS, Queue, SetWorkflowID, errors
from relos.serialization import get_serializer
from relos.store import open_store
from relos.store.base import ExecutorRow, ListFilter, WorkflowRow

runs: Counter[str] = Counter()
_runs_lock = threading.Lock()
lost_queue = Queue("lost.queue")
blip_queue = Queue("lost.blip", worker_concurrency=16)


def _ran(key: str) -> None:
    with _runs_lock:
        runs[key] += 1


@DBOS.step(name="lost.step")
def lost_step(tag: str, part: int) -> int:
    _ran(f"{tag}:{part}")
    return part


@DBOS.workflow(name="lost.work")
def lost_work(tag: str) -> str:
    _ran(tag)
    return f"done-{tag}"


@DBOS.workflow(name="lost.steps")
def lost_steps(tag: str, pause: float) -> list[int]:
    first = lost_step(tag, 0)
    DBOS.sleep(pause)
    return [first, lost_step(tag, 1)]


#: Transactions whose connection the test ends in the middle (their first attempt).
cut_off: set[str] = set()


@DBOS.transaction(name="lost.effect")
def lost_effect(tag: str, cut: bool) -> int:
    """Writes a row; with ``cut``, its first attempt ends its own connection."""
    conn = DBOS.sql_connection
    conn.execute("CREATE TABLE IF NOT EXISTS lost_effects (tag TEXT NOT NULL)")
    conn.execute("INSERT INTO lost_effects (tag) VALUES (%s)", (tag,))
    _ran(f"{tag}:effect")
    if cut and tag not in cut_off:
        cut_off.add(tag)
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")  # (the server ends it)
    return 7


@DBOS.workflow(name="lost.with_effect")
def lost_with_effect(tag: str) -> int:
    return lost_effect(tag, True) + lost_step(tag, 1)


@DBOS.workflow(name="lost.with_plain_effect")
def lost_with_plain_effect(tag: str) -> int:
    return lost_effect(tag, False) + lost_step(tag, 1)


def _launched(launch: Callable[..., Any], **config: Any) -> Any:
    """The runtime ``launch(**config)`` launched."""
    launch(**config)
    from relos import dbos as facade

    return facade._runtime


def _lose_answers(monkeypatch: pytest.MonkeyPatch, store: Any, method: str,
                  times: int = 1) -> Counter[str]:
    """Make ``store.method`` run and commit, then raise as if the connection
    had dropped before its answer came, the first ``times`` times it took
    something. The returned counter tells how many answers were lost."""
    real = getattr(store, method)
    lost: Counter[str] = Counter()

    def answer_lost(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if result and lost[method] < times:
            lost[method] += 1
            raise errors.DatabaseUnreachableError(f"the test lost the answer of {method}")
        return result

    monkeypatch.setattr(store, method, answer_lost)
    return lost


def _status(rt: Any, workflow_id: str) -> str:
    row = rt.store.get_workflow(workflow_id)
    assert row is not None
    return str(row.status)


def test_a_queue_claim_whose_answer_was_lost_still_runs_its_workflows(
        launch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _launched(launch)
    lost = _lose_answers(monkeypatch, rt.store, "dequeue")
    tags = [uuid.uuid4().hex for _ in range(6)]
    handles = lost_queue.enqueue_many(lost_work, [(t,) for t in tags])
    for h, t in zip(handles, tags, strict=True):
        assert h.get_result(timeout_seconds=20) == f"done-{t}"
    assert lost["dequeue"] == 1  # (the fault did happen)
    assert all(runs[t] == 1 for t in tags)  # each run once: settled, not run again
    assert all(_status(rt, h.workflow_id) == SUCCESS for h in handles)


def _orphan(db_url: str) -> str:
    """A PENDING workflow of this executor ID owned by a process long dead."""
    store = open_store(db_url)
    try:
        now = int(time.time() * 1000)
        instance = f"gone-{uuid.uuid4().hex[:8]}"
        store.register_executor(ExecutorRow(instance, "local", None, "elsewhere", 1,
                                            now - 60_000, now - 60_000))
        tag = uuid.uuid4().hex
        inputs = get_serializer("json").dumps({"args": [tag], "kwargs": {}})
        assert store.insert_workflow(WorkflowRow(
            workflow_id=f"orphan-{tag}", status=PENDING, name="lost.work", executor_id="local",
            created_at=now, updated_at=now, inputs=inputs, owner=instance)) is None
        return tag
    finally:
        store.close()


def test_a_takeover_whose_answer_was_lost_still_runs_the_workflow(
        launch: Any, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _launched(launch)
    # The batch take-over's answer is lost, then the answer of the claim that
    # looks at the workflow again: both commit, nobody else may take it.
    lost = _lose_answers(monkeypatch, rt.store, "claim_workflows")
    lost_again = _lose_answers(monkeypatch, rt.store, "claim_workflow")
    tag = _orphan(db_url)
    wid = f"orphan-{tag}"
    eventually(lambda: _status(rt, wid) == SUCCESS, timeout=20)
    assert DBOS.retrieve_workflow(wid).get_result() == f"done-{tag}"
    assert lost["claim_workflows"] == 1 and lost_again["claim_workflow"] == 1
    assert runs[tag] == 1


def test_a_wake_up_whose_answer_was_lost_still_resumes_the_workflow(
        launch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _launched(launch, suspend_after_seconds=0)  # (every wait is suspended at once)
    lost = _lose_answers(monkeypatch, rt.store, "claim_due_workflows")
    tag = uuid.uuid4().hex
    handle = DBOS.start_workflow(lost_steps, tag, 0.3)
    assert handle.get_result(timeout_seconds=20) == [0, 1]
    assert lost["claim_due_workflows"] == 1
    assert runs[f"{tag}:0"] == 1 and runs[f"{tag}:1"] == 1  # replayed, not rerun


def test_a_workflow_stopped_by_a_lost_connection_runs_again_and_its_handle_waits(
        launch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _launched(launch)
    real = rt.store.write_batch
    lost: Counter[str] = Counter()

    def connection_gone(steps: Any, completions: Any) -> Any:
        if not completions and not lost["write_batch"]:  # (a write in the middle of a run)
            lost["write_batch"] += 1
            raise errors.DatabaseUnreachableError("the test dropped the connection")
        return real(steps, completions)

    monkeypatch.setattr(rt.store, "write_batch", connection_gone)
    tag = uuid.uuid4().hex
    wid = f"stopped-{tag}"
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(lost_steps, tag, 0.05)
    assert handle.get_result(timeout_seconds=20) == [0, 1]
    assert lost["write_batch"] == 1
    assert _status(rt, wid) == SUCCESS
    # Its first step's record went with the lost write: run again (steps are
    # at least once), and the workflow body once more from the start.
    assert runs[f"{tag}:0"] == 2 and runs[f"{tag}:1"] == 1


def test_a_transaction_whose_connection_was_lost_runs_again_not_recorded_as_failed(
        launch: Any, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("terminates a PostgreSQL server process")
    rt = _launched(launch)
    tag = uuid.uuid4().hex
    wid = f"cut-{tag}"
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(lost_with_effect, tag)
    assert handle.get_result(timeout_seconds=20) == 8
    assert _status(rt, wid) == SUCCESS
    assert runs[f"{tag}:effect"] == 2  # cut off (rolled back), then run again
    with rt.store._conn() as conn:  # its write committed once: with the second run
        assert conn.execute("SELECT count(*) FROM lost_effects WHERE tag = %s",
                            (tag,)).fetchone()[0] == 1


@DBOS.workflow(name="lost.parent")
def lost_parent(tag: str) -> str:
    return "parent-" + lost_work(f"{tag}:child")


def _unanswered(monkeypatch: pytest.MonkeyPatch, store: Any, method: str,
                committed: bool) -> Counter[str]:
    """The first call of ``store.method`` raises ``DatabaseUnreachableError``
    as a lost connection does: after the real write committed
    (``committed``), or before anything was sent."""
    real = getattr(store, method)
    lost: Counter[str] = Counter()

    def unanswered(*args: Any, **kwargs: Any) -> Any:
        if lost[method]:
            return real(*args, **kwargs)
        lost[method] += 1
        if committed:
            real(*args, **kwargs)
        raise errors.DatabaseUnreachableError(f"the test lost the answer of {method}")

    monkeypatch.setattr(store, method, unanswered)
    return lost


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not-committed"])
def test_a_started_workflow_whose_insert_went_unanswered_runs_once(
        launch: Any, monkeypatch: pytest.MonkeyPatch, committed: bool) -> None:
    """The caller gets the error; the workflow, if its row was written, runs
    in this process all the same, and not again when the caller retries."""
    rt = _launched(launch)
    lost = _unanswered(monkeypatch, rt.store, "insert_workflow", committed)
    tag = uuid.uuid4().hex
    wid = f"unanswered-{tag}"
    with SetWorkflowID(wid), pytest.raises(errors.DatabaseUnreachableError):
        DBOS.start_workflow(lost_work, tag)
    assert lost["insert_workflow"] == 1
    if committed:  # (nobody retries: it runs anyway)
        eventually(lambda: _status(rt, wid) == SUCCESS, timeout=20)
    else:
        assert rt.store.get_workflow(wid) is None
    with SetWorkflowID(wid):
        assert DBOS.start_workflow(lost_work, tag).get_result(timeout_seconds=20) == f"done-{tag}"
    assert runs[tag] == 1


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not-committed"])
def test_a_call_retried_at_once_after_its_insert_went_unanswered_runs_once(
        launch: Any, monkeypatch: pytest.MonkeyPatch, committed: bool) -> None:
    """The retry races the process's own start of the workflow: one runs it."""
    rt = _launched(launch)
    _unanswered(monkeypatch, rt.store, "insert_workflow", committed)
    tag = uuid.uuid4().hex
    with SetWorkflowID(f"retried-{tag}"), pytest.raises(errors.DatabaseUnreachableError):
        lost_work(tag)
    with SetWorkflowID(f"retried-{tag}"):  # (an ID is for the next call only)
        assert lost_work(tag) == f"done-{tag}"
    assert _status(rt, f"retried-{tag}") == SUCCESS
    assert runs[tag] == 1


def test_a_child_whose_insert_went_unanswered_runs_once_for_its_parent(
        launch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _launched(launch)
    lost = _unanswered(monkeypatch, rt.store, "insert_child_workflow", committed=True)
    tag = uuid.uuid4().hex
    with SetWorkflowID(f"parent-{tag}"):
        handle = DBOS.start_workflow(lost_parent, tag)
    assert handle.get_result(timeout_seconds=20) == f"parent-done-{tag}:child"
    assert lost["insert_child_workflow"] == 1
    assert runs[tag + ":child"] == 1
    assert _status(rt, f"parent-{tag}") == SUCCESS


#: The test holding SQLite's write lock: asked to take it, and has it.
take_the_lock, lock_taken = threading.Event(), threading.Event()


@DBOS.step(name="lost.lock_step")
def lock_step(tag: str) -> int:
    _ran(f"{tag}:lock")
    if not lock_taken.is_set():  # (its first run: the records after it will wait)
        take_the_lock.set()
        lock_taken.wait(10)
    return 1


@DBOS.transaction(name="lost.locked_tx")
def locked_tx(tag: str) -> int:
    DBOS.sql_connection.execute("SELECT 1")
    _ran(f"{tag}:tx")
    return 2


@DBOS.workflow(name="lost.locked")
def locked_work(tag: str) -> int:
    return lost_step(tag, 0) + lock_step(tag) + locked_tx(tag)


def test_a_workflow_stopped_by_sqlites_lock_held_past_the_busy_timeout_runs_again(
        launch: Any, db_url: str, backend: str) -> None:
    """Another connection holds the SQLite file's write lock longer than
    ``sqlite_busy_timeout_seconds`` while a workflow runs: its writes give up
    (``DatabaseUnreachableError``, not a failure of the workflow) and it runs
    again once the lock is free."""
    if backend != "sqlite":
        pytest.skip("SQLite's file lock")
    import sqlite3

    from relos.store import parse_url

    rt = _launched(launch, sqlite_busy_timeout_seconds=0.5)
    take_the_lock.clear()
    lock_taken.clear()
    tag = uuid.uuid4().hex
    handle = DBOS.start_workflow(locked_work, tag)
    assert take_the_lock.wait(10)
    holder = sqlite3.connect(parse_url(db_url)[1], isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        lock_taken.set()
        # Past one busy timeout, not two: the first write to give up did so
        # with the lock still held, the next to try (before this change, the
        # record of the workflow's failure) goes through.
        time.sleep(0.8)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert handle.get_result(timeout_seconds=20) == 3
    assert _status(rt, handle.workflow_id) == SUCCESS
    # Stopped when the record of the step that waited could not be written
    # (that step ran again, the first was replayed); on a slow machine that
    # write may have started late enough to wait the lock out (one run).
    assert runs[f"{tag}:0"] == 1 and runs[f"{tag}:lock"] in (1, 2) and runs[f"{tag}:tx"] == 1


def _called_from(function: str, depth: int = 8) -> bool:
    """Whether ``function`` is among the callers of the caller, ``depth`` up."""
    frame = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return False
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def _end_the_next_connection(monkeypatch: pytest.MonkeyPatch, store: Any, db_url: str,
                             taken_by: str, this_thread: bool = False) -> list[int]:
    """The next connection ``taken_by`` (a store method) takes from the pool
    has passed the pool's check, and then the server ends it (as a restart
    or fail-over does to connections idle in a pool). With ``this_thread``
    only in this thread. The returned list gets the ended server process's ID."""
    import psycopg

    real_getconn = store.pool.getconn
    ended: list[int] = []
    thread = threading.get_ident() if this_thread else None

    def getconn_ended_by_the_server(*args: Any, **kwargs: Any) -> Any:
        conn = real_getconn(*args, **kwargs)
        if (not ended and _called_from(taken_by)
                and thread in (None, threading.get_ident())):
            pid = conn.info.backend_pid
            with psycopg.connect(db_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                eventually(lambda: admin.execute(
                    "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s",
                    (pid,)).fetchone()[0], timeout=10)
            ended.append(pid)
        return conn

    monkeypatch.setattr(store.pool, "getconn", getconn_ended_by_the_server)
    return ended


def test_a_transaction_whose_connection_the_server_ended_before_begin_runs_again(
        launch: Any, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The BEGIN of the transaction fails (AdminShutdown): the transaction is
    not recorded as failed, its workflow runs again."""
    if backend != "postgres":
        pytest.skip("terminates a PostgreSQL server process")
    rt = _launched(launch)
    ended = _end_the_next_connection(monkeypatch, rt.store, db_url, "transaction")
    tag = uuid.uuid4().hex
    with SetWorkflowID(f"ended-{tag}"):
        handle = DBOS.start_workflow(lost_with_plain_effect, tag)
    assert handle.get_result(timeout_seconds=20) == 8
    assert ended, "a connection was ended before its BEGIN"
    assert _status(rt, f"ended-{tag}") == SUCCESS
    assert runs[f"{tag}:effect"] == 1  # (its first attempt never began)
    with rt.store._conn() as conn:
        assert conn.execute("SELECT count(*) FROM lost_effects WHERE tag = %s",
                            (tag,)).fetchone()[0] == 1


@pytest.mark.parametrize("read", ["get_workflow", "list_workflows"])
def test_a_read_whose_pooled_connection_the_server_ended_runs_again_on_another(
        launch: Any, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch,
        read: str) -> None:
    """A named statement (``get_workflow``) or a composed one (``list_workflows``)."""
    if backend != "postgres":
        pytest.skip("terminates a PostgreSQL server process")
    rt = _launched(launch)
    handle = DBOS.start_workflow(lost_work, uuid.uuid4().hex)
    assert handle.get_result(timeout_seconds=20).startswith("done-")
    ended = _end_the_next_connection(monkeypatch, rt.store, db_url, read, this_thread=True)
    if read == "get_workflow":
        rows = [rt.store.get_workflow(handle.workflow_id)]
    else:
        rows = rt.store.list_workflows(ListFilter(workflow_ids=[handle.workflow_id]))
    assert ended, "the read's connection was ended"
    assert [r.status for r in rows if r is not None] == [SUCCESS]


def test_a_queue_finishes_while_postgres_drops_every_connection(
        launch: Any, db_url: str, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("terminates PostgreSQL server processes")
    rt = _launched(launch)
    tags = [uuid.uuid4().hex for _ in range(400)]
    handles = blip_queue.enqueue_many(lost_steps, [(t, 0.01) for t in tags])
    assert cut_connections(db_url, 8, 0.25) >= 8

    def all_done() -> bool:
        try:
            return all(_status(rt, h.workflow_id) == SUCCESS for h in handles)
        except errors.DatabaseUnreachableError:
            return False  # (this read's pooled connection was one the server ended)

    eventually(all_done, timeout=60, interval=0.5)
    assert all(h.get_result() == [0, 1] for h in handles)
    assert all(runs[f"{t}:0"] >= 1 and runs[f"{t}:1"] >= 1 for t in tags)
