"""Names users choose (workflow IDs, queue and schedule names, deduplication
IDs, partition keys, topics, event and stream keys) may be up to
``identifiers.MAX_BYTES`` long in UTF-8 on both backends, and one byte more is
a ConfigError naming it, with nothing stored.

The names here are as hard to store as names of that length get: random
characters of one to four bytes, which PostgreSQL cannot compress to fit an
index entry, two of them in the same entry where the schema puts them there.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from relos import DBOS, ConfigError, Queue, SetEnqueueOptions, SetWorkflowID, queues
from relos.identifiers import MAX_BYTES

_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789" + "éßñø" + "€≠∞" + "😀🚀🎉"


def long_name(rng: random.Random, size: int = MAX_BYTES) -> str:
    """A random string of exactly ``size`` bytes in UTF-8."""
    out: list[str] = []
    left = size
    while left > 4:
        c = rng.choice(_CHARS)
        out.append(c)
        left -= len(c.encode())
    out.append("x" * left)
    return "".join(out)


_rng = random.Random(20261202)
LONG_QUEUE = long_name(_rng)
TOPIC, EVENT_KEY, STREAM_KEY = long_name(_rng), long_name(_rng), long_name(_rng)


@DBOS.workflow()
def idlim_talks(reply_to: str) -> str:
    DBOS.set_event(EVENT_KEY, "set")
    DBOS.write_stream(STREAM_KEY, 1)
    DBOS.close_stream(STREAM_KEY)
    DBOS.send(reply_to, "sent", TOPIC)
    return str(DBOS.recv(TOPIC, timeout_seconds=30))


@DBOS.workflow()
def idlim_waits() -> Any:
    return DBOS.recv(TOPIC, timeout_seconds=30)


@DBOS.workflow()
def idlim_ticks(scheduled: Any, actual: Any) -> None:
    pass


def test_names_of_the_longest_length_are_stored_and_used(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The queue is defined for this test only, and this test's runtime serves
    # it alone (a queue left defined would be served by every later test's).
    monkeypatch.setattr(queues, "_queues", dict(queues.registered()))
    long_queue = Queue(LONG_QUEUE, concurrency=2, partition_queue=True)
    DBOS.destroy()
    DBOS(config={"system_database_url": db_url})
    DBOS.listen_queues([long_queue])
    DBOS.launch()
    try:
        _use_the_longest_names(long_queue)
    finally:
        DBOS.destroy()


def _use_the_longest_names(long_queue: Queue) -> None:
    rng = random.Random(7)
    waiter_id, worker_id = long_name(rng), long_name(rng)
    assert len(waiter_id.encode()) == len(worker_id.encode()) == MAX_BYTES
    with SetWorkflowID(waiter_id):
        waiter = DBOS.start_workflow(idlim_waits)
    with SetWorkflowID(worker_id), SetEnqueueOptions(
            deduplication_id=long_name(rng), queue_partition_key=long_name(rng)):
        worker = long_queue.enqueue(idlim_talks, waiter_id)
    assert worker.workflow_id == worker_id
    assert DBOS.get_event(worker_id, EVENT_KEY, timeout_seconds=30) == "set"
    assert waiter.get_result() == "sent"
    DBOS.send(worker_id, "reply", TOPIC)
    assert worker.get_result() == "reply"
    assert list(DBOS.read_stream(worker_id, STREAM_KEY)) == [1]
    assert [s.workflow_id for s in DBOS.list_workflows(queue_name=LONG_QUEUE)] == [worker_id]
    schedule = long_name(rng)
    DBOS.create_schedule(schedule, idlim_ticks, "0 0 1 1 *")
    assert DBOS.get_schedule(schedule).name == schedule


def test_a_name_one_byte_too_long_is_refused_and_nothing_is_stored(dbos: Any) -> None:
    rng = random.Random(11)
    too_long = long_name(rng, MAX_BYTES + 1)
    fits = long_name(rng)
    before = len(DBOS.list_workflows())

    def refused(what: str) -> Any:
        return pytest.raises(ConfigError, match=f"{what} .* is {MAX_BYTES + 1:,} bytes long")

    with refused("the workflow ID"):
        SetWorkflowID(too_long)
    with refused("the queue name"):
        Queue(too_long)
    with refused("the queue name"):
        DBOS.register_queue(too_long)
    with refused("the deduplication_id"):
        SetEnqueueOptions(deduplication_id=too_long)
    with refused("the queue_partition_key"):
        SetEnqueueOptions(queue_partition_key=too_long)
    with refused("the app_version"):
        SetEnqueueOptions(app_version=too_long)
    with refused("the schedule name"):
        DBOS.create_schedule(too_long, idlim_ticks, "0 0 1 1 *")
    with SetWorkflowID(fits):
        handle = DBOS.start_workflow(idlim_waits)
    with refused("the topic"):
        DBOS.send(fits, "x", too_long)
    DBOS.send(fits, "done", TOPIC)
    assert handle.get_result() == "done"
    assert len(DBOS.list_workflows()) == before + 1
    assert DBOS.list_schedules() == [] or all(s.name != too_long
                                              for s in DBOS.list_schedules())


def test_app_version_must_be_a_string() -> None:
    with pytest.raises(ConfigError, match="app_version must be a non-empty string"):
        SetEnqueueOptions(app_version=5)  # type: ignore[arg-type]
