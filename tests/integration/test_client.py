"""DBOSClient: an application's workflows worked with from outside it, on both
backends. The application (its queues and workflows) is launched in this
process by the ``dbos`` fixture; the client opens the same database on its
own, as a separate service would (``client_script.py`` does so from a
process that has none of this code)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relos import (
    CANCELLED,
    DBOS,
    DELAYED,
    ENQUEUED,
    ERROR,
    PENDING,
    SUCCESS,
    AwaitedWorkflowCancelledError,
    ConfigError,
    DatabaseUnreachableError,
    DBOSClient,
    NonExistentWorkflowError,
    NotLaunchedError,
    Queue,
    QueueDeduplicatedError,
    QueueNotFoundError,
    RelosError,
    SerializationError,
    WorkflowHandleAsync,
)
from relos.queues import Call

orders = Queue("client.orders", priority_enabled=True)
parts = Queue("client.parts", partition_queue=True)
#: Runs nothing until told (worker_concurrency=0 is refused: a rate of one
#: start a day holds all but the first).
held = Queue("client.held", limiter={"limit": 1, "period": 86400})

HERE = os.path.dirname(__file__)


@DBOS.workflow(name="client.process")
def process(n: int, *, note: str = "none") -> dict[str, Any]:
    return {"n": n, "note": note, "id": DBOS.workflow_id}


@DBOS.workflow(name="client.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@DBOS.workflow(name="client.talk")
def talk() -> str:
    DBOS.set_event("ready", "yes")
    DBOS.write_stream("out", 1)
    DBOS.write_stream("out", 2)
    DBOS.close_stream("out")
    return str(DBOS.recv("in", timeout_seconds=30))


@DBOS.workflow(name="client.steps")
def steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += DBOS.run_step(lambda i=i: i + 1, name=f"step{i}")
    return total


@pytest.fixture
def client(dbos: Any, db_url: str) -> Iterator[DBOSClient]:
    c = DBOSClient(db_url)
    try:
        yield c
    finally:
        c.destroy()


def _opts(workflow: str = "client.process", queue: str = "client.orders",
          **more: Any) -> Any:
    return {"queue_name": queue, "workflow_name": workflow, **more}


def test_enqueue_by_name_runs_on_the_application(client: DBOSClient) -> None:
    handle = client.enqueue(_opts(authenticated_user="alice", priority=2), 7, note="hi")
    result = handle.get_result(timeout_seconds=30)
    assert result == {"n": 7, "note": "hi", "id": handle.workflow_id}
    status = client.get_workflow_status(handle.workflow_id)
    assert status is not None and status.status == SUCCESS
    assert (status.queue_name, status.priority, status.name) == ("client.orders", 2,
                                                                  "client.process")
    assert status.input == {"args": (7,), "kwargs": {"note": "hi"}}
    assert status.authenticated_user == "alice"
    # (the application sees it as any other workflow)
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == result


def test_enqueue_with_an_id_is_idempotent(client: DBOSClient) -> None:
    first = client.enqueue(_opts(workflow_id="order-1"), 1)
    again = client.enqueue(_opts(workflow_id="order-1"), 2)
    assert first.workflow_id == again.workflow_id == "order-1"
    assert again.get_result(timeout_seconds=30)["n"] == 1
    assert len(client.list_workflows(workflow_ids=["order-1"])) == 1


def test_enqueue_many_one_per_call(client: DBOSClient) -> None:
    handles = client.enqueue_many(_opts(), [(1,), Call((2,), {"note": "b"}), 3])
    assert [h.get_result(timeout_seconds=30)["n"] for h in handles] == [1, 2, 3]
    assert handles[1].get_result()["note"] == "b"
    with pytest.raises(ConfigError, match="iterable of calls"):
        client.enqueue_many(_opts(), "123")


def test_delayed_deduplicated_and_partitioned(client: DBOSClient) -> None:
    delayed = client.enqueue(_opts(delay_seconds=1.0), 5)
    assert client.get_workflow_status(delayed.workflow_id).status == DELAYED  # type: ignore[union-attr]
    assert delayed.get_result(timeout_seconds=30)["n"] == 5
    status = delayed.get_status()
    assert status.completed_at is not None and status.completed_at - status.created_at >= 1000

    blocker = client.enqueue(_opts(queue="client.held", deduplication_id="d1"), 1)
    waiting = client.enqueue(_opts(queue="client.held", deduplication_id="d2"), 2)
    with pytest.raises(QueueDeduplicatedError):
        client.enqueue(_opts(queue="client.held", deduplication_id="d2"), 3)
    same = client.enqueue(_opts(queue="client.held", deduplication_id="d2",
                                return_existing=True), 3)
    assert same.workflow_id == waiting.workflow_id
    assert blocker.get_result(timeout_seconds=30)["n"] == 1
    assert client.get_workflow_status(waiting.workflow_id).status == ENQUEUED  # type: ignore[union-attr]
    client.cancel_workflow(waiting.workflow_id)
    assert client.get_workflow_status(waiting.workflow_id).status == CANCELLED  # type: ignore[union-attr]

    part = client.enqueue(_opts(queue="client.parts", queue_partition_key="eu"), 9)
    assert part.get_result(timeout_seconds=30)["n"] == 9


def test_options_checked_as_in_code(client: DBOSClient) -> None:
    with pytest.raises(QueueNotFoundError, match="client.nope"):
        client.enqueue(_opts(queue="client.nope"), 1)
    with pytest.raises(ConfigError, match="need 'workflow_name'"):
        client.enqueue({"queue_name": "client.orders"}, 1)  # type: ignore[typeddict-item]
    with pytest.raises(ConfigError, match="unknown enqueue option.*'prio'"):
        client.enqueue(_opts(prio=1), 1)
    with pytest.raises(ConfigError, match="must be a dict"):
        client.enqueue("client.process", 1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="workflow_name must be a non-empty string"):
        client.enqueue(_opts(workflow=""), 1)
    with pytest.raises(ConfigError, match="delay_seconds"):
        client.enqueue(_opts(delay_seconds=-1), 1)
    with pytest.raises(ConfigError, match="workflow_timeout"):
        client.enqueue(_opts(workflow_timeout=0), 1)
    with pytest.raises(ConfigError, match="priority must be a whole number"):
        client.enqueue(_opts(priority="high"), 1)
    with pytest.raises(ConfigError, match="does not have priorities"):
        client.enqueue(_opts(queue="client.parts", queue_partition_key="eu", priority=1), 1)
    with pytest.raises(ConfigError, match="is partitioned"):
        client.enqueue(_opts(queue="client.parts"), 1)
    with pytest.raises(ConfigError, match="not partitioned"):
        client.enqueue(_opts(queue_partition_key="eu"), 1)
    with pytest.raises(SerializationError, match="argument #1"):
        client.enqueue(_opts(), 1, object())
    # nothing of the refused enqueues was stored
    assert client.list_workflows(name="client.process") == []


def test_a_name_no_executor_knows_waits_enqueued(client: DBOSClient) -> None:
    handle = client.enqueue(_opts(workflow="client.not_deployed_yet"), 1)
    ran = client.enqueue(_opts(), 2)
    assert ran.get_result(timeout_seconds=30)["n"] == 2
    assert handle.get_status().status == ENQUEUED
    with pytest.raises(TimeoutError):
        handle.get_result(timeout_seconds=0.3)


def test_failure_cancel_resume_and_fork(client: DBOSClient) -> None:
    failed = client.enqueue(_opts(workflow="client.fail"), "boom")
    with pytest.raises(ValueError, match="boom"):
        failed.get_result(timeout_seconds=30)
    assert failed.get_status().status == ERROR

    done = client.enqueue(_opts(workflow="client.steps"), 3)
    assert done.get_result(timeout_seconds=30) == 6
    steps_done = client.list_workflow_steps(done.workflow_id)
    assert [s["function_name"] for s in steps_done] == ["step0", "step1", "step2"]
    fork = client.fork_workflow(done.workflow_id, 2, new_workflow_id="forked-1")
    assert fork.workflow_id == "forked-1"
    assert fork.get_result(timeout_seconds=30) == 6  # (taken by the executor's recovery)
    assert client.get_workflow_status("forked-1").forked_from == done.workflow_id  # type: ignore[union-attr]

    # one start a day: the first claimed runs, the other waits until cancelled
    pair = [client.enqueue(_opts(queue="client.held"), n) for n in (1, 2)]
    deadline = time.monotonic() + 30
    while not any(h.get_status().status == SUCCESS for h in pair):
        assert time.monotonic() < deadline, [h.get_status().status for h in pair]
        time.sleep(0.05)
    [queued] = [h for h in pair if h.get_status().status != SUCCESS]
    assert queued.get_status().status == ENQUEUED
    client.cancel_workflow(queued.workflow_id)
    assert queued.get_status().status == CANCELLED

    # a running workflow cancelled in its wait, then resumed: it replays its
    # recorded steps on an executor and waits again
    talker = client.enqueue(_opts(workflow="client.talk"))
    assert client.get_event(talker.workflow_id, "ready", timeout_seconds=30) == "yes"
    client.cancel_workflow(talker.workflow_id)
    with pytest.raises(AwaitedWorkflowCancelledError):
        talker.get_result(timeout_seconds=30)
    resumed = client.resume_workflow(talker.workflow_id)
    assert resumed.get_status().status in (PENDING, ENQUEUED)
    client.send(talker.workflow_id, "after", topic="in")
    assert resumed.get_result(timeout_seconds=30) == "after"
    assert client.resume_workflow(talker.workflow_id).get_status().status == SUCCESS  # (as is)
    with pytest.raises(NonExistentWorkflowError):
        client.retrieve_workflow("client-no-such-workflow")
    with pytest.raises(NonExistentWorkflowError):
        client.fork_workflow("client-no-such-workflow", 0)
    with pytest.raises(ConfigError, match="start_step"):
        client.fork_workflow(done.workflow_id, -1)


def test_messages_events_and_streams(client: DBOSClient) -> None:
    handle = DBOS.start_workflow(talk)
    assert client.get_event(handle.workflow_id, "ready", timeout_seconds=30) == "yes"
    assert list(client.read_stream(handle.workflow_id, "out")) == [1, 2]
    client.send(handle.workflow_id, "hello", topic="in", idempotency_key="k1")
    client.send(handle.workflow_id, "again", topic="in", idempotency_key="k1")  # (not sent)
    assert client.retrieve_workflow(handle.workflow_id).get_result(timeout_seconds=30) == "hello"
    assert client.get_all_events(handle.workflow_id) == {"ready": "yes"}
    assert client.get_event(handle.workflow_id, "never", timeout_seconds=0.1) is None


def test_async_variants(client: DBOSClient) -> None:
    async def main() -> Any:
        handle = await client.enqueue_async(_opts(), 4)
        assert isinstance(handle, WorkflowHandleAsync)
        result = await handle.get_result()
        listed = await client.list_workflows_async(workflow_ids=[handle.workflow_id])
        values = [v async for v in client.read_stream_async(handle.workflow_id, "none")]
        return result, listed, values

    result, listed, values = asyncio.run(main())
    assert result["n"] == 4 and [s.status for s in listed] == [SUCCESS] and values == []


def test_inside_a_workflow_the_client_is_not_a_step(client: DBOSClient) -> None:
    @DBOS.workflow(name="client.caller")
    def caller() -> str:
        return client.enqueue(_opts(), 11).workflow_id

    parent = DBOS.start_workflow(caller)
    child_id = parent.get_result()
    assert DBOS.list_workflow_steps(parent.workflow_id) == []
    child = client.get_workflow_status(child_id)
    assert child is not None and child.parent_workflow_id is None


def test_destroyed_client_and_databases_it_refuses(dbos: Any, db_url: str,
                                                   tmp_path: Any) -> None:
    c = DBOSClient(db_url)
    c.destroy()
    c.destroy()  # (twice is harmless)
    with pytest.raises(NotLaunchedError, match="destroyed"):
        c.enqueue(_opts(), 1)
    with pytest.raises(DatabaseUnreachableError, match="no relos database"):
        DBOSClient(f"sqlite:///{tmp_path}/missing.sqlite")
    assert not os.path.exists(tmp_path / "missing.sqlite")  # (not created either)
    empty = tmp_path / "empty.sqlite"
    import sqlite3

    sqlite3.connect(empty).close()
    with pytest.raises(RelosError, match="no relos schema"):
        DBOSClient(f"sqlite:///{empty}")
    with pytest.raises(ConfigError, match="unknown configuration key"):
        DBOSClient(db_url, no_such_key=1)


def test_a_process_without_the_code_enqueues_and_waits(dbos: Any, db_url: str) -> None:
    """client_script.py imports nothing of this module: it knows the queue and
    the workflow by name only."""
    env = {k: v for k, v in os.environ.items() if k != "RELOS_SYSTEM_DATABASE_URL"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, "client_script.py"), db_url, "client.orders",
         "client.process", "21"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "no workflow code here: True"
    workflow_id, result = lines[1].split(" ", 1)
    assert result == repr({"n": 21, "note": "from a script", "id": workflow_id})
    assert time.monotonic() - started < 120
    assert DBOS.get_workflow_status(workflow_id).status == SUCCESS  # type: ignore[union-attr]


def test_waits_across_processes_are_told_not_polled(launch: Any, db_url: str) -> None:
    """With a 30 s poll interval on both sides, a message, an event and a
    result still cross between the client and the application at once: by
    NOTIFY (PostgreSQL), by each process watching the file's commits (SQLite),
    and for a result by the handle's early re-readings."""
    launch(poll_interval_seconds=30, suspend_after_seconds=None)
    with DBOSClient(db_url, poll_interval_seconds=30) as c:
        started = time.monotonic()
        for _ in range(3):
            handle = DBOS.start_workflow(talk)
            assert c.get_event(handle.workflow_id, "ready", timeout_seconds=60) == "yes"
            c.send(handle.workflow_id, "now", topic="in")
            assert c.retrieve_workflow(handle.workflow_id).get_result() == "now"
        assert time.monotonic() - started < 20  # (polling alone: at least 90 s)
