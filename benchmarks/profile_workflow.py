"""Where relos spends its time on the 3-step workflow of bench_workflow.py.

Three views, for one backend at a time:

split
    Wall time per workflow inside the store calls (insert_workflow, then
    write_batch for each write the group committer makes: two held step
    records, then the last one with the completion; ``perf_counter_ns``) and
    outside them (the runtime's Python, run between blocking database waits).
null
    The runtime alone: the same workflow with those store calls replaced by
    no-ops, so nothing blocks; CPU time per workflow (``thread_time_ns``). The
    gap between this and "outside" above is what the same code costs when it
    runs right after a blocking wait (cold caches, a descheduled CPU).
cprofile
    The top functions by own time under cProfile (``--top N``).

Usage::

    python benchmarks/profile_workflow.py --backend sqlite --iterations 3000
    python benchmarks/profile_workflow.py --backend postgres --top 30
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import bench_workflow as bw

import relos.dbos as relos_dbos
from relos import DBOS

#: The store calls of one workflow: its row, then (group commit) each write batch.
HOT_STORE_CALLS = ("insert_workflow", "write_batch")


def _launch(url: str) -> Any:
    DBOS.destroy()
    DBOS(config={"system_database_url": url, "sqlite_synchronous": "FULL",
                 "log_level": "WARNING"})
    DBOS.launch()
    return relos_dbos._runtime


def split(url: str, iterations: int, warmup: int) -> dict[str, float]:
    rt = _launch(url)
    store = rt.store
    inside = [0]
    clock = time.perf_counter_ns

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            t0 = clock()
            try:
                return fn(*args)
            finally:
                inside[0] += clock() - t0
        return call

    try:
        for name in HOT_STORE_CALLS:
            setattr(store, name, timed(getattr(store, name)))
        for i in range(warmup):
            bw.bench_workflow(i)
        total: list[int] = []
        store_ns: list[int] = []
        for i in range(iterations):
            inside[0] = 0
            t0 = clock()
            bw.bench_workflow(i)
            total.append(clock() - t0)
            store_ns.append(inside[0])
    finally:
        DBOS.destroy()
    outside = [t - s for t, s in zip(total, store_ns, strict=True)]
    return {
        "total_mean_us": statistics.fmean(total) / 1e3,
        "store_mean_us": statistics.fmean(store_ns) / 1e3,
        "outside_mean_us": statistics.fmean(outside) / 1e3,
        "outside_median_us": statistics.median(outside) / 1e3,
    }


def null_store(url: str, iterations: int, warmup: int) -> dict[str, float]:
    rt = _launch(url)
    store = rt.store
    try:
        store.insert_workflow = lambda row: None
        store.write_batch = lambda steps, completions: None
        for i in range(warmup):
            bw.bench_workflow(i)
        cpu: list[float] = []
        for _ in range(5):
            c0 = time.thread_time_ns()
            for i in range(iterations):
                bw.bench_workflow(i)
            cpu.append((time.thread_time_ns() - c0) / iterations / 1e3)
    finally:
        DBOS.destroy()
    return {"runtime_cpu_us": statistics.median(cpu)}


def profile(url: str, iterations: int, warmup: int, top: int) -> str:
    _launch(url)
    try:
        for i in range(warmup):
            bw.bench_workflow(i)
        prof = cProfile.Profile()
        prof.enable()
        for i in range(iterations):
            bw.bench_workflow(i)
        prof.disable()
    finally:
        DBOS.destroy()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--top", type=int, default=25, help="cProfile rows (0: skip cProfile)")
    parser.add_argument("--pg-url", default=bw.PG_BASE)
    args = parser.parse_args(argv)
    pg = args.pg_url.rstrip("/")
    with bw.fresh_database(args.backend, pg) as (url, _):
        s = split(url, args.iterations, args.warmup)
    with bw.fresh_database(args.backend, pg) as (url, _):
        n = null_store(url, args.iterations, args.warmup)
    print(f"{args.backend}: {args.iterations} workflows")
    print(f"  wall per workflow          {s['total_mean_us']:8.1f} us (mean)")
    print(f"    inside the store calls   {s['store_mean_us']:8.1f} us")
    print(f"    outside them (runtime)   {s['outside_mean_us']:8.1f} us "
          f"(median {s['outside_median_us']:.1f})")
    print(f"  runtime CPU, no-op store   {n['runtime_cpu_us']:8.1f} us per workflow")
    if args.top:
        with bw.fresh_database(args.backend, pg) as (url, _):
            print(profile(url, args.iterations, args.warmup, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
