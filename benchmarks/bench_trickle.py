"""A steady trickle of single enqueues served by a cluster of executors.

Web applications rarely enqueue a thousand tasks at once: each request
enqueues one. On PostgreSQL every executor listening to the queue hears every
enqueue (LISTEN/NOTIFY), and all but one of those that try to claim find
nothing. This benchmark measures what that costs as the cluster grows: one
process enqueues ``--rate`` tiny workflows a second, one at a time, for
``--seconds``, while ``--executors`` processes (each a launched relos
executor listening to the queue) run them; ``0`` executors: the enqueuing
process runs them itself, as a one-process application does (it then hears
its own enqueues twice: in-process, and by the NOTIFY its statement sends).
Reported per task:

* the PostgreSQL server's CPU time (``benchdb.ServerCPU``);
* the executor processes' CPU time (from ``/proc``; with ``0`` executors, the
  one process's, its enqueues included);
* the claims the executors' queue runners made, and how many of them found
  nothing (counted by the runners, reported when they stop);
* how long tasks waited between their enqueue and their start (p50 / p99 /
  max of ``started_at - created_at``, read from the workflows' rows).

The enqueue rate is held below what one enqueuer can do, so that every cluster
size serves the same work; the figures to compare are the costs per task.

Floor: the least any engine could do for a task delivered this way, three
commits on a bare table at the same rate, one connection each: the enqueuer's
INSERT, a worker's claim (UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING, as
soon as the INSERT returned) and its completion (UPDATE); no history, no
notification, no index beyond the key and the status.

``--backend sqlite`` runs the same on one SQLite file: its executors find
another process's enqueue by the file's commit count (``PRAGMA
data_version``, read every 20 ms by each dequeuing process) instead of a
NOTIFY; there is no server CPU to report, and the floor's claim is a plain
UPDATE (one writer at a time).

``--task-ms`` makes each task hold its thread that long and ``--threads``
bounds each executor's threads: with ``--task-ms 50 --threads 4`` an executor
runs at most 80 tasks a second, and a trickle faster than that needs several.

Usage::

    python benchmarks/bench_trickle.py --executors 1 4 8 --rate 200 --seconds 10
    python benchmarks/bench_trickle.py --executors 0 --rate 200 --seconds 10
    python benchmarks/bench_trickle.py --executors 4 --rate 200 --task-ms 50 --threads 4
    python benchmarks/bench_trickle.py --backend sqlite --executors 1 2 --rate 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import bench_tasks  # noqa: E402
from benchdb import ServerCPU, database  # noqa: E402

import relos.dbos  # noqa: E402
from relos import DBOS  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Seconds between the executors' launch and the first enqueue.
SETTLE_SECONDS = 6.0


def _connect(backend: str, url: str) -> Any:
    """An autocommit connection for the benchmark's own SQL, and the tables' prefix."""
    if backend == "sqlite":
        import sqlite3

        return sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None), ""
    import psycopg

    return psycopg.connect(url, autocommit=True), "relos."


def run(executors: int, rate: float, seconds: float, task_ms: float = 0.0, threads: int = 64,
        backend: str = "postgres") -> dict[str, Any]:
    tasks = int(rate * seconds)
    with database(backend) as url:
        DBOS.destroy()
        own = executors == 0  # this process runs the tasks, else it only enqueues
        DBOS.listen_queues(["bench.tasks"] if own else [])
        DBOS(config={"system_database_url": url, "log_level": "WARNING",
                     "max_workflow_threads": threads})
        DBOS.launch()
        procs: list[subprocess.Popen[str]] = []
        stats, prefix = _connect(backend, url)
        try:
            procs = bench_tasks.start_workers(url, executors, threads)
            pids = [p.pid for p in procs] if procs else [os.getpid()]
            # (launch work settles, and each executor's recovery pass, every 5 s,
            # has seen the others: see QueueRunner._back_off)
            time.sleep(SETTLE_SECONDS)
            cpu0 = {pid: _cpu_seconds(pid) for pid in pids}
            with ServerCPU() as server:
                t0 = time.perf_counter()
                for i in range(tasks):
                    if task_ms:
                        bench_tasks.tasks_queue.enqueue(bench_tasks.busy, i, task_ms)
                    else:
                        bench_tasks.tasks_queue.enqueue(bench_tasks.tiny, i)
                    pause = t0 + (i + 1) / rate - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                enqueue_s = time.perf_counter() - t0
                while stats.execute(
                        f"SELECT count(*) FROM {prefix}workflow_status WHERE status <> 'SUCCESS'"
                ).fetchone()[0]:  # type: ignore[index]
                    time.sleep(0.05)
            cpu = sum(_cpu_seconds(pid) - cpu0[pid] for pid in pids)
            waits = sorted(r[0] for r in stats.execute(
                f"SELECT started_at - created_at FROM {prefix}workflow_status").fetchall())
        finally:
            for proc in procs:
                if proc.stdin is not None:
                    proc.stdin.close()
            counted = [json.loads(proc.stdout.readline()) for proc in procs
                       if proc.stdout is not None]
            runner = relos.dbos._rt().queue_runner if own else None
            if runner is not None:
                counted.append({"claims": runner.claims, "empty_claims": runner.empty_claims})
            for proc in procs:
                proc.wait(timeout=60)
            stats.close()
            DBOS.destroy()
    return {
        "executors": executors, "tasks": tasks, "rate": tasks / enqueue_s,
        "server_cpu_us": 1e6 * (server.seconds or 0.0) / tasks if backend == "postgres" else 0.0,
        "executor_cpu_us": 1e6 * cpu / tasks,
        "claims_per_task": sum(c["claims"] for c in counted) / tasks,
        "empty_claims_per_task": sum(c["empty_claims"] for c in counted) / tasks,
        "wait_ms_p50": statistics.median(waits),
        "wait_ms_p99": waits[int(0.99 * (len(waits) - 1))],
        "wait_ms_max": waits[-1],
    }


def run_floor(rate: float, seconds: float, backend: str = "postgres") -> dict[str, Any]:
    tasks = int(rate * seconds)
    # (SQLite has one writer at a time: a claim is a plain UPDATE there)
    lock = " FOR UPDATE SKIP LOCKED" if backend == "postgres" else ""
    mark = "%s" if backend == "postgres" else "?"
    with database(backend) as url:
        enqueuer, _ = _connect(backend, url)
        worker, _ = _connect(backend, url)
        if backend == "sqlite":
            for conn in (enqueuer, worker):
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
        try:
            enqueuer.execute("CREATE TABLE floor_trickle (id BIGINT PRIMARY KEY, "
                             "status TEXT NOT NULL, inputs TEXT, output TEXT, owner TEXT)")
            enqueuer.execute("CREATE INDEX floor_trickle_status ON floor_trickle (status, id)")
            time.sleep(SETTLE_SECONDS)
            waits = []
            with ServerCPU() as server:
                t0 = time.perf_counter()
                for i in range(tasks):
                    enqueued = time.perf_counter()
                    enqueuer.execute("INSERT INTO floor_trickle (id, status, inputs) "
                                     f"VALUES ({mark}, 'ENQUEUED', '[1]')", (i,))
                    [(claimed,)] = worker.execute(
                        "UPDATE floor_trickle SET status = 'PENDING', owner = 'me' WHERE id IN "
                        "(SELECT id FROM floor_trickle WHERE status = 'ENQUEUED' ORDER BY id "
                        f"LIMIT 1{lock}) RETURNING id").fetchall()
                    waits.append(1000 * (time.perf_counter() - enqueued))
                    worker.execute("UPDATE floor_trickle SET status = 'SUCCESS', output = '2' "
                                   f"WHERE id = {mark}", (claimed,))
                    pause = t0 + (i + 1) / rate - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                elapsed = time.perf_counter() - t0
        finally:
            for conn in (enqueuer, worker):
                conn.close()
    waits.sort()
    return {
        "executors": 0, "floor": True, "tasks": tasks, "rate": tasks / elapsed,
        "server_cpu_us": 1e6 * (server.seconds or 0.0) / tasks if backend == "postgres" else 0.0,
        "executor_cpu_us": 0.0,
        "claims_per_task": 1.0, "empty_claims_per_task": 0.0,
        "wait_ms_p50": statistics.median(waits),
        "wait_ms_p99": waits[int(0.99 * (len(waits) - 1))], "wait_ms_max": waits[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--executors", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rate", type=float, default=200.0, help="enqueues a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--task-ms", type=float, default=0.0,
                        help="each task holds its thread this long (0: a tiny task)")
    parser.add_argument("--threads", type=int, default=64,
                        help="workflow threads of each executor process")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if min(args.executors) < 0 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--executors must be 0 (the enqueuer runs the tasks) or more, "
                     "--rate and --seconds positive")
    if args.task_ms < 0 or args.threads < 1:
        parser.error("--task-ms must be 0 or more and --threads 1 or more")
    results = []
    for _ in range(args.repeat):
        results += [run(n, args.rate, args.seconds, args.task_ms, args.threads, args.backend)
                    for n in args.executors]
        if not args.no_floor:
            results.append(run_floor(args.rate, args.seconds, args.backend))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'executors':>9s} {'tasks/s':>8s} {'server µs':>10s} {'executors µs':>13s} "
          f"{'claims (empty)':>15s} {'wait p50/p99/max ms':>20s}   (per task)")
    for r in results:
        who = (f"{'floor':>9s}" if r.get("floor") else f"{'0 (self)':>9s}"
               if not r["executors"] else f"{r['executors']:9d}")
        print(f"{who} {r['rate']:8.0f} {r['server_cpu_us']:10.0f} "
              f"{r['executor_cpu_us']:13.0f} {r['claims_per_task']:8.2f} "
              f"({r['empty_claims_per_task']:.2f}) "
              f"{r['wait_ms_p50']:8.0f}/{r['wait_ms_p99']:.0f}/{r['wait_ms_max']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
