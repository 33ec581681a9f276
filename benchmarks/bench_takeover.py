"""How long a live executor takes to finish the running workflows of one
that was killed, beside the time it takes to run the same workflows fresh.

For each backend, on a fresh database:

1. Executor process A (same application version as B) starts ``--workflows``
   workflows (default 1,000). Each runs ``hold``, a step that waits until a
   release file exists (one thread of the process polls for it every 10 ms
   and wakes the waiting steps), so all of them are really running in A (one
   thread each), then ``effect``, a ``@DBOS.transaction`` inserting one row
   into a side table, and returns.
2. Executor process B is launched and idle.
3. Once every workflow is PENDING, owned by A and inside ``hold``, A is
   killed with SIGKILL and the release file created. **take-over** is the time
   from the kill until every workflow is SUCCESS: B notices that A's PID is
   gone at its next recovery pass (``--recovery-interval``, 0.5 s by default;
   the default configuration is 5 s), claims each workflow by
   compare-and-swap on its owner, and runs it again from its first
   unrecorded step (``hold``, which returns at once now).
4. **fresh** (the reference): B starts the same number of new workflows of
   the same function itself, and the time until all are SUCCESS is measured
   the same way. The difference is what the take-over costs over running the
   work at all.

Afterwards the script checks that every workflow succeeded with its output,
that each taken-over workflow was recovered once (``recovery_attempts`` = 2)
and that the side table holds exactly one row per workflow: every workflow
completed exactly once.

Usage::

    python benchmarks/bench_takeover.py --backend both --workflows 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from benchdb import PG_BASE, database

from relos import DBOS

VERSION = "bench-takeover"
#: The longest any phase may take before the run is abandoned.
DEADLINE = 600.0

_role: dict[str, Any] = {}
_holding = 0
_holding_lock = threading.Lock()
_released = threading.Event()


@DBOS.step(name="bench.takeover.hold")
def hold(i: int) -> int:
    """Running until the release file exists (in A: until A is killed)."""
    global _holding
    with _holding_lock:
        _holding += 1
        if _holding == _role["workflows"]:
            print("holding", flush=True)
    _released.wait()
    return i


@DBOS.transaction(name="bench.takeover.effect")
def effect(i: int) -> None:
    marker = "%s" if _role["url"].startswith("postgres") else "?"
    DBOS.sql_connection.execute(
        f"INSERT INTO takeover_effects (workflow_id, pid) VALUES ({marker}, {marker})",
        (DBOS.workflow_id, os.getpid()))


@DBOS.workflow(name="bench.takeover.task")
def task(i: int) -> int:
    effect(hold(i))
    return i * 2


# --- the executor processes --------------------------------------------------------------


def executor(role: str, url: str, folder: str, workflows: int, recovery_interval: float) -> None:
    """Process A ('a': start the workflows, then hang until killed) or B ('b':
    idle; start the fresh workflows when asked; stop when asked)."""
    from relos import SetWorkflowID

    _role.update(url=url, release=os.path.join(folder, "release"), workflows=workflows)
    DBOS(config={"system_database_url": url, "application_version": VERSION,
                 "max_workflow_threads": workflows + 100, "log_level": "WARNING",
                 "recovery_interval_seconds": recovery_interval})
    DBOS.launch()

    def watch() -> None:
        while not os.path.exists(_role["release"]):
            time.sleep(0.01)
        _released.set()

    threading.Thread(target=watch, daemon=True).start()
    print("ready", flush=True)
    if role == "a":
        for i in range(workflows):
            with SetWorkflowID(f"held-{i}"):
                DBOS.start_workflow(task, i)
        time.sleep(DEADLINE)  # killed long before
        return
    fresh, stop = os.path.join(folder, "fresh"), os.path.join(folder, "stop")
    while not os.path.exists(stop):
        if os.path.exists(fresh) and not _role.get("started"):
            _role["started"] = True
            for i in range(workflows):
                with SetWorkflowID(f"fresh-{i}"):
                    DBOS.start_workflow(task, i)
        time.sleep(0.005)
    DBOS.destroy()


# --- the driver --------------------------------------------------------------------------


def app_sql(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run SQL on the database outside relos (the side table lives there)."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60)) as conn:
            rows = conn.execute(sql, params).fetchall()
            conn.commit()
            return [tuple(r) for r in rows]
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.replace("?", "%s"), params)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []


class Process:
    def __init__(self, role: str, url: str, folder: Path, workflows: int,
                 recovery_interval: float) -> None:
        self.out = open(folder / f"{role}.out", "wb")  # noqa: SIM115 (closed in stop)
        self.err_path = folder / f"{role}.err"
        self.err = open(self.err_path, "wb")  # noqa: SIM115
        self.out_path = folder / f"{role}.out"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", role, "--url", url, "--folder", str(folder),
             "--workflows", str(workflows), "--recovery-interval", str(recovery_interval)],
            stdout=self.out, stderr=self.err)

    def said(self, word: str) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"executor exited ({self.proc.returncode}):\n"
                               f"{self.err_path.read_text(errors='replace')}")
        return word in self.out_path.read_text().split()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.out.close()
        self.err.close()


def wait_for(check: Callable[[], Any], what: str, interval: float = 0.01) -> float:
    """Poll ``check`` until it is truthy; the perf_counter time it first was."""
    end = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)
    return time.perf_counter()


def measure(backend: str, pg_url: str, workflows: int, recovery_interval: float
            ) -> dict[str, Any]:
    from relos.store import open_store
    from relos.store.base import SUCCESS, ListFilter

    out: dict[str, Any] = {"backend": backend, "workflows": workflows,
                           "recovery_interval_s": recovery_interval}
    folder = Path(tempfile.mkdtemp(prefix="relos-takeover-"))
    with database(backend, pg_url) as url:
        store = open_store(url)
        store.migrate()
        app_sql(url, "CREATE TABLE takeover_effects (workflow_id TEXT NOT NULL, "
                     "pid INTEGER NOT NULL)")

        def succeeded(prefix: str) -> int:
            return int(store._one(
                f"SELECT COUNT(*) FROM {store.prefix}workflow_status WHERE status = "
                f"'SUCCESS' AND workflow_id LIKE {store._ph('p')}", {"p": prefix + "-%"})[0])

        procs: list[Process] = []
        try:
            a = Process("a", url, folder, workflows, recovery_interval)
            procs.append(a)
            wait_for(lambda: a.said("holding"), "A to hold every workflow", 0.05)
            [a_row] = [e for e in store.get_executors() if e.pid == a.proc.pid]
            held = store.list_workflows(ListFilter(status=["PENDING"], load_values=False))
            assert len(held) == workflows and {r.owner for r in held} == {a_row.instance_id}
            b = Process("b", url, folder, workflows, recovery_interval)
            procs.append(b)
            wait_for(lambda: b.said("ready"), "B to be ready", 0.05)

            t_kill = time.perf_counter()
            os.kill(a.proc.pid, signal.SIGKILL)
            a.proc.wait()
            (folder / "release").touch()
            t_first = wait_for(lambda: succeeded("held") > 0, "the first taken-over success")
            t_all = wait_for(lambda: succeeded("held") == workflows, "every take-over")
            out["takeover_first_s"] = t_first - t_kill
            out["takeover_s"] = t_all - t_kill

            t_fresh = time.perf_counter()
            (folder / "fresh").touch()
            t_done = wait_for(lambda: succeeded("fresh") == workflows, "every fresh workflow")
            out["fresh_s"] = t_done - t_fresh
            (folder / "stop").touch()
            b.proc.wait(timeout=60)

            # Exactly once: every workflow succeeded with its output, each
            # taken-over one was claimed once, and each committed one effect.
            rows = store.list_workflows(ListFilter())
            by_id = {r.workflow_id: r for r in rows}
            for i in range(workflows):
                for prefix in ("held", "fresh"):
                    row = by_id[f"{prefix}-{i}"]
                    assert row.status == SUCCESS and row.output == str(i * 2), row
                assert by_id[f"held-{i}"].recovery_attempts == 2, by_id[f"held-{i}"]
            effects = Counter(r[0] for r in app_sql(url, "SELECT workflow_id, pid FROM "
                                                         "takeover_effects"))
            assert effects == {f"{p}-{i}": 1 for p in ("held", "fresh")
                               for i in range(workflows)}, "an effect missing or doubled"
            pids = {r[0] for r in app_sql(url, "SELECT DISTINCT pid FROM takeover_effects")}
            assert pids == {b.proc.pid}, pids
            out["verified"] = True
        finally:
            for p in procs:
                p.close()
            store.close()
            shutil.rmtree(folder, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--recovery-interval", type=float, default=0.5,
                        help="recovery_interval_seconds of the executors")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--pg-url", default=PG_BASE)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", choices=("a", "b"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        executor(args.role, args.url, args.folder, args.workflows, args.recovery_interval)
        return 0
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = [measure(b, args.pg_url, args.workflows, args.recovery_interval)
               for b in backends for _ in range(args.repeat)]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'backend':10} {'workflows':>9} {'first':>8} {'take-over':>10} {'fresh':>8} "
          f"{'take-over - fresh':>18}")
    for r in results:
        print(f"{r['backend']:10} {r['workflows']:>9} {r['takeover_first_s']:>7.2f}s "
              f"{r['takeover_s']:>9.2f}s {r['fresh_s']:>7.2f}s "
              f"{r['takeover_s'] - r['fresh_s']:>17.2f}s")
    print(f"(recovery pass every {args.recovery_interval} s; 'first': kill to the first "
          f"taken-over workflow done; every workflow verified to complete exactly once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
