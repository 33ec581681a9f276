"""A small relos application that tests/integration/test_crash.py runs in
subprocesses, kills with SIGKILL and resumes in fresh processes.

Usage::

    crash_app.py DATABASE_URL {start,recover} WORKFLOW_ID LOG_PATH
                 [--workflow NAME] [--count N] [--sleep SECONDS] [--go PATH]
                 [--stall PATH]

``start`` launches relos, starts the chosen workflow under ``WORKFLOW_ID``
(with ``--count N`` > 1: ``N`` workflows ``WORKFLOW_ID-00`` ...), writes
``all-started`` to the log and then blocks until it is killed.

``recover`` launches relos (which recovers the PENDING workflows of the dead
starter in the background), waits for every workflow's result and prints one
JSON object on stdout: results, statuses, recorded steps and the workflows still
PENDING. Exit status 0 means every result was obtained. With ``--go PATH`` it
writes ``recover-ready`` and waits for that file to appear before launching, so
the test can make several recovering processes launch at the same moment. With
``--stall PATH`` the process is a *slow recoverer*: each time its recovery scan
has found a workflow to take over, it writes ``recover-scanned`` (the first
time) and waits for that file before going on, as if stalled between reading
the list of orphaned workflows and claiming them.

Every side effect is one line appended to ``LOG_PATH``::

    <event> <workflow_id> <pid> <epoch_ms>

written with O_APPEND and fsync'ed before the code goes on, so the test can
count executions exactly, even of a process killed a moment later. A step that
must block "the first time" creates a flag file next to the log atomically
(O_CREAT | O_EXCL): the process that created it blocks, any later run does not.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from typing import Any

from relos import DBOS, SetWorkflowID
from relos.store import parse_url

#: A started process blocks at most this long (a safety net should the test
#: fail to kill it).
LIFETIME_SECONDS = 120.0
USER_TABLE = "crash_rows"

ARGS: argparse.Namespace


def log(event: str, workflow_id: str | None = None) -> None:
    """Append one fsync'ed line to the side-effect log."""
    wid = workflow_id if workflow_id is not None else (DBOS.workflow_id or "-")
    line = f"{event} {wid} {os.getpid()} {int(time.time() * 1000)}\n"
    fd = os.open(ARGS.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def first_time(what: str) -> bool:
    """True exactly once per (workflow, what), across every process."""
    flag = f"{ARGS.log}.{DBOS.workflow_id}.{what}.flag"
    try:
        fd = os.open(flag, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.fsync(fd)
    os.close(fd)
    return True


def block() -> None:
    """Hang, as if the step were stuck on slow I/O, until the test kills us."""
    time.sleep(60)


# --- 1. a step interrupted mid-way -------------------------------------------------------


@DBOS.step()
def mid_step_one(x: int) -> int:
    log("step1")
    return x + 1


@DBOS.step()
def mid_step_two(x: int) -> int:
    first = first_time("step2")
    log("step2-started")
    if first:
        block()
    log("step2-done")
    return x * 10


@DBOS.step()
def mid_step_three(x: int) -> int:
    log("step3")
    return x - 3


@DBOS.workflow()
def steps_workflow(x: int) -> list[int]:
    a = mid_step_one(x)
    b = mid_step_two(a)
    c = mid_step_three(b)
    return [a, b, c]


# --- 2. a durable sleep interrupted mid-way ------------------------------------------------


@DBOS.step()
def sleep_step_a() -> str:
    log("A")
    return "a"


@DBOS.step()
def sleep_step_b() -> str:
    log("B")
    return "b"


@DBOS.workflow()
def sleep_workflow(seconds: float) -> str:
    a = sleep_step_a()
    DBOS.sleep(seconds)
    b = sleep_step_b()
    return a + b


# --- 3. transactions ---------------------------------------------------------------------


def _insert_row(note: str) -> None:
    ph = "?" if parse_url(ARGS.url)[0] == "sqlite" else "%s"
    table = USER_TABLE if ph == "?" else f"public.{USER_TABLE}"
    DBOS.sql_connection.execute(
        f"INSERT INTO {table} (workflow_id, note, pid) VALUES ({ph}, {ph}, {ph})",
        (DBOS.workflow_id, note, os.getpid()),
    )


@DBOS.transaction()
def blocking_insert(note: str) -> str:
    _insert_row(note)
    first = first_time("tx")
    log("tx-started")
    if first:
        block()
    log("tx-done")
    return f"inserted {note}"


@DBOS.workflow()
def tx_workflow(note: str) -> str:
    return blocking_insert(note)


@DBOS.transaction()
def quick_insert(note: str) -> str:
    _insert_row(note)
    log("tx-ran")
    return f"inserted {note}"


@DBOS.step()
def after_insert(text: str) -> str:
    first = first_time("after")
    log("after-started")
    if first:
        block()
    log("after-done")
    return text.upper()


@DBOS.workflow()
def tx_after_workflow(note: str) -> str:
    inserted = quick_insert(note)
    return after_insert(inserted)


# --- 4./5. many workflows at once ---------------------------------------------------------


@DBOS.step()
def many_first(i: int) -> int:
    log("m1")
    return i


@DBOS.step()
def many_second(i: int) -> int:
    log("m2")
    return i * i


@DBOS.workflow()
def many_workflow(i: int, seconds: float) -> int:
    a = many_first(i)
    DBOS.sleep(seconds)
    return a + many_second(i)


# --- driver ------------------------------------------------------------------------------


def create_user_table(url: str) -> None:
    """The application's own table, in the same database as relos' tables."""
    backend, location = parse_url(url)
    if backend == "sqlite":
        conn = sqlite3.connect(location, timeout=30)
        try:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {USER_TABLE} "
                         f"(workflow_id TEXT NOT NULL, note TEXT, pid INTEGER)")
            conn.commit()
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(location, autocommit=True) as conn, conn.transaction():
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide: serialise them.
        conn.execute("SELECT pg_advisory_xact_lock(4242)")
        conn.execute(f"CREATE TABLE IF NOT EXISTS public.{USER_TABLE} "
                     f"(workflow_id TEXT NOT NULL, note TEXT, pid INTEGER)")


def wait_for_go(args: argparse.Namespace) -> None:
    """A barrier: several recovering processes launch (and so scan for workflows
    to recover) at the same moment, once the test creates the ``--go`` file."""
    log("recover-ready", args.workflow_id)
    _wait_for_file(args.go, "go")


def _wait_for_file(path: str, what: str) -> None:
    end = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise SystemExit(f"the {what} file never appeared")
        time.sleep(0.002)


def install_stall(args: argparse.Namespace) -> None:
    """Make this process stall between its recovery scan and its claims (see
    the module docstring). Recovery calls ``relos.runtime.workflow.recover_many``
    for each batch of orphaned workflows its scan found, and ``recover`` for
    each one the batch left; wrap both."""
    from relos.runtime import workflow as wf

    first = threading.Event()

    def stalled(original: Any) -> Any:
        def call(*a: Any, **kw: Any) -> Any:
            if not first.is_set():
                first.set()
                log("recover-scanned", args.workflow_id)
            _wait_for_file(args.stall, "stall")
            return original(*a, **kw)
        return call

    wf.recover = stalled(wf.recover)  # type: ignore[assignment]
    wf.recover_many = stalled(wf.recover_many)  # type: ignore[assignment]


def workflow_ids(args: argparse.Namespace) -> list[str]:
    if args.count == 1:
        return [args.workflow_id]
    return [f"{args.workflow_id}-{i:02d}" for i in range(args.count)]


def start(args: argparse.Namespace) -> None:
    for i, wid in enumerate(workflow_ids(args)):
        with SetWorkflowID(wid):
            if args.workflow == "steps":
                DBOS.start_workflow(steps_workflow, 4)
            elif args.workflow == "sleep":
                DBOS.start_workflow(sleep_workflow, args.sleep)
            elif args.workflow == "tx":
                DBOS.start_workflow(tx_workflow, "hello")
            elif args.workflow == "tx_after":
                DBOS.start_workflow(tx_after_workflow, "hello")
            elif args.workflow == "many":
                DBOS.start_workflow(many_workflow, i, args.sleep)
            else:
                raise SystemExit(f"unknown workflow {args.workflow!r}")
    log("all-started", args.workflow_id)
    time.sleep(LIFETIME_SECONDS)
    os._exit(3)  # never reached when the test does its job


def recover(args: argparse.Namespace) -> None:
    log("recover-launched", args.workflow_id)
    out: dict[str, Any] = {"pid": os.getpid(), "results": {}, "statuses": {}, "steps": {}}
    for wid in workflow_ids(args):
        out["results"][wid] = DBOS.retrieve_workflow(wid).get_result(timeout_seconds=60)
    log("recover-done", args.workflow_id)
    for wid in workflow_ids(args):
        status = DBOS.get_workflow_status(wid)
        out["statuses"][wid] = status.status if status else None
        out["steps"][wid] = [
            {"function_id": s["function_id"], "function_name": s["function_name"],
             "kind": s["kind"], "output": s["output"],
             "wake_up_at_epoch_ms": s["wake_up_at_epoch_ms"]}
            for s in DBOS.list_workflow_steps(wid)
        ]
    out["pending"] = [s.workflow_id for s in DBOS.list_workflows(status="PENDING")]
    print(json.dumps(out), flush=True)


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("mode", choices=["start", "recover"])
    parser.add_argument("workflow_id")
    parser.add_argument("log")
    parser.add_argument("--workflow", default="steps")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=6.0)
    parser.add_argument("--go", help="recover: launch only once this file exists")
    parser.add_argument("--stall", help="recover: claim only once this file exists")
    ARGS = parser.parse_args()
    create_user_table(ARGS.url)
    DBOS(config={"system_database_url": ARGS.url, "executor_lease_seconds": 2,
                 "recovery_interval_seconds": 0.5, "log_level": "WARNING"})
    if ARGS.mode == "recover" and ARGS.go:
        wait_for_go(ARGS)
    if ARGS.mode == "recover" and ARGS.stall:
        install_stall(ARGS)
    DBOS.launch()
    if ARGS.mode == "start":
        start(ARGS)
    else:
        recover(ARGS)
        DBOS.destroy()
    sys.exit(0)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # (threads' stacks on a test's time-out)
    main()
