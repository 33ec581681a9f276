"""How many claims an executor makes for a trickle of single enqueues, on
PostgreSQL, where each enqueue is announced to every executor (LISTEN/NOTIFY).

The claims are counted by wrapping the launched store's ``dequeue`` (every
claim still runs against the real database); the enqueues are written by the
test's own store, as another process would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from queue_workflows import (
    DEADLINE,
    basic_queue,
    gates,
    launched,
    new_gate,
    new_tag,
    started,
    tq_add,
    tq_gated,
    worker_queue,
)

import relos.dbos
from dbhelpers import eventually
from relos import DBOS, ENQUEUED, SetWorkflowID
from relos.runtime import queueing
from relos.store import SystemStore
from relos.store.base import ExecutorRow, WorkflowRow

#: Long enough that no claim in these tests comes from a poll.
SLOW_POLL = 20.0


def _postgres_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("NOTIFY echoes, hold-backs and full notices: PostgreSQL only")


def _count_claims(queue_name: str) -> list[tuple[float, int]]:
    """From now on: (monotonic time, rows claimed) of each claim from the
    queue by the launched runtime."""
    rt = relos.dbos._rt()
    claims: list[tuple[float, int]] = []
    real = rt.store.dequeue

    def dequeue(queue: Any, *args: Any, **kwargs: Any) -> Any:
        at = time.monotonic()
        rows = real(queue, *args, **kwargs)
        if queue.name == queue_name:
            claims.append((at, len(rows)))
        return rows

    rt.store.dequeue = dequeue  # type: ignore[method-assign]
    return claims


def _enqueue_elsewhere(raw_store: SystemStore, i: int, queue: Any = basic_queue) -> str:
    """One ``tq_add(i, 1)`` queued in ``queue`` by another process's store."""
    now = int(time.time() * 1000)
    workflow_id = f"trickle-{i}-{now}"
    raw_store.enqueue([WorkflowRow(
        workflow_id, ENQUEUED, relos.dbos._workflow_info(tq_add).name, "elsewhere", now, now,
        queue_name=queue.name, inputs=json.dumps({"args": [i, 1], "kwargs": {}}))])
    return workflow_id


def test_a_claim_that_takes_all_it_sees_is_not_followed_by_an_empty_one(
        db_url: str, backend: str, raw_store: SystemStore) -> None:
    """A claim that got fewer workflows than it had room for took all there
    were: the runner waits for the next enqueue instead of claiming again at
    once to find nothing (it did, once per workflow of a trickle). On both
    backends: SQLite's listener tells of other processes' enqueues too."""
    with launched(db_url, listen=[basic_queue], poll_interval_seconds=SLOW_POLL):
        time.sleep(0.3)  # (the runner's first rounds are over: it waits for enqueues)
        claims = _count_claims(basic_queue.name)
        for i in range(20):
            workflow_id = _enqueue_elsewhere(raw_store, i)
            assert DBOS.retrieve_workflow(workflow_id).get_result(
                timeout_seconds=DEADLINE) == i + 1
        time.sleep(0.2)
    took = sum(n for _, n in claims)
    empty = sum(1 for _, n in claims if n == 0)
    assert took == 20
    assert empty <= 3, f"{empty} claims found nothing for 20 workflows enqueued one by one"


def test_a_process_running_its_own_enqueues_claims_once_for_each(
        db_url: str, backend: str) -> None:
    """A process that enqueues one workflow at a time and runs them hears each
    enqueue twice: in-process, and by the NOTIFY of its own statement. The
    NOTIFY is dropped (the in-process wake-up claimed the workflow already):
    it set off a claim that found nothing, for two workflows in three. On
    SQLite the listener does not tell of the process's own enqueues once
    claimed."""
    with launched(db_url, listen=[basic_queue], poll_interval_seconds=SLOW_POLL):
        time.sleep(0.3)
        claims = _count_claims(basic_queue.name)
        for i in range(20):
            handle = basic_queue.enqueue(tq_add, i, 1)
            assert handle.get_result(timeout_seconds=DEADLINE) == i + 1
            time.sleep(0.02)  # (the NOTIFY has come back before the next enqueue)
        time.sleep(0.2)
    took = sum(n for _, n in claims)
    empty = sum(1 for _, n in claims if n == 0)
    assert took == 20
    assert empty <= 3, f"{empty} claims found nothing for 20 workflows enqueued one by one"


def _record_heard(rt: Any) -> list[bool]:
    """From now on: for each enqueue NOTIFY the launched store's listener
    hears, whether it was dropped as the process's own."""
    got: list[bool] = []
    real = rt.store.echoes.heard

    def heard(pid: int, payload: str) -> bool:
        dropped = real(pid, payload)
        got.append(dropped)
        return dropped

    rt.store.echoes.heard = heard
    return got


def _until_heard(heard: list[bool], count: int) -> None:
    """Wait (however slow the host) until ``count`` NOTIFYs were heard."""
    deadline = time.monotonic() + DEADLINE
    while len(heard) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # (and none more)


@pytest.mark.parametrize("size", [5, 40])
def test_a_process_running_its_own_batches_drops_their_notifications(
        db_url: str, backend: str, size: int) -> None:
    """The same for batches: the NOTIFY of an INSERT of several rows (5) or of
    a COPY (40), sent by the status trigger, comes back to the enqueuing
    process after its in-process wake-up claimed the batch, and is dropped.
    (Claims that find nothing are not counted here: a claim with room for
    128 or more is split in two, and one half may find nothing.)"""
    _postgres_only(backend)
    with launched(db_url, listen=[basic_queue], poll_interval_seconds=SLOW_POLL):
        time.sleep(0.3)
        rt = relos.dbos._rt()
        claims = _count_claims(basic_queue.name)
        heard = _record_heard(rt)
        for b in range(10):
            handles = basic_queue.enqueue_many(tq_add, [(i, b) for i in range(size)])
            assert [h.get_result(timeout_seconds=DEADLINE) for h in handles] == [
                i + b for i in range(size)]
            time.sleep(0.02)
        _until_heard(heard, 10)
    assert sum(n for _, n in claims) == 10 * size
    assert heard == [True] * 10, heard


def test_concurrent_enqueues_announced_after_commit_are_not_heard_twice(
        db_url: str, backend: str) -> None:
    """Enqueues that run at once (batches, which are not combined into one
    statement) leave their NOTIFY to the process's announcer (after commit,
    several coalesced): those come back too, after the in-process wake-ups,
    and are dropped."""
    _postgres_only(backend)
    with launched(db_url, listen=[basic_queue], poll_interval_seconds=SLOW_POLL):
        time.sleep(0.3)
        claims = _count_claims(basic_queue.name)
        rt = relos.dbos._rt()
        heard = _record_heard(rt)
        announced = 0
        real = rt.store._announcer.announce  # type: ignore[attr-defined]

        def announce(channel: str, payloads: set[str]) -> None:
            nonlocal announced
            announced += 1
            real(channel, payloads)

        rt.store._announcer.announce = announce  # type: ignore[attr-defined]

        together = threading.Barrier(4)

        def caller(k: int) -> None:
            for _ in range(5):
                together.wait(timeout=DEADLINE)
                handles = basic_queue.enqueue_many(tq_add, [(k, i) for i in range(20)])
                assert [h.get_result(timeout_seconds=DEADLINE) for h in handles] == [
                    k + i for i in range(20)]

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.3)
    assert sum(n for _, n in claims) == 400
    assert announced > 0, "no enqueue ran beside another: the announcer was not used"
    assert heard and all(heard), heard  # (the announcer's and the statements' alike)


@contextmanager
def _serving_own_queue(db_url: str) -> Iterator[tuple[Any, Any]]:
    """A launched runtime serving ``basic_queue`` (polls 20 s apart), once
    its listener hears the queues: the runtime and its store's echoes."""
    with launched(db_url, listen=[basic_queue], poll_interval_seconds=SLOW_POLL):
        rt = relos.dbos._rt()
        echoes = rt.store.echoes  # type: ignore[attr-defined]
        deadline = time.monotonic() + DEADLINE
        while not echoes.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # (the runner's first rounds are over)
        assert echoes.listening
        yield rt, echoes


def test_a_listener_that_lost_its_connection_expects_nothing_until_back(
        db_url: str, backend: str) -> None:
    """While the listener reconnects it hears nothing, so nothing is expected
    (an expectation could never be answered); once back, the process's own
    NOTIFYs are dropped again, and its work ran all along."""
    _postgres_only(backend)
    with _serving_own_queue(db_url) as (rt, echoes):
        with psycopg.connect(db_url, autocommit=True) as admin:
            [(killed,)] = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN %'").fetchall()
        assert killed == 1
        deadline = time.monotonic() + 5
        while echoes.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not echoes.listening
        assert basic_queue.enqueue(tq_add, 1, 1).get_result(timeout_seconds=DEADLINE) == 2
        assert echoes._count == 0
        deadline = time.monotonic() + 10
        while not echoes.listening and time.monotonic() < deadline:
            time.sleep(0.05)
        assert echoes.listening, "the listener did not reconnect"
        heard = _record_heard(rt)
        for i in range(5):
            assert basic_queue.enqueue(tq_add, i, 2).get_result(
                timeout_seconds=DEADLINE) == i + 2
            time.sleep(0.02)
        _until_heard(heard, 5)
    assert heard == [True] * 5, heard


def _insert_unannounced_locally(store: Any, workflow_id: str, i: int) -> None:
    """An ENQUEUED row for ``tq_add(i, 1)`` written on one of ``store``'s own
    pooled connections by plain SQL: its trigger sends the NOTIFY, and no
    in-process wake-up follows (as for a requeue or a recovery)."""
    now = int(time.time() * 1000)
    with store._conn() as conn:
        conn.execute(
            f"INSERT INTO {store.prefix}workflow_status (workflow_id, status, name, "
            "executor_id, created_at, updated_at, inputs, queue_name) "
            "VALUES (%s, 'ENQUEUED', %s, 'local', %s, %s, %s, %s)",
            (workflow_id, relos.dbos._workflow_info(tq_add).name, now, now,
             json.dumps({"args": [i, 1], "kwargs": {}}), basic_queue.name))


def test_only_the_own_enqueues_notifications_are_dropped(
        db_url: str, backend: str) -> None:
    """The NOTIFY of an enqueue that inserted nothing (its ID taken) is not
    expected, and one sent on the same connection by any other path still
    wakes the runner: with polls 20 s apart, the workflow it announces
    starts at once."""
    _postgres_only(backend)
    with _serving_own_queue(db_url) as (rt, echoes):
        with SetWorkflowID("echo-first"):
            assert basic_queue.enqueue(tq_add, 1, 1).get_result(
                timeout_seconds=DEADLINE) == 2
        deadline = time.monotonic() + 5
        while echoes._count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert echoes._count == 0, "the enqueue's own NOTIFY was not heard back"
        with SetWorkflowID("echo-first"):  # (taken: nothing inserted, no NOTIFY)
            assert basic_queue.enqueue(tq_add, 1, 1).get_result(
                timeout_seconds=DEADLINE) == 2
        assert echoes._count == 0, "an enqueue that inserted nothing left an expectation"
        for i in range(3):
            with SetWorkflowID(f"echo-own-{i}"):
                basic_queue.enqueue(tq_add, i, 1)
            _insert_unannounced_locally(rt.store, f"echo-plain-{i}", i)
            started = time.monotonic()
            assert DBOS.retrieve_workflow(f"echo-plain-{i}").get_result(
                timeout_seconds=DEADLINE) == i + 1
            assert time.monotonic() - started < SLOW_POLL / 4, "its NOTIFY was dropped"


def _announce(db_url: str, queue_name: str, times: int, every: float) -> None:
    """Send the notification of an enqueue to ``queue_name`` (with nothing
    enqueued) ``times`` times, ``every`` seconds apart."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for _ in range(times):
            conn.execute("SELECT pg_notify('relos_queues', %s)", (queue_name,))
            time.sleep(every)


def test_an_executor_that_found_nothing_holds_back_where_another_serves_the_queue(
        db_url: str, backend: str, raw_store: SystemStore) -> None:
    """Every executor serving a queue hears each enqueue, and all but the
    first to claim find nothing. One whose claim found nothing in a queue
    another live executor serves claims again only EMPTY_CLAIM_BACKOFF_SECONDS
    later, however many enqueues it hears meanwhile, and twice as long after
    each further claim that found nothing, up to
    EMPTY_CLAIM_BACKOFF_MAX_SECONDS; alone on the queue, it never holds back."""
    _postgres_only(backend)
    backoff = queueing.EMPTY_CLAIM_BACKOFF_SECONDS
    longest = queueing.EMPTY_CLAIM_BACKOFF_MAX_SECONDS
    with launched(db_url, listen=[basic_queue], poll_interval_seconds=SLOW_POLL):
        rt = relos.dbos._rt()
        now = raw_store.clock_ms()
        beat = now + 60_000  # (alive for the whole test, however slow the host)
        raw_store.register_executor(ExecutorRow(
            "other-executor", "local", rt.app_version, "some-other-host", 4242, now, beat,
            queues=json.dumps([basic_queue.name])))
        raw_store.register_executor(ExecutorRow(
            "front-end", "local", rt.app_version, "some-other-host", 4243, now, beat,
            queues="[]"))
        rt.recover_pending()  # (the pass that reads who else is alive)
        assert {r.instance_id for r in rt.others} == {"other-executor", "front-end"}
        time.sleep(0.3)
        claims = _count_claims(basic_queue.name)
        _announce(db_url, basic_queue.name, times=150, every=0.005)
        time.sleep(2 * backoff)
        runner = rt.queue_runner
        assert runner is not None
        assert runner._empty_claim_at is not None

        # Alone on the queue (the other executor stopped; the front end
        # dequeues from no queue): no holding back.
        raw_store.deregister_executor("other-executor", raw_store.clock_ms())
        rt.recover_pending()
        assert [r.instance_id for r in rt.others] == ["front-end"]
        time.sleep(longest + 0.05)  # (a hold-back under way ends)
        runner._empty_claim_at = None
        claims = claims[:]  # (the claims heard while another served the queue)
        alone = _count_claims(basic_queue.name)
        _announce(db_url, basic_queue.name, times=5, every=0.003)
        eventually(lambda: alone, timeout=10)
        assert all(n == 0 for _, n in alone)
        assert runner._empty_claim_at is None  # (alone: an empty claim holds nothing back)
    assert len(claims) >= 5, claims
    assert all(n == 0 for _, n in claims)
    gaps = [b[0] - a[0] for a, b in zip(claims, claims[1:], strict=False)]
    waits = [min(longest, backoff * 2 ** i) for i in range(len(gaps))]
    assert all(gap >= wait * 0.95 for gap, wait in zip(gaps, waits, strict=True)), (
        f"claims {gaps} s apart after those before found nothing (waits {waits})")


def _serve_elsewhere_too(rt: Any, raw_store: SystemStore, queue: Any = basic_queue) -> None:
    """Register another live executor serving ``queue`` (alive for the whole
    test, however slow the host) and let ``rt`` read it."""
    now = raw_store.clock_ms()
    raw_store.register_executor(ExecutorRow(
        "other-executor", "local", rt.app_version, "some-other-host", 4242, now, now + 60_000,
        queues=json.dumps([queue.name])))
    rt.recover_pending()  # (the pass that reads who else is alive)
    assert [r.instance_id for r in rt.others] == ["other-executor"]


def test_an_executor_holding_back_claims_at_once_when_another_says_it_is_full(
        db_url: str, backend: str, raw_store: SystemStore, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """An executor that keeps losing the race for each enqueue holds back
    ever longer; when another executor serving the queue hears an enqueue
    and has no room for it, it says so (``relos_queues_full``), and the one
    holding back claims at once instead of when its hold-back ends."""
    _postgres_only(backend)
    monkeypatch.setattr(queueing, "EMPTY_CLAIM_BACKOFF_MAX_SECONDS", 2.0)
    with launched(db_url, listen=[basic_queue], poll_interval_seconds=SLOW_POLL):
        rt = relos.dbos._rt()
        runner = rt.queue_runner
        assert runner is not None
        _serve_elsewhere_too(rt, raw_store)
        time.sleep(0.3)
        claims = _count_claims(basic_queue.name)
        _announce(db_url, basic_queue.name, times=60, every=0.01)
        eventually(lambda: runner._empty_backoff >= 0.6, timeout=10)
        assert runner._empty_claim_at is not None
        held_until = runner._empty_claim_at + runner._empty_backoff
        workflow_id = _enqueue_elsewhere(raw_store, 7)  # (heard, and held back)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('relos_queues_full', %s)", (basic_queue.name,))
        assert DBOS.retrieve_workflow(workflow_id).get_result(timeout_seconds=DEADLINE) == 8
        took = [at for at, n in claims if n]
        assert took and took[0] < held_until, (took, held_until)


def test_an_executor_without_room_says_it_is_full_where_another_serves_the_queue(
        db_url: str, backend: str, raw_store: SystemStore) -> None:
    """An executor that hears an enqueue and has no room to claim it (here its
    worker concurrency is taken) tells the others serving the queue, once per
    EMPTY_CLAIM_BACKOFF_SECONDS at most; alone on the queue, it says nothing."""
    _postgres_only(backend)
    heard: list[str] = []
    tag, gate = new_tag(), new_gate()
    with psycopg.connect(db_url, autocommit=True) as listener, \
            launched(db_url, listen=[worker_queue], poll_interval_seconds=SLOW_POLL):
        listener.execute("LISTEN relos_queues_full")
        rt = relos.dbos._rt()
        blockers = [worker_queue.enqueue(tq_gated, tag, i, gate) for i in range(2)]
        eventually(lambda: len(started(tag)) == 2, timeout=DEADLINE)
        _enqueue_elsewhere(raw_store, 1, worker_queue)  # alone: no room, nothing said
        time.sleep(0.3)
        heard += [n.payload for n in listener.notifies(timeout=0.2)]
        assert heard == []
        _serve_elsewhere_too(rt, raw_store, worker_queue)
        for i in range(2, 6):
            _enqueue_elsewhere(raw_store, i, worker_queue)
            time.sleep(0.05)
        heard += [n.payload for n in listener.notifies(timeout=0.5)]
        gates[gate].set()
        for blocker in blockers:
            blocker.get_result(timeout_seconds=DEADLINE)
    assert heard and set(heard) == {worker_queue.name}, heard
    assert len(heard) <= 4, heard


def test_each_executor_records_the_queues_it_serves(
        db_url: str, raw_store: SystemStore, no_listen_filter: None) -> None:
    """The executors table says which queues each process dequeues from:
    every queue of its code (NULL), those it listens to, or none."""
    with launched(db_url, listen=[basic_queue]):
        me = relos.dbos._rt().instance_id
        [row] = raw_store.get_executors([me])
        assert json.loads(row.queues or "null") == [basic_queue.name]
        assert row.serves(basic_queue.name) and not row.serves("another")
    with launched(db_url, listen=[]):
        [row] = raw_store.get_executors([relos.dbos._rt().instance_id])
        assert row.queues == "[]" and not row.serves(basic_queue.name)
    with launched(db_url):
        [row] = raw_store.get_executors([relos.dbos._rt().instance_id])
        assert row.queues is None and row.serves("any queue at all")

