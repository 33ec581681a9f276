"""``relos queue list|set|reset`` and ``relos executors``, run for real in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from relos import DBOS, Queue
from relos.store import open_store
from relos.store.base import ExecutorRow

cli_queue = Queue("cli_cluster.q", concurrency=4, worker_concurrency=2,
                  limiter={"limit": 5, "period": 60}, priority_enabled=True)
one_at_a_time = Queue("cli_cluster.one", worker_concurrency=1)


@DBOS.workflow(name="cli_cluster.add")
def add(a: int, b: int, *, times: int = 1) -> dict[str, int]:
    if a < 0:
        raise ValueError(f"no negative numbers: {a}")
    return {"sum": (a + b) * times}


@DBOS.workflow(name="cli_cluster.wait")
def wait_for_go() -> str:
    return str(DBOS.recv("go", timeout_seconds=60))


def relos(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``relos ARGS`` on ``url`` (given by --database-url, or by the
    environment after a ``--``, past which options are arguments)."""
    env = {k: v for k, v in os.environ.items() if k != "RELOS_SYSTEM_DATABASE_URL"}
    env["COLUMNS"] = "160"
    if "--" in args:
        env["RELOS_SYSTEM_DATABASE_URL"] = url
    else:
        args = (*args, "--database-url", url)
    return subprocess.run([sys.executable, "-m", "relos.cli", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_queue_list_shows_limits_and_depths(dbos: Any, db_url: str) -> None:
    handles = [cli_queue.enqueue(wait_for_go) for _ in range(3)]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # worker_concurrency=2: two run, one waits
        if sum(h.get_status().status == "PENDING" for h in handles) == 2:
            break
        time.sleep(0.05)
    done = relos(db_url, "queue", "list", "--json")
    assert done.returncode == 0, done.stderr
    [row] = [q for q in json.loads(done.stdout) if q["name"] == "cli_cluster.q"]
    assert row["concurrency"] == 4 and row["worker_concurrency"] == 2
    assert row["rate_limit"] == 5 and row["rate_period_seconds"] == 60
    assert row["priority_enabled"] is True and row["defined_by"] == "code"
    assert (row["running"], row["enqueued"]) == (2, 1)
    assert row["started_in_period"] == 2  # what the limiter counts in its 60 s
    waited = time.time() - min(h.get_status().created_at for h in handles) / 1000
    assert 0 <= row["longest_wait_seconds"] <= waited + 1  # (the third, still queued)
    table = relos(db_url, "queue", "list")
    assert table.returncode == 0 and "cli_cluster.q" in table.stdout
    assert "2 of 5 / 60 s" in table.stdout
    assert "Longest wait" in table.stdout and " s " in table.stdout
    for h in handles:
        DBOS.send(h.workflow_id, "go", topic="go")
    assert [h.get_result() for h in handles] == ["go"] * 3
    done = relos(db_url, "queue", "list", "--json")
    [row] = [q for q in json.loads(done.stdout) if q["name"] == "cli_cluster.q"]
    assert row["longest_wait_seconds"] is None  # nothing waits now


def test_executors_lists_live_dead_and_stopped(dbos: Any, db_url: str) -> None:
    store = open_store(db_url)
    try:
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()  # a PID that no longer exists on this host
        now = int(time.time() * 1000)
        store.register_executor(ExecutorRow("dead-one", "local", "v1", os.uname().nodename,
                                            gone.pid, now, now))
        store.register_executor(ExecutorRow("far-away", "local", "v1", "another-host",
                                            4242, now - 60_000, now - 60_000))
        store.register_executor(ExecutorRow("stopped-one", "local", "v1", "another-host",
                                            4243, now, now, stopped_at=now))
        store.register_executor(ExecutorRow("front-end", "local", "v1", "another-host",
                                            4244, now, now, queues="[]"))
        store.register_executor(ExecutorRow("mailer", "local", "v1", "another-host",
                                            4245, now, now, queues='["mail", "sms"]'))
    finally:
        store.close()
    done = relos(db_url, "executors", "--json", "--all")
    assert done.returncode == 0, done.stderr
    states = {e["instance_id"]: e["state"] for e in json.loads(done.stdout)}
    assert states["dead-one"] == "dead"        # same host, process gone
    assert states["far-away"] == "dead"        # other host, heartbeat older than the lease
    assert states["stopped-one"] == "stopped"
    assert "live" in states.values()           # this test's own runtime
    served = {e["instance_id"]: e["queues"] for e in json.loads(done.stdout)}
    assert served["front-end"] == [] and served["mailer"] == ["mail", "sms"]
    assert served["dead-one"] is None          # every queue its code defines
    default = relos(db_url, "executors", "--json")
    assert "stopped-one" not in {e["instance_id"] for e in json.loads(default.stdout)}
    table = relos(db_url, "executors")
    assert table.returncode == 0 and "dead" in table.stdout
    assert "mail, sms" in table.stdout and "none (enqueues only)" in table.stdout


def _running(handles: list[Any]) -> int:
    return sum(h.get_status().status == "PENDING" for h in handles)


def _until(predicate: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_queue_set_changes_the_limits_a_running_executor_obeys(dbos: Any, db_url: str) -> None:
    handles = [one_at_a_time.enqueue(wait_for_go) for _ in range(3)]
    _until(lambda: _running(handles) == 1, "the first workflow to start")
    time.sleep(0.3)
    assert _running(handles) == 1  # worker_concurrency=1, from the code
    done = relos(db_url, "queue", "set", "cli_cluster.one", "--worker-concurrency", "3",
                 "--rate", "100/60")
    assert done.returncode == 0, done.stderr
    assert "worker_concurrency=3" in done.stdout and "'limit': 100" in done.stdout
    _until(lambda: _running(handles) == 3, "the change to reach the executor")
    [row] = [q for q in json.loads(relos(db_url, "queue", "list", "--json").stdout)
             if q["name"] == "cli_cluster.one"]
    assert (row["worker_concurrency"], row["rate_limit"], row["rate_period_seconds"],
            row["defined_by"]) == (3, 100, 60, "runtime")
    # (the limiter counts the starts made since it exists: the first was before)
    assert row["started_in_period"] == 2
    for h in handles:
        DBOS.send(h.workflow_id, "go", topic="go")
    assert [h.get_result() for h in handles] == ["go"] * 3
    # Options left out keep their values; 'none' lifts a limit.
    done = relos(db_url, "queue", "set", "cli_cluster.one", "--rate", "none", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "name": "cli_cluster.one", "concurrency": None, "worker_concurrency": 3,
        "rate_limit": None, "rate_period_seconds": None, "priority_enabled": False,
        "partitioned": False, "defined_by": "runtime"}
    # reset: the code's limits come back at the next launch.
    done = relos(db_url, "queue", "reset", "cli_cluster.one")
    assert done.returncode == 0 and "next launch" in done.stdout, done.stderr
    DBOS.destroy()
    DBOS(config={"system_database_url": db_url, "log_level": "WARNING"})
    DBOS.launch()
    [row] = [q for q in json.loads(relos(db_url, "queue", "list", "--json").stdout)
             if q["name"] == "cli_cluster.one"]
    assert (row["worker_concurrency"], row["defined_by"]) == (1, "code")


def test_queue_set_refuses_bad_input_and_changes_nothing(dbos: Any, db_url: str) -> None:
    def listed() -> dict[str, Any]:
        rows = json.loads(relos(db_url, "queue", "list", "--json").stdout)
        [row] = [q for q in rows if q["name"] == "cli_cluster.q"]
        return row

    before = listed()
    for args, message in [
        (("--concurrency", "many"), "--concurrency takes a whole number or 'none'"),
        (("--concurrency", "0"), "concurrency must be a whole number >= 1"),
        (("--worker-concurrency", "9"), "worker_concurrency (9) cannot exceed concurrency (4)"),
        (("--rate", "50"), "--rate takes STARTS/SECONDS"),
        (("--rate", "50/-1"), "must be a positive number of seconds"),
        ((), "nothing to change"),
    ]:
        done = relos(db_url, "queue", "set", "cli_cluster.q", *args)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line, line
    assert listed() == before
    for command in ("set", "reset"):
        options = ("--concurrency", "2") if command == "set" else ()
        done = relos(db_url, "queue", command, "no.such.queue", *options)
        assert done.returncode == 1 and "no queue named 'no.such.queue'" in done.stderr


def test_queue_enqueue_by_name_and_wait(dbos: Any, db_url: str) -> None:
    done = relos(db_url, "queue", "enqueue", "cli_cluster.one", "cli_cluster.add", "2", "3",
                 "--kwarg", "times=4", "--id", "cli-add-1", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data == {"workflow_id": "cli-add-1", "queue_name": "cli_cluster.one",
                    "workflow_name": "cli_cluster.add", "status": "SUCCESS",
                    "output": {"sum": 20}, "error": None}
    status = DBOS.get_workflow_status("cli-add-1")
    assert status is not None and status.input == {"args": (2, 3), "kwargs": {"times": 4}}

    failed = relos(db_url, "queue", "enqueue", "cli_cluster.one", "cli_cluster.add", "--wait",
                   "--", "-1", "0")  # (-- before arguments that start with '-')
    assert failed.returncode == 1, failed.stderr
    assert "ERROR" in failed.stdout and "no negative numbers: -1" in failed.stdout

    # without --wait: enqueued, and the executor runs it
    queued = relos(db_url, "queue", "enqueue", "cli_cluster.one", "cli_cluster.add", "1", "1",
                   "--priority", "0", "--json")
    assert queued.returncode == 0, queued.stderr
    workflow_id = json.loads(queued.stdout)["workflow_id"]
    assert DBOS.retrieve_workflow(workflow_id).get_result() == {"sum": 2}

    # a wait that ends first: exit status 2, the workflow goes on
    slow = relos(db_url, "queue", "enqueue", "cli_cluster.one", "cli_cluster.wait", "--wait",
                 "--wait-timeout", "0.5", "--json")
    assert slow.returncode == 2, slow.stderr
    slow_id = json.loads(slow.stdout)["workflow_id"]
    DBOS.send(slow_id, "go", topic="go")
    assert DBOS.retrieve_workflow(slow_id).get_result() == "go"


def test_queue_enqueue_refuses_bad_input_and_enqueues_nothing(dbos: Any, db_url: str) -> None:
    before = len(DBOS.list_workflows())
    for args, message in [
        (("cli_cluster.one", "cli_cluster.add", "two"),
         "argument #0 must be a JSON value"),
        (("cli_cluster.one", "cli_cluster.add", "1", "--kwarg", "times"),
         "--kwarg takes NAME=JSON"),
        (("cli_cluster.one", "cli_cluster.add", "1", "--kwarg", "times=x"),
         "--kwarg times must be a JSON value"),
        (("no.such.queue", "cli_cluster.add"), "no queue named 'no.such.queue'"),
        (("cli_cluster.one", "cli_cluster.add", "--priority", "1"), "does not have priorities"),
        (("cli_cluster.one", "cli_cluster.add", "--delay", "-5"), "delay_seconds must be"),
        (("cli_cluster.one", "cli_cluster.add", "--workflow-timeout", "0"),
         "workflow_timeout must be a positive number"),
    ]:
        done = relos(db_url, "queue", "enqueue", *args)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line, line
    assert len(DBOS.list_workflows()) == before
