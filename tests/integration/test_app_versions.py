"""Application versions through the public API, on SQLite and PostgreSQL:
each launch records its version, a new version becomes the latest, and only
executors running the latest version dequeue the workflows enqueued without
one, while explicitly versioned work still goes to executors of its version.

The cluster test runs two executors of different versions as real processes
(``version_app.py``) on one database; the others run in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import relos.dbos
from dbhelpers import eventually
from relos import (
    DBOS,
    ENQUEUED,
    SUCCESS,
    ApplicationVersion,
    ApplicationVersionNotFoundError,
    Queue,
    SetEnqueueOptions,
    WorkflowHandle,
)
from relos.store import open_store

APP = Path(__file__).with_name("version_app.py")
DEADLINE = 60.0

version_queue = Queue("vapp")  # also defined by version_app.py


@DBOS.workflow(name="vapp.work")
def work() -> str:
    """version_app.py's processes run their own code under this name."""
    return "this process"


def launch(db_url: str, version: str, *, listen: list[str] | None = None) -> None:
    DBOS.destroy()
    DBOS(config={"system_database_url": db_url, "application_version": version,
                 "executor_lease_seconds": 2, "recovery_interval_seconds": 0.5})
    if listen is not None:
        DBOS.listen_queues(listen)
    DBOS.launch()


@pytest.fixture
def relaunch(db_url: str) -> Iterator[Any]:
    """``relaunch(version, listen=None)``: (re)launch this process's runtime
    on ``db_url`` with that application version; destroyed after the test."""
    try:
        yield lambda version, listen=None: launch(db_url, version, listen=listen)
    finally:
        DBOS.destroy()


def versions() -> list[str]:
    return [v.version_name for v in DBOS.list_application_versions()]


def status(handle: WorkflowHandle[Any]) -> str:
    found = handle.get_status()
    assert found is not None
    return found.status


# --- listing and choosing the latest -------------------------------------------------------


def test_a_launch_records_its_version_as_the_latest(dbos: Any) -> None:
    rt = relos.dbos._runtime
    assert rt is not None
    own = rt.app_version
    [only] = DBOS.list_application_versions()
    assert isinstance(only, ApplicationVersion)
    assert only.version_name == own
    assert only.version_timestamp == only.created_at
    assert abs(only.created_at - time.time() * 1000) < 600_000
    assert DBOS.get_latest_application_version() == only


def test_a_new_version_becomes_latest_and_set_latest_rolls_back(relaunch: Any) -> None:
    relaunch("v1")
    relaunch("v2")
    assert versions() == ["v2", "v1"]
    assert DBOS.get_latest_application_version().version_name == "v2"
    relaunch("v1")  # an old version relaunched does not become the latest
    assert versions() == ["v2", "v1"]

    DBOS.set_latest_application_version("v1")
    assert versions() == ["v1", "v2"]
    latest = DBOS.get_latest_application_version()
    assert latest.version_name == "v1"
    assert latest.version_timestamp > latest.created_at
    DBOS.set_latest_application_version("v2")
    assert versions() == ["v2", "v1"]


def test_set_latest_of_an_unknown_version_names_the_known_ones(relaunch: Any) -> None:
    relaunch("v1")
    relaunch("v2")
    with pytest.raises(ApplicationVersionNotFoundError) as info:
        DBOS.set_latest_application_version("v3")
    message = str(info.value)
    assert "'v3'" in message and "'v1'" in message and "'v2'" in message
    assert isinstance(info.value, LookupError)
    assert versions() == ["v2", "v1"]


def test_a_process_that_dequeues_nothing_does_not_record_its_version(relaunch: Any) -> None:
    relaunch("worker-code")
    relaunch("front-end-code", listen=[])  # only enqueues: not a candidate for latest
    assert versions() == ["worker-code"]


# --- who dequeues unversioned work ---------------------------------------------------------


def test_an_executor_that_is_not_the_latest_leaves_unversioned_work(
    relaunch: Any, db_url: str,
) -> None:
    relaunch("v1")
    # A newer version is deployed elsewhere: its launch records it.
    store = open_store(db_url)
    try:
        store.register_application_version("v2", int(time.time() * 1000))
    finally:
        store.close()
    assert DBOS.get_latest_application_version().version_name == "v2"
    # The executor notices within about a second.
    runner = relos.dbos._runtime.queue_runner  # type: ignore[union-attr]
    assert runner is not None
    eventually(lambda: not runner.runs_latest_version())

    unversioned = version_queue.enqueue(work)
    with SetEnqueueOptions(app_version="v1"):
        mine = version_queue.enqueue(work)
    # Work for this version still runs here ...
    assert mine.get_result() == "this process"
    # ... but not the unversioned work: it waits for a v2 executor. (A fixed
    # wait: this shows something does not happen; the latest version is read
    # at least once a second.)
    time.sleep(2.5)
    assert status(unversioned) == ENQUEUED
    row = DBOS.list_workflows(workflow_ids=[unversioned.workflow_id])[0]
    assert row.app_version is None

    DBOS.set_latest_application_version("v1")  # roll back: this executor takes it now
    assert unversioned.get_result() == "this process"
    assert DBOS.list_workflows(workflow_ids=[unversioned.workflow_id])[0].app_version == "v1"


held_gate = threading.Event()


@DBOS.step()
def vapp_tick() -> None:
    time.sleep(0.01)


@DBOS.workflow(name="vapp.held")
def held(i: int) -> str:
    """The first 200 return at once (their pace makes the executor claim
    ahead of its free threads); the others hold their thread until the gate."""
    while i >= 200 and not held_gate.is_set():
        vapp_tick()
    return "done"


def test_workflows_claimed_but_not_started_go_back_without_the_stopping_versions_stamp(
    relaunch: Any, db_url: str,
) -> None:
    """A deploy: the old version's executor, two threads busy, has claimed
    more of the queue than it started when it is stopped. What it had not
    started goes back unversioned and the new version runs it; what it ran
    keeps the old version (only that code may replay it)."""
    held_gate.clear()
    DBOS.destroy()
    DBOS(config={"system_database_url": db_url, "application_version": "old",
                 "max_workflow_threads": 2})
    DBOS.listen_queues([version_queue])
    DBOS.launch()
    handles = version_queue.enqueue_many(held, [(i,) for i in range(400)])
    runner = relos.dbos._runtime.queue_runner  # type: ignore[union-attr]
    assert runner is not None
    quick = [h.workflow_id for h in handles[:200]]
    eventually(lambda: len(DBOS.list_workflows(workflow_ids=quick, status=SUCCESS)) == 200
               and len(runner._ready) > 0)
    time.sleep(0.3)  # (the thread that ran the last quick one has taken its next)
    # Claimed (so stamped "old"), waiting for a thread that will not free up.
    claimed_ahead = {row.workflow_id for rows in list(runner._ready._queues.values())
                     for row in list(rows)}
    DBOS.destroy()
    store = open_store(db_url)
    try:
        rows = [store.get_workflow(h.workflow_id) for h in handles]
    finally:
        store.close()
    given_back = [r.workflow_id for r in rows if r is not None and r.status == ENQUEUED]
    ran = [r.workflow_id for r in rows if r is not None and r.status != ENQUEUED]
    assert ran and claimed_ahead and claimed_ahead <= set(given_back)
    assert {r.application_version for r in rows if r and r.workflow_id in given_back} == {None}
    assert {r.application_version for r in rows if r and r.workflow_id in ran} == {"old"}

    held_gate.set()
    relaunch("new")
    for wid in given_back:
        assert DBOS.retrieve_workflow(wid).get_result(timeout_seconds=DEADLINE) == "done"
    listed = DBOS.list_workflows(workflow_ids=given_back + ran)
    assert {w.workflow_id: w.app_version for w in listed} == {
        **dict.fromkeys(given_back, "new"), **dict.fromkeys(ran, "old")}


class Workers:
    """version_app.py processes on one database, with a shared log."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.dir = tmp_path
        self.log = tmp_path / "ran.log"
        self.stop = tmp_path / "stop"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, version: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELOS_")}
        n = len(self.procs)
        with open(self.dir / f"w{n}.out", "wb") as out, open(self.dir / f"w{n}.err", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(APP), self.url, version, str(self.log), "--stop",
                 str(self.stop)], stdout=out, stderr=err, env=env, cwd=self.dir)
        self.procs.append(proc)
        self.wait_for(lambda: any(line.startswith("ready ") and line.endswith(f" {proc.pid}")
                                  for line in self.lines()), f"worker {version} to be ready")
        return proc

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def ran(self) -> dict[str, list[str]]:
        """workflow ID -> the versions of the processes that ran its step."""
        found: dict[str, list[str]] = {}
        for line in self.lines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "ran":
                found.setdefault(parts[1], []).append(parts[2])
        return found

    def wait_for(self, check: Any, what: str) -> Any:
        end = time.monotonic() + DEADLINE
        while True:
            value = check()
            if value:
                return value
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    err = (self.dir / f"w{i}.err").read_text(errors="replace")
                    pytest.fail(f"worker {proc.pid} exited ({proc.returncode}) while waiting "
                                f"for {what}:\n{err}")
            if time.monotonic() > end:
                pytest.fail(f"timed out after {DEADLINE}s waiting for {what}")
            time.sleep(0.05)

    def shut_down(self) -> None:
        self.stop.touch()
        for proc in self.procs:
            assert proc.wait(timeout=DEADLINE) == 0

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.slow
def test_two_versions_on_one_database(relaunch: Any, db_url: str, tmp_path: Path) -> None:
    """An old (v1) and a new (v2) executor process: unversioned work goes to
    v2 only, versioned work to its own version; after a rollback to v1,
    unversioned work goes to v1 only."""
    workers = Workers(db_url, tmp_path)
    try:
        workers.start("v1")
        workers.start("v2")  # deployed second: the latest
        relaunch("v2", listen=[])  # this process enqueues, never dequeues
        assert versions() == ["v2", "v1"]

        # Each executor reads the latest version about once a second: the
        # unversioned work is delayed past that, so that v1 does not take it
        # on what it read before v2 launched.
        with SetEnqueueOptions(delay_seconds=2.5):
            unversioned = version_queue.enqueue_many(work, [()] * 20)
        with SetEnqueueOptions(app_version="v1"):
            old = version_queue.enqueue_many(work, [()] * 5)
        with SetEnqueueOptions(app_version="v2"):
            new = version_queue.enqueue_many(work, [()] * 5)
        handles = unversioned + old + new
        assert [h.get_result() for h in unversioned] == ["v2"] * 20
        assert [h.get_result() for h in old] == ["v1"] * 5
        assert [h.get_result() for h in new] == ["v2"] * 5
        ran = workers.ran()
        for h in handles:  # each ran once, in the process of the expected version
            assert ran[h.workflow_id] == [h.get_result()], h.workflow_id
        # The unversioned rows were stamped with the version that dequeued them.
        assert {s.app_version for s in DBOS.list_workflows(
            workflow_ids=[h.workflow_id for h in unversioned])} == {"v2"}

        DBOS.set_latest_application_version("v1")  # roll back
        # Delayed again, so that neither decides on what it read before the rollback.
        with SetEnqueueOptions(delay_seconds=2.5):
            after = version_queue.enqueue_many(work, [()] * 10)
        assert [h.get_result() for h in after] == ["v1"] * 10
        assert {status(h) for h in handles + after} == {SUCCESS}
        ran = workers.ran()
        assert sum(len(v) for v in ran.values()) == len(handles) + len(after)
        workers.shut_down()
    finally:
        workers.close()
