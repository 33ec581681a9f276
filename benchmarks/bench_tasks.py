"""A million tiny tasks through a relos queue, end to end, beside the raw floor.

relos: one launched process enqueues ``--tasks`` tiny workflows with
``queue.enqueue_many`` (``--batch`` per call, one round trip each) while its
queue runner claims and runs them; the clock runs from the first enqueue to
the last task's SUCCESS committed. A task is a workflow whose body is the
task (no step): its row goes ENQUEUED -> PENDING -> SUCCESS with its output,
every change in the status history, queryable by SQL all along. A progress
bar shows the tasks done.

With ``--workers N`` the tasks run in a cluster instead: N executor processes
on the same database claim and run them, and the launched process only
enqueues (the case the scheduler is built for: many executors, one
PostgreSQL). The progress bar then counts from the database.

Floor: the same number of rows in a bare table, inserted ``--batch`` per
transaction (one multi-row INSERT), then drained by batched claim-and-complete
with psycopg: per transaction, claim ``--batch`` rows (UPDATE ... RETURNING
with FOR UPDATE SKIP LOCKED) and mark them done (one UPDATE); no history, no
indexes beyond the key and the status.

Where the PostgreSQL server runs on this machine, the CPU time its processes
spent is reported per task for both (``benchdb.ServerCPU``), and for relos
the CPU time of its own processes (this one and its ``--workers``): less at
the mercy of other work on the machine than the rates. ``--locale icu-en-US`` runs both
on databases whose text collation is English (ICU), as production databases
often have, instead of the server's default.

Usage::

    python benchmarks/bench_tasks.py --tasks 1000000
    python benchmarks/bench_tasks.py --tasks 100000 --backend sqlite
    python benchmarks/bench_tasks.py --tasks 1000000 --workers 2
    python benchmarks/bench_tasks.py --tasks 200000 --locale icu-en-US
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import relos.dbos
from relos import DBOS, Queue

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_queue import StatusCounter  # noqa: E402
from benchdb import LOCALES, ServerCPU, database  # noqa: E402

tasks_queue = Queue("bench.tasks")
_done = 0
_done_lock = threading.Lock()


@DBOS.workflow(name="bench.tiny")
def tiny(i: int) -> int:
    global _done
    with _done_lock:  # for the progress bar only; the figures come from SQL
        _done += 1
    return i * 2


@DBOS.workflow(name="bench.busy")
def busy(i: int, ms: float) -> int:
    """A task that holds its thread ``ms`` milliseconds (for bench_trickle.py
    ``--task-ms``: executors that fill up)."""
    time.sleep(ms / 1000)
    return i * 2


def serve(url: str, threads: int) -> None:
    """An executor of the cluster (``--workers``): run tasks until stdin closes."""
    DBOS.listen_queues(["bench.tasks"])
    DBOS(config={"system_database_url": url, "log_level": "WARNING",
                 "max_workflow_threads": threads})
    DBOS.launch()
    print("ready", flush=True)
    sys.stdin.read()
    runner = relos.dbos._rt().queue_runner
    if runner is not None:  # (what its queue runner's claims were, for bench_trickle.py)
        print(json.dumps({"claims": runner.claims, "empty_claims": runner.empty_claims}),
              flush=True)
    DBOS.destroy()


def start_workers(url: str, workers: int, threads: int) -> list[subprocess.Popen[str]]:
    procs = [subprocess.Popen([sys.executable, __file__, "--serve", url, "--threads",
                               str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(workers)]
    for proc in procs:
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise SystemExit("an executor process did not start")
    return procs


def run_relos(url: str, tasks: int, batch: int, threads: int, workers: int = 0
              ) -> dict[str, Any]:
    DBOS.destroy()
    DBOS.listen_queues([] if workers else ["bench.tasks"])
    DBOS(config={"system_database_url": url, "log_level": "WARNING",
                 "max_workflow_threads": threads})
    DBOS.launch()
    procs = start_workers(url, workers, threads) if workers else []
    count = StatusCounter(url)
    enqueued = 0

    def done_so_far() -> int:
        # In this process, the tasks it ran; in a cluster, from the database.
        return _done if not workers else enqueued - count.unfinished()

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    cpu0 = _client_cpu_seconds()
    try:
        with ServerCPU() as server, Progress(*columns, transient=False) as bar:
            enq = bar.add_task("enqueued", total=tasks)
            run = bar.add_task("done    ", total=tasks)
            t0 = time.perf_counter()
            enqueued_at = t0
            last_count = t0
            for start in range(0, tasks, batch):
                n = min(batch, tasks - start)
                tasks_queue.enqueue_many(tiny, [(i,) for i in range(start, start + n)])
                enqueued = start + n
                bar.update(enq, completed=enqueued)
                if not workers or time.perf_counter() - last_count > 0.5:
                    bar.update(run, completed=done_so_far())
                    last_count = time.perf_counter()
                enqueued_at = time.perf_counter()
            while True:
                done = done_so_far()
                bar.update(run, completed=min(done, tasks))
                if done >= tasks and count("SUCCESS") >= tasks:
                    break
                time.sleep(0.2 if not workers else 0.05)
            elapsed = time.perf_counter() - t0
        succeeded = count("SUCCESS")
        left = count("ENQUEUED") + count("PENDING")
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            proc.wait(timeout=60)
        DBOS.destroy()
        count.close()
    client_cpu = _client_cpu_seconds() - cpu0
    return {"client_cpu_s": client_cpu, "tasks": tasks, "seconds": elapsed, "per_s": tasks / elapsed,
            "enqueue_per_s": tasks / (enqueued_at - t0), "succeeded": succeeded,
            "left_unfinished": left, "workers": workers, "server_cpu_s": server.seconds}


def _client_cpu_seconds() -> float:
    """CPU time of this process and of its children that have exited (the
    executor processes of ``--workers``, waited for before reading it)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_floor(url: str, tasks: int, batch: int) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE floor_tiny (id BIGINT PRIMARY KEY, status TEXT NOT NULL, "
                     "inputs TEXT, output TEXT, owner TEXT)")
        conn.execute("CREATE INDEX floor_tiny_status ON floor_tiny (status, id)")
        with ServerCPU() as server:
            t0 = time.perf_counter()
            for start in range(0, tasks, batch):
                ids = list(range(start, min(tasks, start + batch)))
                conn.execute("INSERT INTO floor_tiny (id, status, inputs) "
                             "SELECT i, 'ENQUEUED', '[1]' FROM unnest(%s::bigint[]) AS i",
                             (ids,))
            enqueued = time.perf_counter()
            done = 0
            while True:
                with conn.transaction():
                    claimed = [r[0] for r in conn.execute(
                        "UPDATE floor_tiny SET status = 'PENDING', owner = 'me' WHERE id IN "
                        "(SELECT id FROM floor_tiny WHERE status = 'ENQUEUED' ORDER BY id "
                        "LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id", (batch,)).fetchall()]
                    if not claimed:
                        break
                    conn.execute("UPDATE floor_tiny SET status = 'SUCCESS', output = '2' "
                                 "WHERE id = ANY(%s)", (claimed,))
                done += len(claimed)
            finished = time.perf_counter()
    return {"tasks": done, "seconds": finished - t0, "per_s": done / (finished - t0),
            "enqueue_per_s": tasks / (enqueued - t0),
            "drain_per_s": done / (finished - enqueued), "server_cpu_s": server.seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=64, help="max_workflow_threads")
    parser.add_argument("--workers", type=int, default=0,
                        help="executor processes running the tasks (0: this process runs them)")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--locale", choices=sorted(LOCALES), default="default",
                        help="the PostgreSQL databases' locale (icu-en-US: text compared as "
                             "in English, as production databases often do)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.threads)
        return 0
    if args.workers < 0:
        parser.error("--workers must be 0 or more")
    out: dict[str, Any] = {"backend": args.backend}
    with database(args.backend, locale=args.locale) as url:
        out["relos"] = run_relos(url, args.tasks, args.batch, args.threads, args.workers)
    if not args.no_floor and args.backend == "postgres":
        with database(args.backend, locale=args.locale) as url:
            out["floor"] = run_floor(url, args.tasks, args.batch)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    r = out["relos"]
    where = f", {args.workers} executor processes" if args.workers else ""
    print(f"relos  {args.backend}{where}: {r['tasks']:,} tasks in {r['seconds']:.1f} s = "
          f"{r['per_s']:,.0f} tasks/s end to end (enqueue {r['enqueue_per_s']:,.0f}/s); "
          f"{r['succeeded']:,} SUCCESS, {r['left_unfinished']} left unfinished")
    if args.backend == "postgres" and r["server_cpu_s"] is not None:
        print(f"relos  server CPU: {r['server_cpu_s'] / r['tasks'] * 1e6:.1f} µs per task, "
              f"relos's processes {r['client_cpu_s'] / r['tasks'] * 1e6:.1f} µs per task")
    if "floor" in out:
        f = out["floor"]
        print(f"floor  {args.backend}: {f['tasks']:,} rows in {f['seconds']:.1f} s = "
              f"{f['per_s']:,.0f} tasks/s end to end (insert {f['enqueue_per_s']:,.0f}/s, "
              f"claim-and-complete {f['drain_per_s']:,.0f}/s)")
        if f["server_cpu_s"] is not None:
            print(f"floor  server CPU: {f['server_cpu_s'] / f['tasks'] * 1e6:.1f} µs per task")
        print(f"relos/floor: {r['per_s'] / f['per_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
