"""Self-healing without a control plane: a live executor takes over the
PENDING workflows of a dead one, whatever its executor ID, when the workflows
were started by the same application version."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from dbhelpers import eventually
from relos import DBOS
from relos.serialization import get_serializer
from relos.store import open_store
from relos.store.base import PENDING, SUCCESS, ExecutorRow, WorkflowRow

ran: list[str] = []


@DBOS.step(name="takeover.mark")
def mark(tag: str) -> str:
    ran.append(tag)
    return tag


@DBOS.workflow(name="takeover.work")
def work(tag: str) -> str:
    return mark(tag)


def _eventually(check: Callable[[], Any]) -> Any:
    return eventually(check, timeout=20)


def _orphan(db_url: str, executor_id: str, version: str | None, *, heartbeat_age_ms: int
            ) -> str:
    """A PENDING workflow owned by an executor on another host, registered with
    a heartbeat ``heartbeat_age_ms`` old."""
    store = open_store(db_url)
    try:
        now = int(time.time() * 1000)
        instance = f"instance-{uuid.uuid4().hex[:8]}"
        store.register_executor(ExecutorRow(instance, executor_id, version, "elsewhere", 1,
                                            now - 60_000, now - heartbeat_age_ms))
        wid = f"takeover-{uuid.uuid4().hex[:8]}"
        tag = f"{executor_id}:{wid}"
        inputs = get_serializer("json").dumps({"args": [tag], "kwargs": {}})
        assert store.insert_workflow(WorkflowRow(
            workflow_id=wid, status=PENDING, name="takeover.work", executor_id=executor_id,
            created_at=now, updated_at=now, inputs=inputs, owner=instance,
            application_version=version)) is None
        return wid
    finally:
        store.close()


def _version() -> str:
    from relos import dbos as facade

    assert facade._runtime is not None
    return facade._runtime.app_version


def test_dead_executor_of_another_id_is_taken_over(dbos: Any, db_url: str) -> None:
    wid = _orphan(db_url, "host-a", _version(), heartbeat_age_ms=60_000)
    _eventually(lambda: DBOS.get_workflow_status(wid).status == SUCCESS)
    status = DBOS.get_workflow_status(wid)
    assert status.executor_id == "local"  # now run by this executor
    assert ran.count(f"host-a:{wid}") == 1


def test_live_executor_keeps_its_workflows(dbos: Any, db_url: str) -> None:
    wid = _orphan(db_url, "host-b", _version(), heartbeat_age_ms=0)
    time.sleep(1.5)  # three recovery scans of the fixture's runtime (every 0.5 s)
    assert DBOS.get_workflow_status(wid).status == PENDING
    assert f"host-b:{wid}" not in ran


def test_other_version_is_left_for_its_own_executors(dbos: Any, db_url: str) -> None:
    wid = _orphan(db_url, "host-c", "some-other-version", heartbeat_age_ms=60_000)
    time.sleep(1.5)
    assert DBOS.get_workflow_status(wid).status == PENDING
    # Forking onto this version is how a deploy moves such a workflow on.
    handle = DBOS.fork_workflow(wid, 0, application_version=_version())
    assert handle.get_result(timeout_seconds=20) == f"host-c:{wid}"


def test_workflows_recovered_at_launch_find_the_runtime(db_url: str) -> None:
    """Recovery starts workflows from a background thread while launch is still
    returning; they must never see 'not launched' (they would stay PENDING)."""
    DBOS.destroy()
    DBOS(config={"system_database_url": db_url})
    DBOS.launch()
    version = _version()
    DBOS.destroy()
    store = open_store(db_url)
    ids = []
    try:
        now = int(time.time() * 1000)
        for i in range(20):
            wid = f"launch-race-{i}-{uuid.uuid4().hex[:6]}"
            inputs = get_serializer("json").dumps({"args": [wid], "kwargs": {}})
            assert store.insert_workflow(WorkflowRow(
                workflow_id=wid, status=PENDING, name="takeover.work", executor_id="local",
                created_at=now, updated_at=now, inputs=inputs, owner="gone-" + wid,
                application_version=version)) is None
            ids.append(wid)
    finally:
        store.close()
    DBOS(config={"system_database_url": db_url})
    DBOS.launch()
    try:
        assert [DBOS.retrieve_workflow(w).get_result(timeout_seconds=20) for w in ids] == ids
    finally:
        DBOS.destroy()



def _stays_alive(db_url: str, seconds: float) -> None:
    """Launch with a lease of 0.4 s; for ``seconds`` after the launch, this
    executor is judged alive, in the database's time, as other executors
    judge it."""
    from relos import dbos as facade
    from relos.runtime import liveness

    DBOS.destroy()
    DBOS(config={"system_database_url": db_url, "executor_lease_seconds": 0.4})
    DBOS.launch()
    try:
        rt = facade._runtime
        assert rt is not None
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            [me] = [r for r in rt.store.get_executors() if r.instance_id == rt.instance_id]
            now = rt.store.clock_ms()
            assert abs(now - time.time() * 1000) < 5_000  # (the database runs on this host)
            assert liveness.state(me, now, 0.4) == "live", now - me.heartbeat_at
            time.sleep(0.05)
    finally:
        DBOS.destroy()


def test_the_heartbeat_keeps_its_pace_whatever_holds_up_other_maintenance(
        db_url: str, monkeypatch: Any) -> None:
    """A lease of 0.4 s is kept (four heartbeats a lease) even while this
    process's maintenance work is stuck for seconds (a long recovery pass, a
    slow cancel check): a heartbeat held up by it would let other executors
    take over the workflows still running here."""
    from relos.runtime.runtime import Runtime

    stuck: list[float] = []

    def slow_check(self: Runtime) -> None:
        stuck.append(time.monotonic())
        time.sleep(2.0)

    monkeypatch.setattr(Runtime, "_notice_external_cancels", slow_check)
    _stays_alive(db_url, 3.0)
    assert stuck  # (the maintenance thread was stuck meanwhile)


def test_heartbeats_are_the_databases_time_whatever_the_hosts_clock(
        db_url: str, monkeypatch: Any) -> None:
    """An executor on a host whose clock is an hour behind still beats in the
    database's time: judged by it (as every executor and `relos executors`
    judge), it is alive, not an hour dead (its workflows taken over while it
    runs them); nor, a clock ahead, alive an hour after it died."""
    from relos.runtime import runtime as runtime_module

    real = runtime_module.now_ms
    monkeypatch.setattr(runtime_module, "now_ms", lambda: real() - 3_600_000)
    _stays_alive(db_url, 1.0)
