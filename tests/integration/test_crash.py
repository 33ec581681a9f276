"""Crash tests: real processes killed with SIGKILL, resumed by new processes.

Each test runs ``crash_app.py`` (a small relos application) in a subprocess,
waits, by polling its side-effect log (and the database), for the moment to
kill it, kills it with SIGKILL, reaps it, and then starts one or two fresh
processes that recover the PENDING workflows. The side-effect log records
every execution of every step with the PID that ran it, so the assertions count
executions exactly: what was recorded before the crash never runs again, what
was interrupted runs again exactly once.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prochelpers import Processes
from relos.store import parse_url
from relos.store.base import StepRow

pytestmark = pytest.mark.slow

APP = Path(__file__).with_name("crash_app.py")
#: How long to wait for anything the test polls for.
DEADLINE = 30.0
#: How long a recovering process may take to finish its workflows.
RECOVERY_TIMEOUT = 60.0


class Crash(Processes):
    """Spawns, watches, kills and reaps the app's processes for one test."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        super().__init__(url, tmp_path, APP, DEADLINE, poll=0.02)

    def spawn(self, mode: str, workflow_id: str, *, workflow: str = "steps", count: int = 1,
              sleep: float = 6.0, go: Path | None = None, stall: Path | None = None
              ) -> subprocess.Popen[bytes]:
        args = [mode, workflow_id, str(self.log), "--workflow", workflow, "--count", str(count),
                "--sleep", str(sleep)]
        if go is not None:
            args += ["--go", str(go)]
        if stall is not None:
            args += ["--stall", str(stall)]
        return self.start(mode, args)

    def wait(self, proc: subprocess.Popen[bytes]) -> int:
        try:
            return proc.wait(timeout=RECOVERY_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"recovering process {proc.pid} did not finish in "
                        f"{RECOVERY_TIMEOUT}s:\n{self.stderr(proc)}")

    def finish(self, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        """Wait for a recovering process to exit 0; the JSON it printed."""
        rc = self.wait(proc)
        assert rc == 0, f"recovering process {proc.pid} exited {rc}:\n{self.stderr(proc)}"
        lines = self.stdout_lines(proc)
        assert lines, f"recovering process {proc.pid} printed nothing:\n{self.stderr(proc)}"
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def steps(self, workflow_id: str) -> dict[int, StepRow]:
        """The steps recorded in the database right now."""
        return self.store().load_steps(workflow_id)

    def user_rows(self, workflow_id: str) -> list[tuple[str, int]]:
        """(note, pid) of the rows the app's transactions committed for the workflow."""
        backend, location = parse_url(self.url)
        if backend == "sqlite":
            conn = sqlite3.connect(location, timeout=30)
            try:
                return [tuple(r) for r in conn.execute(  # type: ignore[misc]
                    "SELECT note, pid FROM crash_rows WHERE workflow_id = ?", (workflow_id,))]
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(  # type: ignore[misc]
                "SELECT note, pid FROM public.crash_rows WHERE workflow_id = %s",
                (workflow_id,))]


@pytest.fixture
def crash(db_url: str, tmp_path: Path) -> Iterator[Crash]:
    c = Crash(db_url, tmp_path)
    try:
        yield c
    finally:
        c.close()


def step_names(out: dict[str, Any], workflow_id: str) -> list[tuple[int, str]]:
    return [(s["function_id"], s["function_name"]) for s in out["steps"][workflow_id]]


# --- 1. killed in the middle of a step ---------------------------------------------------


def test_kill_mid_step_reruns_only_the_interrupted_step(crash: Crash) -> None:
    wid = "mid-step"
    starter = crash.spawn("start", wid, workflow="steps")
    crash.wait_for(lambda: crash.count("step2-started", wid), "step2 to start", starter)
    crash.kill(starter)
    assert sorted(crash.steps(wid)) == [0], "only step1 was recorded before the crash"

    recoverer = crash.spawn("recover", wid)
    out = crash.finish(recoverer)

    assert out["results"][wid] == [5, 50, 47]
    assert out["statuses"][wid] == "SUCCESS"
    assert out["pending"] == []
    # step1's completion was recorded: it never runs again.
    assert crash.count("step1", wid) == 1
    assert crash.count("step1", wid, pid=starter.pid) == 1
    # step2 was interrupted: at-least-once means it runs again, in the new process.
    assert crash.count("step2-started", wid, pid=starter.pid) == 1
    assert crash.count("step2-started", wid, pid=recoverer.pid) == 1
    assert crash.count("step2-done", wid) == 1
    assert crash.count("step3", wid, pid=recoverer.pid) == 1
    assert crash.count("step3", wid) == 1
    assert step_names(out, wid) == [
        (0, "mid_step_one"), (1, "mid_step_two"), (2, "mid_step_three"),
    ]
    assert [s["output"] for s in out["steps"][wid]] == [5, 50, 47]


# --- 2. killed in the middle of a durable sleep ------------------------------------------


def test_kill_mid_sleep_wakes_at_the_original_time(crash: Crash) -> None:
    wid = "mid-sleep"
    sleep_seconds = 6.0
    first_start_ms = int(time.time() * 1000)
    starter = crash.spawn("start", wid, workflow="sleep", sleep=sleep_seconds)
    crash.wait_for(lambda: crash.count("A", wid), "step A", starter)
    sleep_row: StepRow = crash.wait_for(lambda: crash.steps(wid).get(1),
                                        "the sleep to be recorded", starter)
    assert sleep_row.function_name == "DBOS.sleep"
    wake_ms = int(sleep_row.output or "0")
    assert wake_ms == pytest.approx(sleep_row.started_at + sleep_seconds * 1000, abs=5)
    crash.wait_for(lambda: time.time() * 1000 >= sleep_row.started_at + 1000,
                   "one second into the sleep")
    crash.kill(starter)

    recoverer = crash.spawn("recover", wid)
    out = crash.finish(recoverer)

    assert out["results"][wid] == "ab"
    assert out["statuses"][wid] == "SUCCESS"
    assert crash.count("A", wid) == 1
    (b,) = crash.events("B", wid)
    assert b.pid == recoverer.pid
    # B runs after the wake-up time recorded before the crash ...
    assert b.at >= wake_ms
    # ... and not a full sleep after the restart: as soon as the new process was
    # up (or the original wake-up time, whichever came later).
    (launched,) = crash.events("recover-launched", wid)
    assert b.at <= max(wake_ms, launched.at) + 1000, (
        f"B ran {b.at - wake_ms} ms after the recorded wake-up time"
    )
    (done,) = crash.events("recover-done", wid)
    assert done.at - first_start_ms < (sleep_seconds + 4) * 1000
    assert step_names(out, wid) == [(0, "sleep_step_a"), (1, "DBOS.sleep"), (2, "sleep_step_b")]
    assert out["steps"][wid][1]["wake_up_at_epoch_ms"] == wake_ms


# --- 3. transactions ---------------------------------------------------------------------


def test_kill_mid_transaction_rolls_back_and_reruns_once(crash: Crash) -> None:
    wid = "mid-tx"
    starter = crash.spawn("start", wid, workflow="tx")
    crash.wait_for(lambda: crash.count("tx-started", wid), "the transaction to start", starter)
    crash.kill(starter)
    assert crash.user_rows(wid) == [], "the killed transaction must not have committed"
    assert crash.steps(wid) == {}

    recoverer = crash.spawn("recover", wid)
    out = crash.finish(recoverer)

    assert out["results"][wid] == "inserted hello"
    assert out["statuses"][wid] == "SUCCESS"
    assert crash.user_rows(wid) == [("hello", recoverer.pid)]
    assert crash.count("tx-started", wid) == 2
    assert crash.count("tx-done", wid) == 1
    assert step_names(out, wid) == [(0, "blocking_insert")]
    assert out["steps"][wid][0]["kind"] == "transaction"


def test_kill_after_transaction_committed_does_not_rerun_it(crash: Crash) -> None:
    wid = "after-tx"
    starter = crash.spawn("start", wid, workflow="tx_after")
    crash.wait_for(lambda: crash.count("after-started", wid), "the step after the transaction",
                   starter)
    crash.kill(starter)
    assert crash.user_rows(wid) == [("hello", starter.pid)]
    assert sorted(crash.steps(wid)) == [0]

    recoverer = crash.spawn("recover", wid)
    out = crash.finish(recoverer)

    assert out["results"][wid] == "INSERTED HELLO"
    assert out["statuses"][wid] == "SUCCESS"
    assert crash.count("tx-ran", wid) == 1, "a committed transaction must not run again"
    assert crash.user_rows(wid) == [("hello", starter.pid)]
    assert crash.count("after-started", wid, pid=starter.pid) == 1
    assert crash.count("after-started", wid, pid=recoverer.pid) == 1
    assert crash.count("after-done", wid) == 1
    assert step_names(out, wid) == [(0, "quick_insert"), (1, "after_insert")]


# --- 4./5. many workflows in flight ----------------------------------------------------------

MANY_SLEEP = 3.0

def kill_many_in_flight(crash: Crash, prefix: str, count: int, sleep: float = MANY_SLEEP
                        ) -> tuple[list[str], dict[str, set[int]]]:
    """Start ``count`` workflows, kill their process while they are in flight
    (sleeping between their two steps); their IDs and the function IDs each had
    recorded when the process died."""
    ids = [f"{prefix}-{i:02d}" for i in range(count)]
    starter = crash.spawn("start", prefix, workflow="many", count=count, sleep=sleep)
    crash.wait_for(lambda: crash.count("all-started", prefix), "the workflows to start", starter)
    crash.wait_for(lambda: crash.count("m1", pid=starter.pid) == count,
                   "every first step to run", starter)
    # Both cases must occur: a first step whose record committed before the kill
    # (never runs again) and, usually, some whose record had not (run once more).
    crash.wait_for(lambda: any(0 in crash.steps(wid) for wid in ids),
                   "a first step's record to commit", starter)
    crash.kill(starter)
    recorded = {wid: set(crash.steps(wid)) for wid in ids}
    assert all(r <= {0, 1} for r in recorded.values()), recorded
    assert crash.count("m2") == 0, "the kill came before any second step"
    return ids, recorded


def check_executions(crash: Crash, ids: list[str], recorded: dict[str, set[int]],
                     recoverers: list[int]) -> None:
    """Recorded steps never ran again; interrupted ones ran exactly once more."""
    for wid in ids:
        if 0 in recorded[wid]:
            assert crash.count("m1", wid) == 1, wid
        else:  # ran, but its record had not committed: runs once more after recovery
            assert sum(crash.count("m1", wid, pid=p) for p in recoverers) == 1, wid
        runs = crash.events("m2", wid)
        assert len(runs) == 1, f"{wid}: the second step ran {len(runs)} times: {runs}"
        assert runs[0].pid in recoverers


def check_outputs(ids: list[str], outs: list[dict[str, Any]]) -> None:
    for out in outs:
        assert out["pending"] == []
        for i, wid in enumerate(ids):
            assert out["statuses"][wid] == "SUCCESS", wid
            assert out["results"][wid] == i + i * i, wid
            assert step_names(out, wid) == [
                (0, "many_first"), (1, "DBOS.sleep"), (2, "many_second"),
            ]


def test_kill_with_many_workflows_in_flight(crash: Crash) -> None:
    ids, recorded = kill_many_in_flight(crash, "many", 20)
    assert any(0 in r for r in recorded.values())
    recoverer = crash.spawn("recover", "many", workflow="many", count=len(ids))
    out = crash.finish(recoverer)
    check_executions(crash, ids, recorded, [recoverer.pid])
    check_outputs(ids, [out])


def test_two_recoverers_claim_each_workflow_once(crash: Crash) -> None:
    ids, recorded = kill_many_in_flight(crash, "duo", 40)
    go = crash.dir / "go"
    recoverers = [crash.spawn("recover", "duo", workflow="many", count=len(ids), go=go)
                  for _ in range(2)]
    crash.wait_for(lambda: crash.count("recover-ready", "duo") == 2,
                   "both recovering processes to be ready", *recoverers)
    go.touch()  # both launch, and so scan for workflows to recover, at once
    for proc in recoverers:
        crash.wait(proc)
    check_executions(crash, ids, recorded, [p.pid for p in recoverers])
    check_outputs(ids, [crash.finish(p) for p in recoverers])


def test_slow_recoverer_does_not_steal_from_a_live_one(crash: Crash) -> None:
    """Two recovering processes, with a deterministic interleaving: the slow one
    scans for orphaned workflows, then stalls before claiming them; meanwhile
    the other one launches and claims them all; then the slow one goes on. It
    must skip every workflow (their owner is now alive), not take them over."""
    sleep = 5.0
    ids, recorded = kill_many_in_flight(crash, "slow", 10, sleep=sleep)
    earliest = int(time.time() * 1000 + sleep * 1000)  # a sleep not yet recorded starts later
    wake_ms = min((int(crash.steps(wid)[1].output or "0") for wid in ids if 1 in recorded[wid]),
                  default=earliest)
    release = crash.dir / "release"
    slow = crash.spawn("recover", "slow", workflow="many", count=len(ids), stall=release)
    crash.wait_for(lambda: crash.count("recover-scanned", "slow"), "the slow recoverer's scan",
                   slow)
    fast = crash.spawn("recover", "slow", workflow="many", count=len(ids))

    def fast_owns_all() -> bool:
        mine = {e.instance_id for e in crash.store().get_executors() if e.pid == fast.pid}
        rows = [crash.store().get_workflow(wid) for wid in ids]
        return bool(mine) and all(r is not None and r.owner in mine for r in rows)

    crash.wait_for(fast_owns_all, "the fast recoverer to claim every workflow", fast, slow)
    assert crash.count("m2") == 0
    assert time.time() * 1000 < wake_ms - 500, "too slow to test: the workflows already woke"
    release.touch()
    for proc in (slow, fast):
        crash.wait(proc)
    check_executions(crash, ids, recorded, [fast.pid])
    check_outputs(ids, [crash.finish(slow), crash.finish(fast)])
