"""Many workflows sleeping at once in one process: memory, start rate and
wake-up lateness of suspended workflows.

For each backend, on a fresh database, one launched process (default
configuration: ``suspend_after_seconds`` = 5, 64 workflow threads) runs
``--workflows`` workflows that each sleep until a target time and then return
how late they woke. The targets are spread evenly over ``--window`` seconds
that begin only after every workflow is asleep, so the wake-ups measure the
steady state of the waker, not the start-up.

start
    How the workflows are started (``--start``): ``queue`` enqueues them with
    ``Queue.enqueue_many`` (one transaction per 1,000) and the process's
    dequeuer runs them; ``direct`` calls ``DBOS.start_workflow`` in a loop.
    Each run records its sleep (one commit) and is suspended (one more); its
    thread goes back to the pool. Reported: workflows started per second (the
    enqueue or start calls) and workflows asleep per second (from the first
    start until every one is suspended).

asleep
    The most workflows suspended at once (counted in the database), with the
    process's thread count at that moment.

wake-up lateness
    Each workflow returns ``time.time() - target`` right after its sleep
    returns, i.e. after it was claimed by the waker and replayed: p50, p99 and
    max over all of them.

peak RSS
    The process's maximum resident set size (``ru_maxrss``); each backend runs
    in its own subprocess so the figures do not mix.

Usage::

    python benchmarks/bench_sleepers.py --backend both --workflows 100000
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

from benchdb import database

from relos import DBOS, Queue

sleepers_queue = Queue("bench.sleepers")


@DBOS.workflow(name="bench.sleepers.sleeper")
def sleeper(target: float) -> float:
    DBOS.sleep(target - time.time())  # recorded once: a replay sleeps until the same time
    return time.time() - target


def _runtime() -> Any:
    from relos import dbos as facade

    return facade._runtime


def count_asleep() -> int:
    store = _runtime().store
    return int(store._one(f"SELECT COUNT(*) FROM {store.prefix}workflow_status "
                          f"WHERE status = 'PENDING' AND wake_at_epoch_ms IS NOT NULL", {})[0])


def count_done() -> int:
    store = _runtime().store
    return int(store._one(f"SELECT COUNT(*) FROM {store.prefix}workflow_status "
                          f"WHERE status = 'SUCCESS'", {})[0])


def start_all(targets: list[float], how: str) -> float:
    """Start one sleeper per target; the seconds the start calls took."""
    t = time.perf_counter()
    if how == "queue":
        for i in range(0, len(targets), 1000):
            sleepers_queue.enqueue_many(sleeper, [(x,) for x in targets[i:i + 1000]])
    else:
        rt = _runtime()
        for x in targets:
            # Keep the backlog of started-but-not-yet-asleep workflows bounded.
            while rt.free_workflow_slots() < -2000:
                time.sleep(0.001)
            DBOS.start_workflow(sleeper, x)
    return time.perf_counter() - t


def wait_until(check: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError("benchmark stalled")
        time.sleep(0.05)


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def measure(backend: str, n: int, window: float, how: str) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "workflows": n, "window_s": window,
                           "start": how}
    with database(backend) as url:
        DBOS.destroy()
        DBOS(config={"system_database_url": url, "log_level": "WARNING"})
        DBOS.launch()
        try:
            # A short warm-up run measures the start rate, to place the wake-up
            # window after the last start.
            warm = min(2000, max(100, n // 20))
            t0 = time.perf_counter()
            start_all([time.time() + 3600 for _ in range(warm)], how)
            wait_until(lambda: count_asleep() >= warm, 600)
            rate = warm / (time.perf_counter() - t0)
            for st in DBOS.list_workflows(status="PENDING", load_input=False,
                                          load_output=False):
                DBOS.cancel_workflow(st.workflow_id)
            wait_until(lambda: count_asleep() == 0, 60)

            lead = n / rate * 1.5 + 10
            first = time.time() + lead
            targets = [first + window * i / n for i in range(n)]
            peak = {"asleep": 0, "threads": 0}
            stop = threading.Event()

            def watch() -> None:
                while not stop.wait(1.0):
                    asleep = count_asleep()
                    if asleep > peak["asleep"]:
                        peak.update(asleep=asleep, threads=threading.active_count())

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            t0 = time.perf_counter()
            calls = start_all(targets, how)
            wait_until(lambda: count_asleep() >= n or time.time() > first, lead + 60)
            asleep_after = time.perf_counter() - t0
            out["start_calls_per_s"] = round(n / calls)
            out["asleep_per_s"] = round(n / asleep_after)
            out["all_asleep_before_first_wake"] = time.time() <= first
            wait_until(lambda: count_done() >= n, lead + window + 600)
            stop.set()
            watcher.join()
            out["peak_asleep"] = peak["asleep"]
            out["threads_at_peak"] = peak["threads"]
            late = sorted(float(st.output) for st in DBOS.list_workflows(
                name="bench.sleepers.sleeper", status="SUCCESS", load_input=False))
            out["late_p50_ms"] = round(percentile(late, 0.50) * 1000, 1)
            out["late_p99_ms"] = round(percentile(late, 0.99) * 1000, 1)
            out["late_max_ms"] = round(late[-1] * 1000, 1)
            out["wakeups_per_s"] = round(n / window)
        finally:
            DBOS.destroy()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--workflows", type=int, default=100_000)
    parser.add_argument("--window", type=float, default=60.0,
                        help="seconds over which the wake-up times are spread")
    parser.add_argument("--start", choices=["queue", "direct"], default="queue")
    parser.add_argument("--json", action="store_true", help="print one JSON line per backend")
    args = parser.parse_args()
    if args.workflows <= 0 or args.window <= 0:
        parser.error("--workflows and --window must be positive")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if len(backends) > 1:  # one subprocess per backend: separate peak RSS
        for b in backends:
            subprocess.run([sys.executable, __file__, "--backend", b, "--workflows",
                            str(args.workflows), "--window", str(args.window),
                            "--start", args.start] + (["--json"] if args.json else []),
                           check=True)
        return
    result = measure(backends[0], args.workflows, args.window, args.start)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['backend']}: {result['workflows']:,} sleeping workflows "
          f"(started via {result['start']}, wake-ups over {result['window_s']:.0f} s)")
    print(f"  start calls            {result['start_calls_per_s']:>10,} /s")
    print(f"  asleep (suspended)     {result['asleep_per_s']:>10,} /s"
          f"{'' if result['all_asleep_before_first_wake'] else '  (not all before 1st wake)'}")
    print(f"  peak asleep at once    {result['peak_asleep']:>10,}   "
          f"({result['threads_at_peak']} threads in the process)")
    print(f"  wake-ups               {result['wakeups_per_s']:>10,} /s")
    print(f"  lateness p50/p99/max   {result['late_p50_ms']:>7} / {result['late_p99_ms']} / "
          f"{result['late_max_ms']} ms")
    print(f"  peak RSS               {result['peak_rss_mb']:>10,} MB")


if __name__ == "__main__":
    main()
