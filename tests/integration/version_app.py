"""A small relos application launched with a given application version, run
as separate processes by tests/integration/test_app_versions.py.

Usage::

    version_app.py DATABASE_URL VERSION LOG_PATH --stop PATH

It launches relos with ``application_version`` = VERSION, dequeuing from the
queue ``vapp``, appends ``ready`` to the log, and runs what it dequeues until
the ``--stop`` file appears; then it shuts down cleanly and exits 0. Every run
of the workflow's step appends one fsync'ed line to LOG_PATH::

    ran <workflow_id> <version> <pid>
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import time

from relos import DBOS, Queue

#: A process runs at most this long (a safety net should the test not stop it).
LIFETIME_SECONDS = 120.0

version_queue = Queue("vapp")
ARGS: argparse.Namespace


def log(line: str) -> None:
    fd = os.open(ARGS.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@DBOS.step(name="vapp.note")
def note() -> str:
    log(f"ran {DBOS.workflow_id} {ARGS.version} {os.getpid()}")
    return str(ARGS.version)


@DBOS.workflow(name="vapp.work")
def work() -> str:
    return note()


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("version")
    parser.add_argument("log")
    parser.add_argument("--stop", required=True)
    ARGS = parser.parse_args()
    DBOS(config={"system_database_url": ARGS.url, "application_version": ARGS.version,
                 "executor_lease_seconds": 2, "recovery_interval_seconds": 0.5,
                 "log_level": "WARNING"})
    DBOS.launch()
    log(f"ready - {ARGS.version} {os.getpid()}")
    end = time.monotonic() + LIFETIME_SECONDS
    while not os.path.exists(ARGS.stop) and time.monotonic() < end:
        time.sleep(0.02)
    DBOS.destroy()
    sys.exit(0)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # (threads' stacks on a test's time-out)
    main()
