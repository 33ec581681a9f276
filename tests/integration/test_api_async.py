"""``async def`` workflows and steps and the ``*_async`` API, on both backends.
Each test drives its coroutines with ``asyncio.run``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from relos import (
    DBOS,
    ERROR,
    SUCCESS,
    AwaitedWorkflowCancelledError,
    SetWorkflowID,
    WorkflowHandleAsync,
)

calls: Counter[str] = Counter()


class ApiAsyncBoom(Exception):
    pass


@DBOS.step()
async def apiasync_fetch(x: int) -> int:
    calls["fetch"] += 1
    await asyncio.sleep(0)
    return x + 100


@DBOS.step()
def apiasync_sync_step(x: int) -> int:
    calls["sync_step"] += 1
    return x * 10


@DBOS.workflow()
async def apiasync_wf(x: int) -> dict[str, Any]:
    a = await apiasync_fetch(x)  # 0
    b = apiasync_sync_step(x)  # 1
    c = await DBOS.run_step_async(apiasync_fetch_plain, x)  # 2
    return {"a": a, "b": b, "c": c, "id": DBOS.workflow_id}


async def apiasync_fetch_plain(x: int) -> int:
    calls["plain"] += 1
    return -x


@DBOS.workflow()
async def apiasync_fail(message: str) -> None:
    await asyncio.sleep(0)
    raise ApiAsyncBoom(message)


@DBOS.workflow()
async def apiasync_sleeper(seconds: float) -> float:
    start = time.monotonic()
    await DBOS.sleep_async(seconds)
    return time.monotonic() - start


@DBOS.workflow()
async def apiasync_receiver(timeout: float) -> list[Any]:
    await DBOS.set_event_async("status", "waiting")
    first = await DBOS.recv_async("topic", timeout_seconds=timeout)
    second = await DBOS.recv_async("topic", timeout_seconds=0.1)
    await DBOS.set_event_async("status", "done")
    return [first, second]


@DBOS.workflow()
async def apiasync_sender(destination: str, message: Any) -> None:
    await DBOS.send_async(destination, message, topic="topic")


@DBOS.workflow()
async def apiasync_event_reader(workflow_id: str) -> Any:
    return await DBOS.get_event_async(workflow_id, "status", timeout_seconds=10)


@DBOS.workflow()
async def apiasync_parent(x: int) -> list[Any]:
    child = await apiasync_wf(x)
    handle = await DBOS.start_workflow_async(apiasync_wf, x + 1)
    other = await handle.get_result()
    return [child["id"], other["id"]]


@DBOS.workflow()
async def apiasync_blocked() -> Any:
    return await DBOS.recv_async("never", timeout_seconds=30)


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


def test_async_workflow_direct_call(dbos: Any) -> None:
    wid = "apiasync-direct-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        got = asyncio.run(apiasync_wf(1))
    assert got == {"a": 101, "b": 10, "c": -1, "id": wid}
    assert calls == Counter({"fetch": 1, "sync_step": 1, "plain": 1})
    steps = DBOS.list_workflow_steps(wid)
    assert [(s["function_id"], s["function_name"], s["output"]) for s in steps] == [
        (0, "apiasync_fetch", 101), (1, "apiasync_sync_step", 10),
        (2, "apiasync_fetch_plain", -1),
    ]
    # Idempotent by ID, like sync workflows.
    with SetWorkflowID(wid):
        assert asyncio.run(apiasync_wf(1)) == got
    assert calls == Counter({"fetch": 1, "sync_step": 1, "plain": 1})


def test_start_workflow_async_and_handle(dbos: Any) -> None:
    async def main() -> tuple[Any, Any, Any]:
        handle = await DBOS.start_workflow_async(apiasync_wf, 2)
        assert isinstance(handle, WorkflowHandleAsync)
        result = await handle.get_result()
        status = await handle.get_status()
        retrieved = await DBOS.retrieve_workflow_async(handle.workflow_id)
        again = await retrieved.get_result()
        return result, status, again

    result, status, again = asyncio.run(main())
    assert result["a"] == 102 and result["b"] == 20 and result["c"] == -2
    assert again == result
    assert status.status == SUCCESS
    assert status.name == "apiasync_wf"
    assert status.output == result


def test_async_workflow_started_with_sync_start_workflow(dbos: Any) -> None:
    handle = DBOS.start_workflow(apiasync_wf, 3)
    result = handle.get_result()
    assert result == {"a": 103, "b": 30, "c": -3, "id": handle.workflow_id}
    assert handle.get_status().status == SUCCESS


def test_async_workflow_error_keeps_its_type(dbos: Any) -> None:
    with pytest.raises(ApiAsyncBoom, match="direct"):
        asyncio.run(apiasync_fail("direct"))

    async def main() -> str:
        handle = await DBOS.start_workflow_async(apiasync_fail, "started")
        try:
            await handle.get_result()
        except ApiAsyncBoom as exc:
            return f"{handle.workflow_id}:{exc}"
        return "no error"

    wid, _, message = asyncio.run(main()).partition(":")
    assert message == "started"
    status = DBOS.get_workflow_status(wid)
    assert status is not None and status.status == ERROR
    assert isinstance(status.error, ApiAsyncBoom)


def test_sleep_async_is_durable(dbos: Any) -> None:
    wid = "apiasync-sleep-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        slept = asyncio.run(apiasync_sleeper(0.2))
    assert slept >= 0.19
    [step] = DBOS.list_workflow_steps(wid)
    assert step["function_name"] == "DBOS.sleep"
    assert step["wake_up_at_epoch_ms"] is not None


def test_send_recv_and_events_async(dbos: Any) -> None:
    async def main() -> tuple[Any, Any, Any, Any]:
        receiver = await DBOS.start_workflow_async(apiasync_receiver, 10)
        waiting = await DBOS.get_event_async(receiver.workflow_id, "status", timeout_seconds=10)
        await DBOS.send_async(receiver.workflow_id, {"hello": "async"}, topic="topic")
        result = await receiver.get_result()
        events = await DBOS.get_all_events_async(receiver.workflow_id)
        from_wf = await apiasync_event_reader(receiver.workflow_id)
        return waiting, result, events, from_wf

    waiting, result, events, from_wf = asyncio.run(main())
    assert waiting == "waiting"
    assert result == [{"hello": "async"}, None]
    assert events == {"status": "done"}
    assert from_wf == "done"


def test_send_async_from_an_async_workflow(dbos: Any) -> None:
    async def main() -> Any:
        receiver = await DBOS.start_workflow_async(apiasync_receiver, 10)
        await apiasync_sender(receiver.workflow_id, "from a workflow")
        return await receiver.get_result()

    assert asyncio.run(main()) == ["from a workflow", None]


def test_async_child_workflows(dbos: Any) -> None:
    wid = "apiasync-parent-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert asyncio.run(apiasync_parent(1)) == [f"{wid}-0", f"{wid}-1"]
    for child in (f"{wid}-0", f"{wid}-1"):
        status = DBOS.get_workflow_status(child)
        assert status is not None and status.parent_workflow_id == wid
        assert status.status == SUCCESS


def test_cancel_async_workflow(dbos: Any) -> None:
    async def main() -> str:
        handle = await DBOS.start_workflow_async(apiasync_blocked)
        start = time.monotonic()
        await DBOS.cancel_workflow_async(handle.workflow_id)
        try:
            await handle.get_result()
        except AwaitedWorkflowCancelledError:
            assert time.monotonic() - start < 5
            status = await handle.get_status()
            return status.status
        return "not cancelled"

    assert asyncio.run(main()) == "CANCELLED"


def test_async_management_api(dbos: Any) -> None:
    async def main() -> tuple[Any, Any, Any]:
        handle = await DBOS.start_workflow_async(apiasync_wf, 4)
        await handle.get_result()
        listed = await DBOS.list_workflows_async(name="apiasync_wf")
        steps = await DBOS.list_workflow_steps_async(handle.workflow_id)
        with SetWorkflowID(handle.workflow_id + "-fork"):
            fork = await DBOS.fork_workflow_async(handle.workflow_id, 2)
            other_fork = await DBOS.fork_workflow_async(handle.workflow_id, 3)
        assert fork.workflow_id == handle.workflow_id + "-fork"
        assert other_fork.workflow_id != fork.workflow_id
        assert (await other_fork.get_result())["c"] == -4
        forked = await fork.get_result()
        status = await DBOS.get_workflow_status_async(fork.workflow_id)
        return listed, steps, (forked, status)

    listed, steps, (forked, status) = asyncio.run(main())
    assert [s.name for s in listed] == ["apiasync_wf"]
    assert len(steps) == 3
    assert forked["a"] == 104 and forked["id"] == status.workflow_id
    assert status.forked_from == listed[0].workflow_id
    assert calls["fetch"] == 1  # replayed in the fork
    assert calls["plain"] == 2  # step 2 ran again


def test_set_workflow_id_applies_to_the_next_async_start_only(dbos: Any) -> None:
    wid = "apiasync-once-" + uuid.uuid4().hex

    async def main() -> list[Any]:
        with SetWorkflowID(wid):
            first = await DBOS.start_workflow_async(apiasync_wf, 1)
            second = await DBOS.start_workflow_async(apiasync_wf, 2)
            direct = await apiasync_wf(3)
        return [first.workflow_id, await first.get_result(), second.workflow_id,
                await second.get_result(), direct]

    first_id, first, second_id, second, direct = asyncio.run(main())
    assert first_id == wid and first["a"] == 101
    assert second_id != wid and second["a"] == 102
    assert direct["id"] not in (wid, second_id) and direct["a"] == 103
    assert len(DBOS.list_workflows(name="apiasync_wf")) == 3
