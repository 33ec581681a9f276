"""Latency of a 3-step relos workflow beside the raw commit floor of its database.

For each backend this script measures, in one process and with one driver:

relos
    A workflow of three trivial steps called directly (``wf(i)``, not started
    in the background). relos commits five times for it: the workflow row, one
    row per step, and the completion update. Latency is per workflow.

floor
    Five single-row commits in a row, which is the least any durable engine
    must pay for those five checkpoints with the same driver and settings:
    SQLite (``sqlite3``, autocommit, WAL, ``synchronous=FULL``) or PostgreSQL
    (``psycopg`` autocommit connection, one prepared INSERT per commit), into a
    table with a TEXT primary key. Latency is per five commits.

The two are measured in alternating blocks (``--block`` iterations of one,
then of the other) so that noise from other tenants of the machine hits both
alike. Each run uses a fresh database: a SQLite file in a temporary directory,
or a PostgreSQL database created for the run and dropped at its end.

Usage::

    python benchmarks/bench_workflow.py --backend both --iterations 2000 --repeat 3
    python benchmarks/bench_workflow.py --backend postgres --json

PostgreSQL is reached at ``--pg-url`` (default: ``$RELOS_BENCH_POSTGRES_URL`` or
``postgresql://postgres@127.0.0.1:5432``); the user must be allowed to create
databases.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchdb import PG_BASE, database

from relos import DBOS

COMMITS_PER_WORKFLOW = 5
STEPS_PER_WORKFLOW = 3


# --- the workflow under test ------------------------------------------------------------


@DBOS.step()
def bench_step_one(x: int) -> int:
    return x + 1


@DBOS.step()
def bench_step_two(x: int) -> int:
    return x * 2


@DBOS.step()
def bench_step_three(x: int) -> str:
    return f"r{x}"


@DBOS.workflow()
def bench_workflow(x: int) -> str:
    return bench_step_three(bench_step_two(bench_step_one(x)))


# --- databases --------------------------------------------------------------------------


@contextmanager
def fresh_database(backend: str, pg_base: str) -> Iterator[tuple[str, str]]:
    """(relos URL, floor location) of a new, empty database, removed afterwards."""
    with database(backend, pg_base) as url:
        floor = (os.path.join(os.path.dirname(url.removeprefix("sqlite:///")), "floor.sqlite")
                 if backend == "sqlite" else url)
        yield url, floor


def relos_rows(backend: str, url: str) -> tuple[int, int]:
    """(successful workflows, recorded steps) in relos's tables, read directly."""
    wf_sql = "SELECT COUNT(*) FROM {p}workflow_status WHERE status = 'SUCCESS'"
    step_sql = "SELECT COUNT(*) FROM {p}operation_outputs"
    if backend == "sqlite":
        with sqlite3.connect(url[len("sqlite:///"):]) as conn:
            return (conn.execute(wf_sql.format(p="")).fetchone()[0],
                    conn.execute(step_sql.format(p="")).fetchone()[0])
    import psycopg

    with psycopg.connect(url) as conn:
        return (conn.execute(wf_sql.format(p="relos.")).fetchone()[0],  # type: ignore[index]
                conn.execute(step_sql.format(p="relos.")).fetchone()[0])  # type: ignore[index]


class SQLiteFloor:
    """Five autocommit single-row INSERTs; the sqlite3 module caches (prepares)
    the statement after its first use."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE floor (id TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.sql = "INSERT INTO floor (id, value) VALUES (?, ?)"

    def iteration(self, key: str) -> None:
        execute, sql = self.conn.execute, self.sql
        for j in range(COMMITS_PER_WORKFLOW):
            execute(sql, (f"{key}-{j}", "v"))

    def rows(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM floor").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


class PostgresFloor:
    """Five single-row INSERTs on an autocommit connection (so five commits),
    with the statement prepared on the server once and reused."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("CREATE TABLE public.floor (id TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.cur = self.conn.cursor()
        self.sql = "INSERT INTO public.floor (id, value) VALUES (%s, %s)"

    def iteration(self, key: str) -> None:
        execute, sql = self.cur.execute, self.sql
        for j in range(COMMITS_PER_WORKFLOW):
            execute(sql, (f"{key}-{j}", "v"), prepare=True)

    def rows(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM public.floor").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


# --- measuring --------------------------------------------------------------------------


def summarize(samples_ns: list[int]) -> dict[str, float]:
    ms = sorted(s / 1e6 for s in samples_ns)
    p99_index = min(len(ms) - 1, max(0, int(round(0.99 * len(ms))) - 1))
    return {
        "mean_ms": statistics.fmean(ms),
        "median_ms": statistics.median(ms),
        "p99_ms": ms[p99_index],
        "min_ms": ms[0],
        "n": len(ms),
    }


def timed(fn: Callable[[int], Any], start: int, count: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    for i in range(start, start + count):
        t0 = clock()
        fn(i)
        out.append(clock() - t0)


def run_once(backend: str, iterations: int, warmup: int, block: int,
             pg_base: str) -> dict[str, Any]:
    """One measurement on a fresh database: relos and the floor, interleaved."""
    with fresh_database(backend, pg_base) as (url, floor_location):
        DBOS.destroy()
        DBOS(config={"system_database_url": url, "sqlite_synchronous": "FULL",
                     "log_level": "WARNING"})
        DBOS.launch()
        floor = SQLiteFloor(floor_location) if backend == "sqlite" else PostgresFloor(
            floor_location)
        prefix = uuid.uuid4().hex[:8]
        try:

            def floor_iteration(i: int) -> None:
                floor.iteration(f"{prefix}-{i:09d}")

            def relos_iteration(i: int) -> None:
                if bench_workflow(i) != f"r{(i + 1) * 2}":
                    raise AssertionError("the workflow returned a wrong result")

            sink: list[int] = []
            timed(floor_iteration, 0, warmup, sink)
            timed(relos_iteration, 0, warmup, sink)
            relos_ns: list[int] = []
            floor_ns: list[int] = []
            done = 0
            while done < iterations:
                n = min(block, iterations - done)
                timed(floor_iteration, warmup + done, n, floor_ns)
                timed(relos_iteration, warmup + done, n, relos_ns)
                done += n
            total = warmup + iterations
            expected = (total, STEPS_PER_WORKFLOW * total)
            found = relos_rows(backend, url)
            if found != expected:
                raise AssertionError(f"expected (workflows, steps) {expected}, found {found}")
            if floor.rows() != COMMITS_PER_WORKFLOW * (warmup + iterations):
                raise AssertionError("the floor table lacks rows")
        finally:
            floor.close()
            DBOS.destroy()
    relos = summarize(relos_ns)
    flo = summarize(floor_ns)
    return {
        "relos": relos,
        "floor": flo,
        "ratio_mean": relos["mean_ms"] / flo["mean_ms"],
        "ratio_median": relos["median_ms"] / flo["median_ms"],
    }


def median_of_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in runs)

    out: dict[str, Any] = {}
    for side in ("relos", "floor"):
        out[side] = {k: med(side, k) for k in ("mean_ms", "median_ms", "p99_ms", "min_ms")}
    out["ratio_mean"] = statistics.median(r["ratio_mean"] for r in runs)
    out["ratio_median"] = statistics.median(r["ratio_median"] for r in runs)
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {"cpus": os.cpu_count(), "cpu_model": cpu,
                            "python": platform.python_version(),
                            "sqlite": sqlite3.sqlite_version, "platform": platform.platform()}
    try:
        import psycopg

        info["psycopg"] = psycopg.__version__
    except ImportError:
        pass
    return info


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n{args.iterations} iterations after {args.warmup} warm-up, "
          f"{args.repeat} run(s), median of runs; times in ms\n")
    head = (f"{'backend':<9} {'relos ms/workflow':>26}   {'floor ms/5 commits':>26}   "
            f"{'ratio':>6} {'ratio':>6}")
    sub = (f"{'':<9} {'mean':>8} {'median':>8} {'p99':>8}   {'mean':>8} {'median':>8} "
           f"{'p99':>8}   {'mean':>6} {'median':>6}")
    print(head)
    print(sub)
    print("-" * len(sub))
    for backend, res in results.items():
        m = res["median_of_runs"]
        r, f = m["relos"], m["floor"]
        print(f"{backend:<9} {r['mean_ms']:>8.3f} {r['median_ms']:>8.3f} {r['p99_ms']:>8.3f}   "
              f"{f['mean_ms']:>8.3f} {f['median_ms']:>8.3f} {f['p99_ms']:>8.3f}   "
              f"{m['ratio_mean']:>6.2f} {m['ratio_median']:>6.2f}")
    if args.repeat > 1:
        print("\nper run (relos mean / floor mean = ratio):")
        for backend, res in results.items():
            cells = [f"{run['relos']['mean_ms']:.3f}/{run['floor']['mean_ms']:.3f}="
                     f"{run['ratio_mean']:.2f}" for run in res["runs"]]
            print(f"  {backend:<9} " + "  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--iterations", type=int, default=2000,
                        help="measured workflows (and floor iterations) per run")
    parser.add_argument("--warmup", type=int, default=200,
                        help="unmeasured iterations of each before measuring")
    parser.add_argument("--block", type=int, default=100,
                        help="iterations per alternating block of relos and floor")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per backend, each on a fresh database; the table shows "
                             "the median of the runs")
    parser.add_argument("--pg-url", default=PG_BASE,
                        help="PostgreSQL server URL without a database name")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.warmup < 0 or args.block < 1 or args.repeat < 1:
        parser.error("--iterations, --block and --repeat must be positive, --warmup >= 0")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, dict[str, Any]] = {}
    for backend in backends:
        runs = []
        for i in range(args.repeat):
            runs.append(run_once(backend, args.iterations, args.warmup, args.block,
                                 args.pg_url.rstrip("/")))
            if not args.json:
                r = runs[-1]
                print(f"{backend} run {i + 1}/{args.repeat}: relos {r['relos']['mean_ms']:.3f} "
                      f"ms, floor {r['floor']['mean_ms']:.3f} ms, ratio {r['ratio_mean']:.2f}",
                      file=sys.stderr)
        results[backend] = {"runs": runs, "median_of_runs": median_of_runs(runs)}
    if args.json:
        print(json.dumps({
            "benchmark": "3-step workflow vs 5 single-row commits",
            "iterations": args.iterations, "warmup": args.warmup, "block": args.block,
            "repeat": args.repeat, "machine": machine(), "results": results,
        }, indent=2))
    else:
        print_table(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
