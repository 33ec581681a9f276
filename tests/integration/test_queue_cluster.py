"""Queues across real processes: several workers on one database (SQLite file
or PostgreSQL), and a worker killed with SIGKILL while it runs queued
workflows.

The workers are ``queue_app.py`` processes. Every step execution appends one
fsync'ed line (``event workflow_id pid epoch_ns``) to a log, so the tests count
executions exactly and derive how many workflows ran at once from the step
start and end times (one clock: every process runs on this host).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from dbhelpers import cut_connections
from prochelpers import Event, Processes
from relos.store.base import DELAYED, ENQUEUED, PENDING, SUCCESS, ListFilter

pytestmark = pytest.mark.slow

APP = Path(__file__).with_name("queue_app.py")
#: How long to wait for anything the tests poll for.
DEADLINE = 60.0


class Cluster(Processes):
    """Spawns, watches, kills and reaps the worker processes of one test."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        super().__init__(url, tmp_path, APP, DEADLINE, poll=0.05)
        self.stop = tmp_path / "stop"

    def spawn(self, mode: str, *args: str) -> subprocess.Popen[bytes]:
        extra = ["--stop", str(self.stop)] if mode == "worker" else []
        return self.start(mode, [mode, str(self.log), *extra, *args])

    def workers(self, count: int, *args: str) -> list[subprocess.Popen[bytes]]:
        """Start ``count`` workers and wait until every one is launched."""
        procs = [self.spawn("worker", *args) for _ in range(count)]
        pids = {p.pid for p in procs}
        self.wait_for(lambda: pids <= {e.pid for e in self.events("ready")},
                      "the workers to be ready", *procs)
        return procs

    def enqueue(self, queue: str, count: int, *args: str) -> list[str]:
        """Enqueue ``count`` workflows from a separate process; their IDs."""
        proc = self.spawn("enqueue", "--queue", queue, "--count", str(count), *args)
        assert proc.wait(timeout=DEADLINE) == 0, self.stderr(proc)
        ids: list[str] = json.loads(self.stdout_lines(proc)[-1])
        assert len(ids) == count
        return ids

    def shut_down(self, procs: list[subprocess.Popen[bytes]]) -> None:
        """Ask the workers to stop; each must exit cleanly."""
        self.stop.touch()
        for proc in procs:
            try:
                rc = proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {proc.pid} did not stop:\n{self.stderr(proc)}")
            assert rc == 0, f"worker {proc.pid} exited {rc}:\n{self.stderr(proc)}"

    def succeeded(self, name: str) -> int:
        return len(self.store().list_workflows(
            ListFilter(name=name, status=[SUCCESS], load_values=False)))


@pytest.fixture
def cluster(db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(db_url, tmp_path)
    try:
        yield c
    finally:
        c.close()


def peak_running(starts: list[Event], ends: list[Event]) -> int:
    """The most workflows between their start and end events at one moment."""
    marks = sorted([(e.at, 1) for e in starts] + [(e.at, -1) for e in ends])
    now = top = 0
    for _, delta in marks:  # at equal times an end sorts before a start
        now += delta
        top = max(top, now)
    return top


# --- (a) three workers, one queue ----------------------------------------------------------


def test_three_workers_run_each_queued_workflow_once_within_the_limit(cluster: Cluster) -> None:
    """300 workflows on a queue with concurrency 5 (and worker concurrency 2),
    dequeued by 3 processes."""
    total = 300
    workers = cluster.workers(3)
    t0 = time.monotonic()
    ids = cluster.enqueue("qapp_cluster", total)
    cluster.wait_for(lambda: cluster.succeeded("qapp.cluster_wf") == total,
                     f"all {total} workflows to succeed", *workers)
    elapsed = time.monotonic() - t0
    cluster.shut_down(workers)

    store = cluster.store()
    rows = store.list_workflows(ListFilter(workflow_ids=ids))
    assert len(rows) == total
    assert {r.status for r in rows} == {SUCCESS}
    by_id = {r.workflow_id: r for r in rows}
    assert [json.loads(by_id[wid].output or "null") for wid in ids] == [
        2 * i for i in range(total)]
    assert {r.recovery_attempts for r in rows} == {1}
    # Each step ran exactly once, in one of the workers.
    starts, ends = cluster.events("start"), cluster.events("end")
    assert Counter(e.workflow_id for e in starts) == dict.fromkeys(ids, 1)
    assert Counter(e.workflow_id for e in ends) == dict.fromkeys(ids, 1)
    per_pid = Counter(e.pid for e in starts)
    assert set(per_pid) == {w.pid for w in workers}, "every worker took part"
    for pid in per_pid:
        local = peak_running(cluster.events("start", pid=pid), cluster.events("end", pid=pid))
        assert local <= 2, f"worker {pid} ran {local} at once (worker_concurrency 2)"
    # The global limit held across the processes, and was used.
    peak = peak_running(starts, ends)
    assert 3 <= peak <= 5, f"peak of {peak} workflows running at once"
    assert store.queue_depths().get("qapp_cluster") is None, store.queue_depths()
    print(f"\n{cluster.url.split(':')[0]}: {total} workflows in {elapsed:.1f}s, "
          f"peak {peak}, per worker {sorted(per_pid.values())}")


# --- (b) a worker killed with workflows in flight ----------------------------------------------


def test_a_killed_workers_queued_workflows_are_taken_over(cluster: Cluster) -> None:
    total, limit = 10, 4
    [first] = cluster.workers(1, "--hang")
    ids = cluster.enqueue("qapp_takeover", total)

    def in_flight() -> set[str]:
        return {e.workflow_id for e in cluster.events("b-start", pid=first.pid)}

    cluster.wait_for(lambda: len(in_flight()) == limit, f"{limit} workflows to be in flight",
                     first)
    cluster.kill(first)
    held = in_flight()
    assert len(held) == limit, "the queue's limit held in the first worker"
    store = cluster.store()
    for wid in ids:
        recorded = set(store.load_steps(wid))
        assert recorded == ({0} if wid in held else set()), (wid, recorded)
        row = store.get_workflow(wid)
        assert row is not None
        assert row.status == ("PENDING" if wid in held else "ENQUEUED"), (wid, row.status)

    [second] = cluster.workers(1)
    cluster.wait_for(lambda: cluster.succeeded("qapp.takeover_wf") == total,
                     "the second worker to finish every workflow", second)
    cluster.shut_down([second])

    for i, wid in enumerate(ids):
        row = store.get_workflow(wid)
        assert row is not None
        assert (row.status, json.loads(row.output or "null")) == (SUCCESS, [i, 10 * i, 100 * i])
        assert row.recovery_attempts == (2 if wid in held else 1), wid
        # The first step was recorded before the kill: it never ran again.
        [a] = cluster.events("a", wid)
        assert a.pid == (first.pid if wid in held else second.pid)
        # The second was interrupted by the kill: it ran again, once, in the new worker.
        b_starts = [e.pid for e in cluster.events("b-start", wid)]
        assert b_starts == ([first.pid, second.pid] if wid in held else [second.pid]), wid
        assert [e.pid for e in cluster.events("b-end", wid)] == [second.pid]
        assert [e.pid for e in cluster.events("c", wid)] == [second.pid]
        assert [s.function_name for s in store.load_steps(wid).values()] == [
            "qapp.takeover_a", "qapp.takeover_b", "qapp.takeover_c"]
    assert store.queue_depths().get("qapp_takeover") is None, store.queue_depths()
    # The workflows taken over went back through the queue: its limit held.
    assert peak_running(cluster.events("b-start", pid=second.pid),
                        cluster.events("c", pid=second.pid)) <= limit


# --- (c) 1,000 workflows, three workers, one killed mid-run ------------------------------------


def _create_effects_table(url: str) -> None:
    """The table mass_wf's transaction writes, in the system database."""
    ddl = "CREATE TABLE mass_effects (workflow_id TEXT NOT NULL, i INTEGER NOT NULL, " \
          "pid INTEGER NOT NULL)"
    if url.startswith("sqlite"):
        import sqlite3

        from relos.store import parse_url

        with closing(sqlite3.connect(parse_url(url)[1])) as conn:
            conn.execute(ddl)
            conn.commit()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ddl)


def _effects(url: str) -> list[tuple[str, int, int]]:
    sql = "SELECT workflow_id, i, pid FROM mass_effects"
    if url.startswith("sqlite"):
        import sqlite3

        from relos.store import parse_url

        with closing(sqlite3.connect(parse_url(url)[1])) as conn:
            return [(r[0], int(r[1]), int(r[2])) for r in conn.execute(sql)]
    import psycopg

    with psycopg.connect(url) as conn:
        return [(r[0], int(r[1]), int(r[2])) for r in conn.execute(sql).fetchall()]


def test_a_thousand_queued_workflows_survive_a_worker_killed_mid_run(cluster: Cluster) -> None:
    """1,000 queued workflows on 3 worker processes; one is SIGKILLed while it
    runs some of them. Every workflow completes exactly once (its one effect,
    a transaction, is in the effects table once) and none is left PENDING or
    ENQUEUED.

    The victim's steps after its first 40 block, so when it is killed it surely
    holds a full set of running workflows (its worker concurrency, 8): a kill
    timed by polling alone could fall between two of its claims."""
    total, victim_slots = 1000, 8
    store = cluster.store()
    store.migrate()
    _create_effects_table(cluster.url)
    victim = cluster.workers(1, "--stall-mass-after", "40")[0]
    survivors = cluster.workers(2)
    workers = [victim, *survivors]
    t0 = time.monotonic()
    ids = cluster.enqueue("qapp_mass", total, "--step-sleep", "0.005")
    [victim_instance] = [e.instance_id for e in store.get_executors() if e.pid == victim.pid]

    def held_by_victim() -> set[str]:
        return {r.workflow_id for r in store.list_workflows(
            ListFilter(status=[PENDING], name="qapp.mass_wf", load_values=False))
            if r.owner == victim_instance}

    def victim_mid_run() -> bool:
        # A good share done, and every slot of the victim holds a running workflow.
        return (cluster.succeeded("qapp.mass_wf") >= total // 4
                and len(held_by_victim()) == victim_slots)

    cluster.wait_for(victim_mid_run, "the victim to be mid-run", *workers)
    # What the victim holds, read before the kill: its workflows are blocked
    # in their steps, so the set cannot change until it dies (read after, a
    # survivor's recovery pass, which sees the PID gone at once, may already
    # have put them back).
    held = held_by_victim()
    done_at_kill = cluster.succeeded("qapp.mass_wf")
    cluster.kill(victim)
    assert len(held) == victim_slots and done_at_kill < total, "the kill came mid-run"

    cluster.wait_for(lambda: cluster.succeeded("qapp.mass_wf") == total,
                     f"all {total} workflows to succeed", *survivors)
    elapsed = time.monotonic() - t0
    cluster.shut_down(survivors)

    rows = store.list_workflows(ListFilter(workflow_ids=ids))
    by_id = {r.workflow_id: r for r in rows}
    assert len(by_id) == total
    assert {r.status for r in rows} == {SUCCESS}
    assert [json.loads(by_id[wid].output or "null") for wid in ids] == [
        3 * i for i in range(total)]
    assert store.list_workflows(ListFilter(status=[PENDING, ENQUEUED, DELAYED],
                                           load_values=False)) == []
    assert store.queue_depths().get("qapp_mass") is None, store.queue_depths()
    # Exactly once: one committed effect per workflow, with its own input.
    effects = _effects(cluster.url)
    assert Counter(wid for wid, _, _ in effects) == dict.fromkeys(ids, 1)
    assert {wid: i for wid, i, _ in effects} == {wid: i for i, wid in enumerate(ids)}
    # The workflows the victim held went back to the queue and a survivor finished them.
    survivor_pids = {p.pid for p in survivors}
    for wid in held:
        assert by_id[wid].recovery_attempts == 2, wid
        assert by_id[wid].owner != victim_instance, wid
    effect_pids = Counter(pid for _, _, pid in effects)
    assert set(effect_pids) <= survivor_pids | {victim.pid}
    assert all(effect_pids[pid] > 0 for pid in survivor_pids), effect_pids
    print(f"\n{cluster.url.split(':')[0]}: {total} workflows in {elapsed:.1f}s, "
          f"{done_at_kill} done and {len(held)} in flight in the victim at the kill, "
          f"effects per process {sorted(effect_pids.values())}")


def _unfinished(cluster: Cluster, prefix: str) -> str:
    """What became of the first workflows not done: their rows, steps, status
    history and logged events (for a failure's message)."""
    import psycopg

    lines = []
    with psycopg.connect(cluster.url) as conn:
        def rows(sql: str, *params: object) -> list[tuple[object, ...]]:
            return conn.execute(sql.replace("{p}", prefix), params).fetchall()
        lines.append(f"executors: {rows('SELECT pid, instance_id, heartbeat_at, stopped_at FROM {p}executors')}")
        lines.append(f"by status: {rows('SELECT status, count(*) FROM {p}workflow_status GROUP BY 1')}")
        for wid, *rest in rows("SELECT workflow_id, status, executor_id, owner, recovery_attempts, "
                               "updated_at, started_at FROM {p}workflow_status "
                               "WHERE status <> 'SUCCESS' ORDER BY workflow_id LIMIT 5"):
            lines.append(f"{wid}: {rest}")
            lines.append(f"  steps: {rows('SELECT function_id, function_name, error FROM {p}operation_outputs WHERE workflow_id = %s ORDER BY 1', wid)}")
            lines.append(f"  history: {rows('SELECT status, owner, at FROM {p}workflow_status_history WHERE workflow_id = %s ORDER BY id', wid)}")
            lines.append(f"  events: {cluster.events(workflow_id=str(wid))}")
    return "\n".join(lines)


def test_a_thousand_queued_workflows_finish_exactly_once_while_postgres_drops_connections(
        cluster: Cluster) -> None:
    """1,000 queued workflows on 3 worker processes while the server ends every
    connection of the database, 8 times 250 ms apart (a restart or fail-over
    as each process sees it). Every workflow completes, its transaction's
    effect committed exactly once, and none is left PENDING or ENQUEUED:
    claims, step records and commits cut off mid-way are each settled by the
    process that made them."""
    if not cluster.url.startswith("postgres"):
        pytest.skip("terminates PostgreSQL server processes")
    import psycopg

    total = 1000
    store = cluster.store()
    store.migrate()
    _create_effects_table(cluster.url)
    workers = cluster.workers(3)
    ids = cluster.enqueue("qapp_mass", total, "--step-sleep", "0.02")
    def succeeded() -> int:  # (on a connection of its own: the pool's may have been ended)
        with psycopg.connect(cluster.url) as conn:
            return int(conn.execute(
                f"SELECT count(*) FROM {store.prefix}workflow_status "
                f"WHERE status = 'SUCCESS' AND name = 'qapp.mass_wf'").fetchone()[0])

    done: list[int] = []  # (after each cut)
    terminated = cut_connections(cluster.url, 8, 0.25, lambda: done.append(succeeded()))
    done_at_first = done[0] if done else None
    assert done_at_first is not None and done_at_first < total, "the first cut came mid-run"
    assert terminated >= 8 * 3  # (each cut ended connections of every worker)

    cluster.wait_for(lambda: succeeded() == total, f"all {total} workflows to succeed",
                     *workers, explain=lambda: _unfinished(cluster, store.prefix))
    cluster.shut_down(workers)
    # (the test's pooled connections were ended too: each is found closed at
    # its checkout and replaced)
    rows = store.list_workflows(ListFilter(workflow_ids=ids))
    assert {r.status for r in rows} == {SUCCESS} and len(rows) == total
    assert store.list_workflows(ListFilter(status=[PENDING, ENQUEUED, DELAYED],
                                           load_values=False)) == []
    effects = _effects(cluster.url)
    assert Counter(wid for wid, _, _ in effects) == dict.fromkeys(ids, 1)
    print(f"\n{terminated} connections ended in 8 cuts; {done_at_first} of {total} "
          f"workflows done at the first")
