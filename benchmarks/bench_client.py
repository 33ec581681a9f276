"""Round trip through DBOSClient: a service that has none of the workflow's
code enqueues a one-step workflow by name and waits for its result, which an
executor in another process computes.

Measured one at a time (``--calls`` round trips after a warm-up), from the
client's enqueue to its handle's result, beside the floor: the same
enqueue-and-wait done inside the executor process itself, where the result
is handed over in memory (so the difference is what crossing processes
costs: the executor hearing of the enqueue, and the client reading the row).
``--first-poll`` sets the client handle's first re-reading of the row
(``workflow.RESULT_FIRST_POLL_SECONDS``; 1.0 waits as a steady 1 s poll).

Then a ping-pong of messages and events: the client sends a message to a
workflow running on the executor, which receives it (``DBOS.recv``) and sets
an event the client waits for (``get_event``), ``--calls`` rounds; the floor
is the same from the executor's own main thread. ``--no-listen`` turns off
``use_listen_notify`` in both processes (waits then poll alone).

Usage::

    python benchmarks/bench_client.py --backend both --calls 200
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from benchdb import database

from relos import DBOS, DBOSClient, Queue
from relos.runtime import workflow

bench_queue = Queue("bench.client")


@DBOS.workflow(name="bench.client.task")
def task(i: int) -> int:
    return DBOS.run_step(lambda: i + 1, name="add")


@DBOS.workflow(name="bench.client.echo")
def echo(rounds: int) -> int:
    for i in range(rounds):
        DBOS.set_event(f"pong{i}", DBOS.recv("ping", timeout_seconds=60))
    return rounds


def ping_pong(send: object, get_event: object, workflow_id: str, rounds: int) -> list[float]:
    """Seconds per round: a message to ``workflow_id``, then its answering event."""
    took = []
    for i in range(rounds):
        t0 = time.perf_counter()
        send(workflow_id, i, topic="ping")  # type: ignore[operator]
        assert get_event(workflow_id, f"pong{i}", 30) == i  # type: ignore[operator]
        took.append(time.perf_counter() - t0)
    return took


EXECUTOR = """
import sys, time
sys.path.insert(0, {here!r})
import bench_client
from relos import DBOS
DBOS(config={{"system_database_url": {url!r}, "log_level": "WARNING",
             "use_listen_notify": {listen}, "suspend_after_seconds": None}})
DBOS.launch()
print("ready", flush=True)
if {floor} == "pingpong":
    h = DBOS.start_workflow(bench_client.echo, {calls})
    took = bench_client.ping_pong(DBOS.send, DBOS.get_event, h.workflow_id, {calls})
    print(" ".join(f"{{t:.6f}}" for t in took), flush=True)
elif {floor} == "echo":
    print(DBOS.start_workflow(bench_client.echo, {calls}).workflow_id, flush=True)
    sys.stdin.readline()
elif {floor}:
    # the floor: enqueue and wait in the executor process itself
    for i in range({warm}):
        bench_client.bench_queue.enqueue(bench_client.task, i).get_result()
    took = []
    for i in range({calls}):
        t0 = time.perf_counter()
        bench_client.bench_queue.enqueue(bench_client.task, i).get_result()
        took.append(time.perf_counter() - t0)
    print(" ".join(f"{{t:.6f}}" for t in took), flush=True)
else:
    sys.stdin.readline()
DBOS.destroy()
"""


def _executor(url: str, floor: bool | str, calls: int, warm: int, listen: bool = True
              ) -> subprocess.Popen[str]:
    code = EXECUTOR.format(here=sys.path[0], url=url, floor=repr(floor), calls=calls, warm=warm,
                           listen=listen)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _summary(took: list[float]) -> str:
    ms = sorted(t * 1000 for t in took)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):7.2f} ms  p99 {p99:7.2f} ms  mean {statistics.mean(ms):7.2f} ms"


def _finish(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(30)


def measure(backend: str, calls: int, warm: int, first_poll: float | None,
            listen: bool) -> None:
    with database(backend) as url:
        proc = _executor(url, False, calls, warm, listen)
        try:
            if first_poll is not None:
                workflow.RESULT_FIRST_POLL_SECONDS = first_poll
            with DBOSClient(url, log_level="WARNING", use_listen_notify=listen) as client:
                options = {"queue_name": "bench.client", "workflow_name": "bench.client.task"}
                for i in range(warm):
                    client.enqueue(options, i).get_result()  # type: ignore[arg-type]
                took = []
                for i in range(calls):
                    t0 = time.perf_counter()
                    assert client.enqueue(options, i).get_result() == i + 1  # type: ignore[arg-type]
                    took.append(time.perf_counter() - t0)
        finally:
            _finish(proc)
        floor_proc = _executor(url, True, calls, warm, listen)
        assert floor_proc.stdout is not None
        floor = [float(x) for x in floor_proc.stdout.readline().split()]
        floor_proc.wait(30)
        proc = _executor(url, "echo", calls, warm, listen)
        try:
            assert proc.stdout is not None
            echo_id = proc.stdout.readline().strip()
            with DBOSClient(url, log_level="WARNING", use_listen_notify=listen) as client:
                pings = ping_pong(client.send, client.get_event, echo_id, calls)
        finally:
            _finish(proc)
        floor_proc = _executor(url, "pingpong", calls, warm, listen)
        assert floor_proc.stdout is not None
        ping_floor = [float(x) for x in floor_proc.stdout.readline().split()]
        floor_proc.wait(30)
    print(f"{backend:9s} result   client {_summary(took)}")
    print(f"{backend:9s}          floor  {_summary(floor)}   (in the executor's process)")
    print(f"{backend:9s} message  client {_summary(pings)}   (send, then the event answering it)")
    print(f"{backend:9s}          floor  {_summary(ping_floor)}   (in the executor's process)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--first-poll", type=float, default=None)
    parser.add_argument("--no-listen", action="store_true")
    args = parser.parse_args()
    for backend in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
        measure(backend, args.calls, args.warm, args.first_poll, not args.no_listen)


if __name__ == "__main__":
    main()
