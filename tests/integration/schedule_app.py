"""A relos application with one every-second schedule, run as several
processes on the same database by tests/integration/test_schedules.py.

Usage::

    schedule_app.py DATABASE_URL LOG_PATH START_AT STOP_AT

Each process imports relos, waits until the wall clock reaches START_AT (so
they all launch together), launches, and lets its scheduler run until STOP_AT.
Then it pauses the schedule (every process does; the pause is idempotent),
gives in-flight tick workflows a moment to finish, and shuts down.

Every tick workflow appends one line to LOG_PATH, from a step, with O_APPEND
and fsync::

    tick <workflow_id> <scheduled_epoch_ms> <pid>
"""

from __future__ import annotations

import datetime as dt
import faulthandler
import os
import signal
import sys
import time

from relos import DBOS

LOG = sys.argv[2] if len(sys.argv) > 2 else os.devnull


@DBOS.step(name="sapp.record")
def record(scheduled_ms: int) -> None:
    line = f"tick {DBOS.workflow_id} {scheduled_ms} {os.getpid()}\n"
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@DBOS.scheduled("*/1 * * * * *")
@DBOS.workflow(name="sapp.tick")
def tick(scheduled_time: dt.datetime, actual_time: dt.datetime) -> None:
    record(int(scheduled_time.timestamp() * 1000))


def main() -> None:
    url, _log, start_at, stop_at = sys.argv[1], sys.argv[2], float(sys.argv[3]), \
        float(sys.argv[4])
    time.sleep(max(0.0, start_at - time.time()))
    # No process is killed here: a lease far longer than the run keeps a
    # machine that stalls every process for a few seconds (seen once in CI:
    # heartbeats older than a 2 s lease) from making the processes take each
    # other's running ticks over and rerun their steps, which are at least once.
    DBOS(config={"system_database_url": url, "executor_lease_seconds": 30,
                 "recovery_interval_seconds": 0.5, "log_level": "WARNING"})
    DBOS.launch()
    time.sleep(max(0.0, stop_at - time.time()))
    DBOS.pause_schedule("sapp.tick")
    time.sleep(1.5)
    DBOS.destroy()
    sys.exit(0)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # (threads' stacks on a test's time-out)
    main()
