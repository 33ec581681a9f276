"""A small relos application that tests/integration/test_suspension_crash.py
runs in subprocesses: one suspends workflows and is killed with SIGKILL,
another (with another executor ID) resumes them.

Usage::

    suspend_app.py DATABASE_URL {start,resume} LOG_PATH [--sleep SECONDS]

``start`` launches relos with ``suspend_after_seconds = 0`` and starts two
workflows: ``sleeper`` (a step, ``DBOS.sleep(SECONDS)``, a step) and
``receiver`` (a step, ``DBOS.recv("go")``, a step); writes ``all-started`` to
the log and blocks until it is killed.

``resume`` launches relos, sends "go" to the receiver, waits for both results
and prints one JSON object on stdout: results and final rows.

Every step execution is one fsync'ed line appended to ``LOG_PATH``::

    <event> <workflow_id> <pid>
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
import time
from typing import Any

from relos import DBOS, SetWorkflowID

SLEEPER, RECEIVER = "susp-crash-sleeper", "susp-crash-receiver"
LIFETIME_SECONDS = 120.0

ARGS: argparse.Namespace


def log(event: str) -> None:
    line = f"{event} {DBOS.workflow_id} {os.getpid()}\n"
    fd = os.open(ARGS.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@DBOS.step()
def effect(event: str) -> None:
    log(event)


@DBOS.workflow()
def sleeper(seconds: float) -> float:
    effect("before")
    DBOS.sleep(seconds)
    effect("after")
    return time.time()


@DBOS.workflow()
def receiver() -> Any:
    effect("before")
    message = DBOS.recv("go", timeout_seconds=LIFETIME_SECONDS)
    effect("after")
    return message


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("mode", choices=["start", "resume"])
    parser.add_argument("log")
    parser.add_argument("--sleep", type=float, default=4.0)
    ARGS = parser.parse_args()
    executor = "starter" if ARGS.mode == "start" else "resumer"
    DBOS(config={"system_database_url": ARGS.url, "suspend_after_seconds": 0,
                 "executor_id": executor, "executor_lease_seconds": 2,
                 "recovery_interval_seconds": 0.5})
    DBOS.launch()
    if ARGS.mode == "start":
        with SetWorkflowID(SLEEPER):
            DBOS.start_workflow(sleeper, ARGS.sleep)
        with SetWorkflowID(RECEIVER):
            DBOS.start_workflow(receiver)
        fd = os.open(ARGS.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"all-started - {os.getpid()}\n".encode())
        os.fsync(fd)
        os.close(fd)
        time.sleep(LIFETIME_SECONDS)
        return 1
    DBOS.send(RECEIVER, "go-message", topic="go")
    results = {wid: DBOS.retrieve_workflow(wid).get_result(timeout_seconds=60)
               for wid in (SLEEPER, RECEIVER)}
    rows = {}
    for wid in (SLEEPER, RECEIVER):
        status = DBOS.get_workflow_status(wid)
        assert status is not None
        rows[wid] = {"status": status.status, "executor_id": status.executor_id,
                     "recovery_attempts": status.recovery_attempts}
    print(json.dumps({"results": results, "rows": rows}))
    sys.stdout.flush()
    DBOS.destroy()
    return 0


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # (threads' stacks on a test's time-out)
    sys.exit(main())
