"""Durable sleep, messages, events and streams through the public API, on both
backends."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from relos import (
    DBOS,
    SUCCESS,
    NonExistentWorkflowError,
    RelosError,
    SetWorkflowID,
)

calls: Counter[str] = Counter()


@DBOS.workflow()
def apicomm_sleeper(seconds: float) -> float:
    start = time.monotonic()
    DBOS.sleep(seconds)
    return time.monotonic() - start


@DBOS.workflow()
def apicomm_receiver(topic: str | None, count: int, timeout: float) -> list[Any]:
    return [DBOS.recv(topic, timeout_seconds=timeout) for _ in range(count)]


@DBOS.workflow()
def apicomm_two_topics() -> dict[str, Any]:
    DBOS.set_event("ready", True)
    b = DBOS.recv("b", timeout_seconds=10)
    a = DBOS.recv("a", timeout_seconds=10)
    default = DBOS.recv(timeout_seconds=10)
    return {"a": a, "b": b, "default": default}


@DBOS.workflow()
def apicomm_sender(destination: str, messages: list[Any], topic: str) -> None:
    for m in messages:
        DBOS.send(destination, m, topic=topic)


@DBOS.workflow()
def apicomm_publisher(values: dict[str, Any]) -> str:
    for key, value in values.items():
        DBOS.set_event(key, value)
    DBOS.recv("finish", timeout_seconds=10)
    return "published"


@DBOS.workflow()
def apicomm_event_reader(workflow_id: str, key: str, timeout: float) -> Any:
    return DBOS.get_event(workflow_id, key, timeout_seconds=timeout)


@DBOS.workflow()
def apicomm_late_publisher() -> None:
    DBOS.recv("go", timeout_seconds=10)
    DBOS.set_event("late", "finally")


@DBOS.step()
def apicomm_event_in_step(value: Any) -> None:
    DBOS.set_event("from-step", value)


@DBOS.workflow()
def apicomm_event_from_step() -> None:
    apicomm_event_in_step("step value")
    DBOS.set_event("from-workflow", 1)
    DBOS.set_event("from-workflow", 2)


@DBOS.step()
def apicomm_stream_in_step(value: Any) -> None:
    DBOS.write_stream("from-step", value)


@DBOS.workflow()
def apicomm_history_for_fork() -> str:
    apicomm_event_in_step("step value")  # 0
    DBOS.set_event("body", "b")  # 1
    apicomm_stream_in_step("streamed in a step")  # 2
    DBOS.write_stream("body", "streamed in the body")  # 3
    calls["history_tail"] += 1
    DBOS.set_event("tail", calls["history_tail"])  # 4
    return "done"


@DBOS.workflow()
def apicomm_streamer(n: int) -> int:
    for i in range(n):
        DBOS.recv("go", timeout_seconds=10)  # paced by the test
        DBOS.write_stream("numbers", {"i": i})
    DBOS.close_stream("numbers")
    return n


@DBOS.workflow()
def apicomm_stream_no_close(values: list[Any]) -> None:
    for v in values:
        DBOS.write_stream("s", v)


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


# --- sleep -----------------------------------------------------------------------------


def test_sleep_is_recorded_as_a_step(dbos: Any) -> None:
    wid = "apicomm-sleep-" + uuid.uuid4().hex
    before = int(time.time() * 1000)
    with SetWorkflowID(wid):
        slept = apicomm_sleeper(0.3)
    assert slept >= 0.29
    [step] = DBOS.list_workflow_steps(wid)
    assert step["function_id"] == 0
    assert step["function_name"] == "DBOS.sleep"
    wake = step["wake_up_at_epoch_ms"]
    assert before + 300 <= wake <= int(time.time() * 1000)
    # Outside a workflow DBOS.sleep is a plain sleep.
    start = time.monotonic()
    DBOS.sleep(0.05)
    assert time.monotonic() - start >= 0.049


def test_sleep_replayed_by_fork_does_not_sleep_again(dbos: Any) -> None:
    wid = "apicomm-sleep-fork-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        apicomm_sleeper(0.5)
    start = time.monotonic()
    fork = DBOS.fork_workflow(wid, 1)
    assert fork.get_result() < 0.4  # the recorded wake-up time has passed
    assert time.monotonic() - start < 5
    assert DBOS.list_workflow_steps(fork.workflow_id)[0]["function_name"] == "DBOS.sleep"


# --- send / recv -----------------------------------------------------------------------


def test_send_recv_fifo_on_a_topic(dbos: Any) -> None:
    handle = DBOS.start_workflow(apicomm_receiver, "t", 3, 10)
    for i in range(3):
        DBOS.send(handle.workflow_id, {"n": i}, topic="t")
    assert handle.get_result() == [{"n": 0}, {"n": 1}, {"n": 2}]
    steps = DBOS.list_workflow_steps(handle.workflow_id)
    recvs = [s for s in steps if s["function_name"] == "DBOS.recv"]
    assert [s["output"] for s in recvs] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_messages_sent_before_recv_wait_for_it(dbos: Any) -> None:
    handle = DBOS.start_workflow(apicomm_two_topics)
    assert DBOS.get_event(handle.workflow_id, "ready", timeout_seconds=10) is True
    DBOS.send(handle.workflow_id, "to a", topic="a")
    DBOS.send(handle.workflow_id, "to default")
    DBOS.send(handle.workflow_id, "to b", topic="b")
    assert handle.get_result() == {"a": "to a", "b": "to b", "default": "to default"}


def test_send_wakes_a_waiting_recv_promptly(dbos: Any) -> None:
    # A message sent while the receiver is between its read and its wait must
    # still wake it: each round trip is far below the poll interval (1 s on
    # PostgreSQL, where waiters rely on wake-ups).
    handle = DBOS.start_workflow(apicomm_streamer, 8)
    it = DBOS.read_stream(handle.workflow_id, "numbers")
    slowest = 0.0
    for _ in range(8):
        start = time.monotonic()
        DBOS.send(handle.workflow_id, None, topic="go")
        next(it)
        slowest = max(slowest, time.monotonic() - start)
    assert handle.get_result() == 8
    assert slowest < 0.9


def test_recv_timeout_returns_none(dbos: Any) -> None:
    start = time.monotonic()
    assert apicomm_receiver("nothing", 1, 0.3) == [None]
    assert time.monotonic() - start >= 0.29


def test_send_from_a_workflow(dbos: Any) -> None:
    receiver = DBOS.start_workflow(apicomm_receiver, "wf", 2, 10)
    apicomm_sender(receiver.workflow_id, ["x", "y"], "wf")
    assert receiver.get_result() == ["x", "y"]


def test_recv_outside_a_workflow_is_a_clear_error(dbos: Any) -> None:
    with pytest.raises(RelosError, match="recv must be called from a workflow"):
        DBOS.recv("t", timeout_seconds=0.1)


def test_send_to_unknown_workflow(dbos: Any) -> None:
    with pytest.raises(NonExistentWorkflowError):
        DBOS.send("apicomm-nobody-" + uuid.uuid4().hex, "hello")


def test_send_idempotency_key_dedupes(dbos: Any) -> None:
    handle = DBOS.start_workflow(apicomm_receiver, None, 2, 0.5)
    DBOS.send(handle.workflow_id, "once", idempotency_key="k1")
    DBOS.send(handle.workflow_id, "once", idempotency_key="k1")
    assert handle.get_result() == ["once", None]


# --- events ----------------------------------------------------------------------------


def test_set_event_get_event_and_get_all_events(dbos: Any) -> None:
    handle = DBOS.start_workflow(apicomm_publisher, {"a": 1, "b": {"nested": [1, 2]}})
    assert DBOS.get_event(handle.workflow_id, "a", timeout_seconds=10) == 1
    assert DBOS.get_event(handle.workflow_id, "b", timeout_seconds=10) == {"nested": [1, 2]}
    assert DBOS.get_all_events(handle.workflow_id) == {"a": 1, "b": {"nested": [1, 2]}}
    start = time.monotonic()
    assert DBOS.get_event(handle.workflow_id, "missing", timeout_seconds=0.3) is None
    assert time.monotonic() - start >= 0.29
    DBOS.send(handle.workflow_id, None, topic="finish")
    assert handle.get_result() == "published"
    names = [s["function_name"] for s in DBOS.list_workflow_steps(handle.workflow_id)]
    assert names[:2] == ["DBOS.setEvent", "DBOS.setEvent"]


def test_get_event_from_inside_another_workflow(dbos: Any) -> None:
    publisher = DBOS.start_workflow(apicomm_publisher, {"k": "v"})
    wid = "apicomm-reader-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apicomm_event_reader(publisher.workflow_id, "k", 10) == "v"
    steps = DBOS.list_workflow_steps(wid)
    assert steps[0]["function_name"] == "DBOS.getEvent"
    assert steps[0]["output"] == "v"
    # A timed-out get_event inside a workflow records None.
    with SetWorkflowID(wid + "-timeout"):
        assert apicomm_event_reader(publisher.workflow_id, "nope", 0.2) is None
    DBOS.send(publisher.workflow_id, None, topic="finish")
    publisher.get_result()


def test_get_event_waits_for_the_event(dbos: Any) -> None:
    handle = DBOS.start_workflow(apicomm_late_publisher)
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(
        DBOS.get_event(handle.workflow_id, "late", timeout_seconds=10)))
    reader.start()
    try:
        assert got == []  # nothing published yet: the reader waits
        DBOS.send(handle.workflow_id, None, topic="go")
    finally:
        reader.join(timeout=15)
    assert got == ["finally"]
    assert handle.get_result() is None


def test_set_event_from_a_step_and_latest_value_wins(dbos: Any) -> None:
    wid = "apicomm-step-event-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        apicomm_event_from_step()
    assert DBOS.get_all_events(wid) == {"from-step": "step value", "from-workflow": 2}


def test_fork_keeps_events_and_streams_written_before_the_start_step(dbos: Any) -> None:
    wid = "apicomm-fork-history-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        apicomm_history_for_fork()
    fork = DBOS.fork_workflow(wid, 4)
    assert fork.get_result() == "done"
    assert list(DBOS.read_stream(fork.workflow_id, "body")) == ["streamed in the body"]
    assert list(DBOS.read_stream(fork.workflow_id, "from-step")) == ["streamed in a step"]
    events = DBOS.get_all_events(fork.workflow_id)
    assert events["body"] == "b" and events["tail"] == 2


def test_fork_keeps_events_set_inside_replayed_steps(dbos: Any) -> None:
    wid = "apicomm-fork-step-event-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        apicomm_history_for_fork()
    fork = DBOS.fork_workflow(wid, 4)
    assert fork.get_result() == "done"
    assert DBOS.get_all_events(fork.workflow_id).get("from-step") == "step value"


def test_set_event_outside_a_workflow_is_an_error(dbos: Any) -> None:
    with pytest.raises(RelosError, match="set_event"):
        DBOS.set_event("k", 1)


# --- streams ---------------------------------------------------------------------------


def test_read_stream_while_the_workflow_writes(dbos: Any) -> None:
    handle = DBOS.start_workflow(apicomm_streamer, 4)
    read: list[Any] = []
    it = DBOS.read_stream(handle.workflow_id, "numbers")
    for i in range(4):
        DBOS.send(handle.workflow_id, None, topic="go")
        read.append(next(it))
        assert read[-1] == {"i": i}
    with pytest.raises(StopIteration):
        next(it)  # the stream was closed
    assert handle.get_result() == 4
    assert list(DBOS.read_stream(handle.workflow_id, "numbers")) == [{"i": i} for i in range(4)]
    names = [s["function_name"] for s in DBOS.list_workflow_steps(handle.workflow_id)]
    assert names.count("DBOS.writeStream") == 4
    assert names[-1] == "DBOS.closeStream"


def test_read_stream_ends_when_the_workflow_ends_without_close(dbos: Any) -> None:
    handle = DBOS.start_workflow(apicomm_stream_no_close, [1, "two", None, [3]])
    assert list(DBOS.read_stream(handle.workflow_id, "s")) == [1, "two", None, [3]]
    assert handle.get_status().status == SUCCESS
    assert list(DBOS.read_stream(handle.workflow_id, "other-key")) == []


def test_write_stream_outside_a_workflow_is_an_error(dbos: Any) -> None:
    with pytest.raises(RelosError, match="write_stream"):
        DBOS.write_stream("k", 1)


def test_read_stream_of_unknown_workflow(dbos: Any) -> None:
    with pytest.raises(NonExistentWorkflowError):
        list(DBOS.read_stream("apicomm-nobody-" + uuid.uuid4().hex, "k"))
