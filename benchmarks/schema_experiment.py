"""Would queue state in narrow tables of its own make a task cheaper for the server?

A task's row goes ENQUEUED -> PENDING -> SUCCESS. In relos's schema
(``today``) the status is in the conditions of partial indexes (the queue's,
the running workflows' by executor), so neither update can be HOT: each new
row version takes an entry in every index of the table. This script runs the
same lifecycle in bare SQL (no relos runtime), 1,000 tasks per statement,
against two alternatives on the same database, and reports the server
process's CPU time per task:

``today``
    relos's own ``workflow_status`` table, its indexes and history triggers;
    claims pick ENQUEUED rows from the queue's partial index.
``narrow``
    a copy of the table without status-dependent indexes (fillfactor 50, so
    that updated versions fit on their page: HOT), history triggers kept;
    the queue is a narrow table (inserted at enqueue, deleted by the claim)
    and the running workflows another (inserted by the claim, deleted at
    completion: what recovery needs to find a dead executor's work).
``narrow-no-running``
    the same without the running table: the best case, though recovery could
    then not find a dead executor's workflows.

Usage::

    python benchmarks/schema_experiment.py --rounds 8
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

import psycopg
from benchdb import PG_BASE, database

from relos.runtime.ids import new_ids
from relos.store import open_store

BATCH = 1000
INSERT_COLUMNS = ("workflow_id, inputs, status, name, executor_id, created_at, updated_at, "
                  "priority, recovery_attempts, queue_name")


class Backend:
    """One server connection and its process's CPU time."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET search_path = relos")
        self.pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def run(self, sql: str, params: Any = None) -> list[Any]:
        cur = self.conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def create_narrow(db: Backend) -> None:
    db.run("CREATE TABLE ws_narrow (LIKE workflow_status INCLUDING DEFAULTS) "
           "WITH (fillfactor = 50)")
    db.run("ALTER TABLE ws_narrow ADD PRIMARY KEY (workflow_id)")
    db.run("CREATE INDEX ON ws_narrow (created_at)")
    db.run("CREATE TRIGGER ws_narrow_ins AFTER INSERT ON ws_narrow REFERENCING NEW TABLE AS "
           "new_rows FOR EACH STATEMENT EXECUTE FUNCTION record_inserted_statuses()")
    db.run("CREATE TRIGGER ws_narrow_upd AFTER UPDATE ON ws_narrow REFERENCING OLD TABLE AS "
           "old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "
           "record_updated_statuses()")
    db.run('CREATE TABLE queued (queue_name TEXT COLLATE "C" NOT NULL, priority INT NOT NULL, '
           'created_at BIGINT NOT NULL, workflow_id TEXT COLLATE "C" NOT NULL)')
    db.run("CREATE INDEX ON queued (queue_name, priority, created_at, workflow_id)")
    db.run('CREATE TABLE running (workflow_id TEXT COLLATE "C" PRIMARY KEY, owner TEXT NOT NULL)')


def insert(db: Backend, table: str, ids: list[str]) -> None:
    db.run(f"INSERT INTO {table} ({INSERT_COLUMNS}) SELECT u, '{{\"args\":[1],\"kwargs\":{{}}}}', "
           "'ENQUEUED', 'bench.tiny', 'local', 1, 1, 0, 0, 'q' FROM unnest(%s::text[]) u", (ids,))


def lifecycle(db: Backend, variant: str, batches: int) -> None:
    """Enqueue ``batches`` x BATCH tasks, then claim and complete them all."""
    narrow = variant != "today"
    table = "ws_narrow" if narrow else "workflow_status"
    for _ in range(batches):
        ids = new_ids(BATCH)
        with db.conn.transaction():
            insert(db, table, ids)
            if narrow:
                db.run("INSERT INTO queued SELECT 'q', 0, 1, u FROM unnest(%s::text[]) u", (ids,))
    for _ in range(batches):
        if narrow:
            with db.conn.transaction():
                ids = [r[0] for r in db.run(
                    "DELETE FROM queued WHERE ctid = ANY(ARRAY(SELECT ctid FROM queued "
                    "WHERE queue_name = 'q' ORDER BY priority, created_at, workflow_id "
                    "LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING workflow_id", (BATCH,))]
                db.run("UPDATE ws_narrow SET status = 'PENDING', owner = 'o', "
                       "updated_at = updated_at + 1, recovery_attempts = 1 "
                       "WHERE workflow_id = ANY(%s)", (ids,))
                if variant == "narrow":
                    db.run("INSERT INTO running SELECT u, 'o' FROM unnest(%s::text[]) u", (ids,))
        else:
            ids = [r[0] for r in db.run(
                "UPDATE workflow_status SET status = 'PENDING', owner = 'o', "
                "updated_at = updated_at + 1, recovery_attempts = 1 WHERE ctid = ANY(ARRAY("
                "SELECT ctid FROM workflow_status WHERE queue_name = 'q' "
                "AND status = 'ENQUEUED' ORDER BY priority, created_at, workflow_id "
                "LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING workflow_id", (BATCH,))]
        with db.conn.transaction():
            db.run(f"UPDATE {table} SET status = 'SUCCESS', output = '2', "
                   "updated_at = updated_at + 1 WHERE workflow_id = ANY(%s)", (ids,))
            if variant == "narrow":
                db.run("DELETE FROM running WHERE workflow_id = ANY(%s)", (ids,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20, help="x 1,000 tasks per round")
    args = parser.parse_args()
    variants = ("today", "narrow", "narrow-no-running")
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    with database("postgres", PG_BASE) as url:
        open_store(url).migrate()
        db = Backend(url)
        create_narrow(db)
        for _ in range(args.rounds):
            for variant in variants:
                before = db.cpu_seconds()
                lifecycle(db, variant, args.batches)
                cpu[variant].append(1e6 * (db.cpu_seconds() - before) / (args.batches * BATCH))
        stats = {table: db.run("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                               "WHERE relname = %s", (name,))[0]
                 for table, name in (("today", "workflow_status"), ("narrow", "ws_narrow"))}
        db.conn.close()
    print(f"server CPU per task, medians of {args.rounds} alternated rounds of "
          f"{args.batches * BATCH:,} tasks:")
    for variant in variants:
        print(f"  {variant:18s} {statistics.median(cpu[variant]):6.1f} µs   "
              f"{[round(x, 1) for x in cpu[variant]]}")
    for table, (updates, hot_updates) in stats.items():
        print(f"  {table}: {hot_updates:,} of {updates:,} updates HOT")


if __name__ == "__main__":
    main()
