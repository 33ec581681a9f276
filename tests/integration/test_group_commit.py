"""Group commit through the public API: a step's record is held until the
workflow's next durable action or its completion, and the completions of many
concurrent workflows share commits. Both backends."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from dbhelpers import eventually
from relos import DBOS, SUCCESS, Queue, SetWorkflowID

gc_queue = Queue("gc.queue")
side_effects: list[str] = []
release = threading.Event()


@DBOS.step()
def gc_step(tag: str) -> str:
    side_effects.append(tag)
    return tag.upper()


@DBOS.workflow()
def gc_step_then_wait(tag: str) -> str:
    first = gc_step(tag)
    got = DBOS.recv("go", timeout_seconds=30)
    return f"{first}:{got}"


@DBOS.workflow()
def gc_lists_itself(tag: str) -> list[str]:
    gc_step(tag)
    return [s["function_name"] for s in DBOS.list_workflow_steps(DBOS.workflow_id or "")]


@DBOS.workflow()
def gc_one_step(i: int) -> int:
    return int(gc_step(str(i)).lower()) * 10


@DBOS.workflow()
def gc_two_steps_fails(tag: str) -> None:
    gc_step(tag + "-a")
    gc_step(tag + "-b")
    raise ValueError("after two steps")


def _raw(sql: str, *params: Any) -> list[Any]:
    from relos import dbos as facade

    assert facade._runtime is not None
    store: Any = facade._runtime.store
    named = {f"a{i}": v for i, v in enumerate(params)}
    text = sql.replace("{p}", store.prefix)
    for i in range(len(params)):
        text = text.replace("?", store._ph(f"a{i}"), 1)
    return list(store._all(text, named))


def test_a_step_is_recorded_before_the_workflow_waits(dbos: Any) -> None:
    side_effects.clear()
    with SetWorkflowID("gc-wait-1"):
        handle = DBOS.start_workflow(gc_step_then_wait, "x")
    # Blocked in recv (a durable action): the step before it is in the database.
    steps = eventually(lambda: [s for s in DBOS.list_workflow_steps("gc-wait-1")
                                if s["function_name"].endswith("gc_step")])
    assert steps[0]["output"] == "X"
    DBOS.send("gc-wait-1", "now", topic="go")
    assert handle.get_result() == "X:now"
    assert side_effects == ["x"]


def test_a_workflow_listing_its_steps_sees_its_last_one(dbos: Any) -> None:
    names = gc_lists_itself("y")
    assert len(names) == 1 and names[0].endswith("gc_step")


def test_the_last_step_is_recorded_with_the_failure(dbos: Any) -> None:
    with SetWorkflowID("gc-fail-1"):
        handle = DBOS.start_workflow(gc_two_steps_fails, "z")
    with contextlib.suppress(ValueError):
        handle.get_result()
    steps = DBOS.list_workflow_steps("gc-fail-1")
    assert [s["output"] for s in steps] == ["Z-A", "Z-B"]
    assert DBOS.get_workflow_status("gc-fail-1").status == "ERROR"


def test_many_concurrent_one_step_workflows_each_recorded_once(dbos: Any) -> None:
    n = 300
    handles = [gc_queue.enqueue(gc_one_step, i) for i in range(n)]
    assert sorted(h.get_result() for h in handles) == [i * 10 for i in range(n)]
    ids = [h.workflow_id for h in handles]
    for wid in ids[:: 10]:
        assert DBOS.get_workflow_status(wid).status == SUCCESS
        steps = DBOS.list_workflow_steps(wid)
        assert [s["output"] for s in steps] == [str(ids.index(wid))]
    # Each workflow's history: ENQUEUED, then PENDING (claimed), then SUCCESS.
    rows = _raw("SELECT workflow_id, status FROM {p}workflow_status_history "
                      "ORDER BY id")
    per: dict[str, list[str]] = {}
    for wid, status in rows:
        per.setdefault(wid, []).append(status)
    assert all(per[w] == ["ENQUEUED", "PENDING", "SUCCESS"] for w in ids)
    recorded = _raw("SELECT COUNT(*) FROM {p}operation_outputs")[0][0]
    assert recorded == n


def test_a_commit_backlog_past_its_cap_takes_room_from_new_claims(
        dbos: Any, monkeypatch: Any) -> None:
    """Finished workflows waiting for the committer hold no thread, up to
    COMMIT_BACKLOG of them; past it each one counts against the room for new
    workflows, so a runner stops claiming while the database falls behind."""
    from relos.dbos import _rt
    from relos.runtime import runtime as runtime_module
    from relos.runtime.context import WorkflowContext

    monkeypatch.setattr(runtime_module, "COMMIT_BACKLOG", 3)
    rt = _rt()
    threads = rt.config.max_workflow_threads
    assert rt.free_workflow_slots() == threads
    active = [rt.track(WorkflowContext(f"gc-backlog-{i}", "gc_backlog")) for i in range(5)]
    try:
        assert rt.free_workflow_slots() == threads - 5
        assert sorted(rt.running_ids()) == sorted(aw.ctx.workflow_id for aw in active)
        for aw in active:
            rt.release_thread(aw)
        assert rt.free_workflow_slots() == threads - 2  # 5 committing, 3 of them free
        assert rt.running_ids() == []  # no longer asked about external cancels
    finally:
        for aw in active:
            rt.untrack(aw.ctx.workflow_id)
    assert rt.free_workflow_slots() == threads


def test_queue_workflow_threads_leave_their_commits_to_the_committer(
        dbos: Any, monkeypatch: Any) -> None:
    """A workflow thread that runs claimed workflows one after another hands
    each outcome to the committer thread and goes on with the next, even when
    no commit is in flight: were it to commit itself, a process with one free
    thread would run one workflow per commit round trip."""
    from relos.dbos import _rt

    store = _rt().store
    writers: list[str] = []
    batch = store.write_batch

    def write_batch(steps: Any, completions: Any) -> None:
        if completions:
            writers.append(threading.current_thread().name)
        batch(steps, completions)

    monkeypatch.setattr(store, "write_batch", write_batch)
    handles = [gc_queue.enqueue(gc_one_step, i) for i in range(40)]
    assert sorted(h.get_result() for h in handles) == [i * 10 for i in range(40)]
    assert writers and set(writers) == {"relos-commits"}, writers
