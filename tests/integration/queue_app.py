"""A small relos application with queues, run as separate processes by
tests/integration/test_queue_cluster.py (and by the cross-process wake-up
tests of test_queue_usage.py).

Usage::

    queue_app.py DATABASE_URL worker LOG_PATH --stop PATH [--hang] [--stall-mass-after N]
                 [--listen Q ...]
    queue_app.py DATABASE_URL enqueue LOG_PATH --queue Q --count N [--go PATH]
                 [--step-sleep SECONDS]

``worker`` launches relos (dequeueing from every queue below, or only the
``--listen`` ones), writes ``ready``, and runs what it dequeues until the
``--stop`` file appears; then it shuts down cleanly and exits 0. With
``--hang`` the second step of :func:`takeover_wf` blocks (until the process
is killed), so the test can kill it with workflows in flight; with
``--stall-mass-after N`` every :func:`mass_step` after the process's first N
blocks the same way.

``enqueue`` launches relos listening to no queue (so it never runs anything
itself), optionally waits for the ``--go`` file, enqueues ``--count``
workflows on ``--queue`` in one transaction (``enqueue_many``) and prints
their IDs as one JSON list on stdout.

Every side effect is one line appended to ``LOG_PATH``::

    <event> <workflow_id> <pid> <epoch_ns>

written with O_APPEND and fsync'ed before the code goes on, so the test can
count executions exactly, even of a process killed a moment later.
"""

from __future__ import annotations

import argparse
import faulthandler
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from relos import DBOS, Queue

#: A process runs at most this long (a safety net should the test not stop it).
LIFETIME_SECONDS = 120.0

#: 300 workflows, at most 5 running at once in the whole cluster and 2 in each
#: process: three workers could run 6, so the global limit is what holds them
#: back, and every worker takes part.
cluster_queue = Queue("qapp_cluster", concurrency=5, worker_concurrency=2)
#: The take-over test: at most 4 at once.
takeover_queue = Queue("qapp_takeover", concurrency=4)
#: The cross-process wake-up test (queue_workflows.py defines the same queue).
notify_queue = Queue("qapp_notify")
#: The mass test: 1,000 workflows, three workers, one killed mid-run.
mass_queue = Queue("qapp_mass", worker_concurrency=8)

ARGS: argparse.Namespace


def log(event: str, workflow_id: str | None = None) -> None:
    """Append one fsync'ed line to the side-effect log."""
    wid = workflow_id if workflow_id is not None else (DBOS.workflow_id or "-")
    line = f"{event} {wid} {os.getpid()} {time.time_ns()}\n"
    fd = os.open(ARGS.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the cluster test -------------------------------------------------------------------


@DBOS.step(name="qapp.cluster_step")
def cluster_step(i: int, seconds: float) -> int:
    log("start")
    time.sleep(seconds)
    log("end")
    return i


@DBOS.workflow(name="qapp.cluster_wf")
def cluster_wf(i: int, seconds: float) -> int:
    return cluster_step(i, seconds) * 2


# --- the take-over test ----------------------------------------------------------------


@DBOS.step(name="qapp.takeover_a")
def takeover_a(i: int) -> int:
    log("a")
    return i


@DBOS.step(name="qapp.takeover_b")
def takeover_b(i: int) -> int:
    log("b-start")
    if ARGS.hang:
        time.sleep(LIFETIME_SECONDS)  # "stuck": the test kills the process meanwhile
    time.sleep(0.02)
    log("b-end")
    return i * 10


@DBOS.step(name="qapp.takeover_c")
def takeover_c(i: int) -> int:
    log("c")
    return i * 100


@DBOS.workflow(name="qapp.takeover_wf")
def takeover_wf(i: int) -> list[int]:
    return [takeover_a(i), takeover_b(i), takeover_c(i)]


# --- the mass test ---------------------------------------------------------------------


#: How many mass steps this process has started (``next`` is atomic under the GIL).
MASS_STARTED = itertools.count(1)


@DBOS.step(name="qapp.mass_step")
def mass_step(i: int, seconds: float) -> int:
    log("m-start")
    stall_after = ARGS.stall_mass_after
    if stall_after is not None and next(MASS_STARTED) > stall_after:
        time.sleep(LIFETIME_SECONDS)  # "stuck": the test kills the process meanwhile
    time.sleep(seconds)
    return i


@DBOS.transaction(name="qapp.mass_effect")
def mass_effect(i: int) -> None:
    """The workflow's one effect, committed with its step record: exactly once."""
    marker = "%s" if ARGS.url.startswith("postgres") else "?"
    DBOS.sql_connection.execute(
        f"INSERT INTO mass_effects (workflow_id, i, pid) VALUES ({marker}, {marker}, {marker})",
        (DBOS.workflow_id, i, os.getpid()))


@DBOS.workflow(name="qapp.mass_wf")
def mass_wf(i: int, seconds: float) -> int:
    mass_effect(mass_step(i, seconds))
    return i * 3


# --- the cross-process wake-up test ----------------------------------------------------


@DBOS.workflow(name="qapp.notify_target")
def notify_target(enqueued_at: float) -> float:
    """Only enqueued from here: the tests' process runs its own version (queue_workflows.py)."""
    return enqueued_at


# --- driver ----------------------------------------------------------------------------

QUEUES = {q.name: q for q in (cluster_queue, takeover_queue, notify_queue, mass_queue)}
WORKFLOWS: dict[str, Callable[..., Any]] = {"qapp_cluster": cluster_wf, "qapp_takeover": takeover_wf,
             "qapp_notify": notify_target, "qapp_mass": mass_wf}


def wait_for_file(path: str, what: str) -> None:
    end = time.monotonic() + LIFETIME_SECONDS
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise SystemExit(f"{what}: {path} never appeared")
        time.sleep(0.005)


def worker(args: argparse.Namespace) -> None:
    log("ready", "-")
    wait_for_file(args.stop, "worker stop")
    log("stopping", "-")


def enqueue(args: argparse.Namespace) -> None:
    queue, func = QUEUES[args.queue], WORKFLOWS[args.queue]
    calls: list[tuple[Any, ...]]
    if args.go:
        log("enqueue-ready", "-")
        wait_for_file(args.go, "enqueue go")
    if args.queue in ("qapp_cluster", "qapp_mass"):
        calls = [(i, args.step_sleep) for i in range(args.count)]
    elif args.queue == "qapp_takeover":
        calls = [(i,) for i in range(args.count)]
    else:
        calls = [(time.time(),) for _ in range(args.count)]
    handles = queue.enqueue_many(func, calls)
    log("enqueued", "-")
    print(json.dumps([h.workflow_id for h in handles]), flush=True)


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("mode", choices=["worker", "enqueue"])
    parser.add_argument("log")
    parser.add_argument("--stop", help="worker: exit once this file exists")
    parser.add_argument("--hang", action="store_true", help="worker: takeover_b blocks")
    parser.add_argument("--stall-mass-after", type=int,
                        help="worker: mass steps after the first N block")
    parser.add_argument("--listen", nargs="*", help="worker: dequeue only from these")
    parser.add_argument("--queue", default="qapp_cluster")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--step-sleep", type=float, default=0.05)
    parser.add_argument("--go", help="enqueue: wait for this file first")
    ARGS = parser.parse_args()
    DBOS(config={"system_database_url": ARGS.url, "executor_lease_seconds": 2,
                 "recovery_interval_seconds": 0.5, "log_level": "WARNING"})
    if ARGS.mode == "enqueue":
        DBOS.listen_queues([])
    elif ARGS.listen is not None:
        DBOS.listen_queues(ARGS.listen)
    DBOS.launch()
    if ARGS.mode == "worker":
        worker(ARGS)
    else:
        enqueue(ARGS)
    DBOS.destroy()
    sys.exit(0)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # (threads' stacks on a test's time-out)
    main()
