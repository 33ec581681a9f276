"""Where a 3-step workflow's time goes, layer by layer.

Four loops are measured on one fresh database, in alternating blocks, each
doing the work of one workflow per iteration:

floor   five single-row commits into a plain table (as in bench_workflow.py);
sql     relos's own five statements (insert_workflow, three insert_step,
        complete_workflow) sent through the bare driver, with relos's schema,
        indexes and triggers: the database's share;
store   the same five writes through the store methods (``insert_workflow``,
        ``record_step`` x3, ``complete_workflow``): adds the store's Python;
relos   the real workflow called directly: adds the runtime's Python.

Differences between consecutive layers attribute the overhead above the floor::

    python benchmarks/bench_layers.py --backend both --iterations 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import bench_workflow as bw

from relos import DBOS
from relos.store import open_store
from relos.store.base import PENDING, SUCCESS, StepRow, WorkflowRow

LAYERS = ("floor", "sql", "store", "relos")
STEP_NAMES = ("bench_step_one", "bench_step_two", "bench_step_three")


def _rows(i: int, prefix: str) -> tuple[WorkflowRow, list[StepRow]]:
    """The rows relos writes for bench_workflow(i), with a fresh workflow ID."""
    now = int(time.time() * 1000)
    wid = f"{prefix}-{uuid.uuid4()}"
    row = WorkflowRow(workflow_id=wid, status=PENDING, name="bench_workflow",
                      executor_id="local", created_at=now, updated_at=now,
                      inputs=f'{{"args":[{i}],"kwargs":{{}}}}', owner=prefix,
                      application_version="0123456789abcdef", application_id="relos",
                      started_at=now)
    steps = [StepRow(wid, fid, name, "step", str(i + fid), None, now, now, executor_id="local")
             for fid, name in enumerate(STEP_NAMES)]
    return row, steps


def run_once(backend: str, iterations: int, warmup: int, block: int,
             pg_base: str) -> dict[str, Any]:
    with bw.fresh_database(backend, pg_base) as (url, floor_location):
        DBOS.destroy()
        DBOS(config={"system_database_url": url, "sqlite_synchronous": "FULL",
                     "log_level": "WARNING"})
        DBOS.launch()
        store: Any = open_store(url, sqlite_synchronous="FULL")
        # relos's statements in positional form, exactly as the store sends them.
        ins_wf, ins_step, done_wf = (store.st[n] for n in (
            "insert_workflow", "insert_step", "complete_workflow"))
        if backend == "sqlite":
            floor: Any = bw.SQLiteFloor(floor_location)
            raw = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
                raw.execute(f"PRAGMA {pragma}")

            def execute(sql: str, args: tuple[Any, ...]) -> None:
                raw.execute(sql, args)
        else:
            import psycopg

            floor = bw.PostgresFloor(floor_location)
            raw = psycopg.connect(url, autocommit=True)
            cur = raw.cursor()

            def execute(sql: str, args: tuple[Any, ...]) -> None:
                cur.execute(sql, args, prepare=True)

        prefix = uuid.uuid4().hex[:8]

        def floor_it(i: int) -> None:
            floor.iteration(f"{prefix}-{i:09d}")

        def sql_it(i: int) -> None:
            row, steps = _rows(i, prefix + "s")
            execute(ins_wf.sql, ins_wf.of_row(row))
            for s in steps:
                execute(ins_step.sql, ins_step.of_row(s))
            execute(done_wf.sql, done_wf.of_map({"workflow_id": row.workflow_id, "status": SUCCESS,
                                                 "output": '"r"', "error": None,
                                                 "now": row.created_at}))

        def store_it(i: int) -> None:
            row, steps = _rows(i, prefix + "t")
            store.insert_workflow(row)
            for s in steps:
                store.record_step(s)
            store.complete_workflow(row.workflow_id, SUCCESS, '"r"', None, row.created_at)

        def relos_it(i: int) -> None:
            bw.bench_workflow(i)

        loops: dict[str, Callable[[int], None]] = {
            "floor": floor_it, "sql": sql_it, "store": store_it, "relos": relos_it}
        samples: dict[str, list[int]] = {k: [] for k in LAYERS}
        sink: list[int] = []
        try:
            for fn in loops.values():
                bw.timed(fn, 0, warmup, sink)
            done = 0
            while done < iterations:
                n = min(block, iterations - done)
                for name, fn in loops.items():
                    bw.timed(fn, warmup + done, n, samples[name])
                done += n
        finally:
            floor.close()
            raw.close()
            store.close()
            DBOS.destroy()
    return {name: bw.summarize(s) for name, s in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--pg-url", default=bw.PG_BASE)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    out: dict[str, Any] = {}
    for backend in backends:
        runs = [run_once(backend, args.iterations, args.warmup, args.block,
                         args.pg_url.rstrip("/")) for _ in range(args.repeat)]
        out[backend] = {
            "runs": runs,
            "median_of_runs": {
                layer: {k: statistics.median(r[layer][k] for r in runs)
                        for k in ("mean_ms", "median_ms", "p99_ms")}
                for layer in LAYERS
            },
        }
    if args.json:
        print(json.dumps({"iterations": args.iterations, "repeat": args.repeat,
                          "machine": bw.machine(), "results": out}, indent=2))
        return 0
    print(f"\n{args.iterations} iterations, {args.repeat} run(s), median of runs; ms per "
          f"workflow (or per 5 commits); delta = this layer minus the one above\n")
    print(f"{'backend':<9} {'layer':<6} {'mean':>8} {'median':>8} {'p99':>8} "
          f"{'d mean':>8} {'d median':>9}")
    for backend, res in out.items():
        prev = None
        for layer in LAYERS:
            m = res["median_of_runs"][layer]
            d_mean = d_med = ""
            if prev is not None:
                d_mean = f"{m['mean_ms'] - prev['mean_ms']:+8.3f}"
                d_med = f"{m['median_ms'] - prev['median_ms']:+9.3f}"
            print(f"{backend:<9} {layer:<6} {m['mean_ms']:>8.3f} {m['median_ms']:>8.3f} "
                  f"{m['p99_ms']:>8.3f} {d_mean:>8} {d_med:>9}")
            prev = m
    return 0


if __name__ == "__main__":
    sys.exit(main())
