"""Schema migrations and opening a store, on SQLite and PostgreSQL.

The expected schema is derived from the code: the row dataclasses of
``relos.store.base`` name the columns the store reads and writes, and every
named query of ``queries.sql`` must compile against the migrated schema.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
import typing
from contextlib import closing
from importlib import resources
from typing import Any

import pytest

from dbhelpers import PG_BASE, drop_postgres_database, new_postgres_database
from relos import errors
from relos.store import open_store, parse_url
from relos.store.base import (
    APP_VERSION_COLUMNS,
    EXECUTOR_COLUMNS,
    QUEUE_COLUMNS,
    SCHEDULE_COLUMNS,
    STEP_COLUMNS,
    WORKFLOW_COLUMNS,
    WORKFLOW_SQL_ONLY_COLUMNS,
    ApplicationVersion,
    ExecutorRow,
    QueueRow,
    ScheduleRow,
    StepRow,
    WorkflowRow,
)

EXPECTED_TABLES = {
    "migrations", "workflow_status", "operation_outputs", "workflow_status_history",
    "notifications", "workflow_events", "workflow_events_history", "streams", "executors",
    "queues", "schedules", "application_versions", "queue_starts",
}
#: Table -> the dataclass whose fields are exactly its columns.
ROW_TABLES: dict[str, tuple[type, tuple[str, ...]]] = {
    "workflow_status": (WorkflowRow, WORKFLOW_COLUMNS),
    "operation_outputs": (StepRow, STEP_COLUMNS),
    "executors": (ExecutorRow, EXECUTOR_COLUMNS),
    "queues": (QueueRow, QUEUE_COLUMNS),
    "schedules": (ScheduleRow, SCHEDULE_COLUMNS),
    "application_versions": (ApplicationVersion, APP_VERSION_COLUMNS),
}


def migration_files(backend: str) -> list[tuple[int, str]]:
    """(version, name) of every migration file shipped for the backend, in order."""
    folder = resources.files("relos.store.migrations").joinpath(backend)
    found = []
    for entry in folder.iterdir():
        m = re.fullmatch(r"(\d+)_(\w+)\.sql", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2)))
    return sorted(found)


def introspect(backend: str, db_url: str, schema: str = "relos") -> dict[str, dict[str, bool]]:
    """{table: {column: nullable}} of the database, read from its catalog."""
    tables: dict[str, dict[str, bool]] = {}
    if backend == "sqlite":
        with closing(sqlite3.connect(parse_url(db_url)[1])) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")]
            for name in names:
                # PRAGMA table_info: (cid, name, type, notnull, default, pk)
                info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()
                tables[name] = {r[1]: not (r[3] or r[5]) for r in info}
        return tables
    import psycopg

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT c.table_name, c.column_name, c.is_nullable "
            "FROM information_schema.columns c JOIN information_schema.tables t "
            "  ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE'", (schema,)).fetchall()
    for table, column, nullable in rows:
        tables.setdefault(table, {})[column] = nullable == "YES"
    return tables


def nullable_fields(cls: type) -> dict[str, bool]:
    """{field: whether its annotation admits None} for a row dataclass."""
    hints = typing.get_type_hints(cls)
    return {name: type(None) in typing.get_args(hints[name])
            for name in cls.__dataclass_fields__}


def pg_schemas(db_url: str) -> set[str]:
    import psycopg

    with psycopg.connect(db_url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT schema_name FROM information_schema.schemata")}


# --- the migrated schema ---------------------------------------------------------------


def test_migrated_schema_has_the_tables_and_columns_the_code_uses(backend, db_url, store):
    schema = introspect(backend, db_url)
    assert set(schema) == EXPECTED_TABLES
    for table, (cls, columns) in ROW_TABLES.items():
        found = schema[table]
        sql_only = dict.fromkeys(WORKFLOW_SQL_ONLY_COLUMNS if table == "workflow_status" else (),
                                 True)
        assert set(found) == set(columns) | set(sql_only), table
        assert len(columns) == len(set(columns)), table
        # A field typed without None is a NOT NULL column, and the other way round.
        assert found == {**nullable_fields(cls), **sql_only}, table


def test_every_named_query_compiles_against_the_schema(backend, db_url, store):
    """EXPLAIN (which plans without running) every query of queries.sql."""
    samples: dict[str, Any] = {}
    samples.update(vars(WorkflowRow("w", "PENDING", "n", "e", 1, 2)))
    samples.update(vars(StepRow("w", 1, "f", "step", "o", None, 2, 3, "c", "e")))
    samples.update(vars(ExecutorRow("i", "e", "v", "h", 1, 2, 3, None)))
    samples.update(now=5, cutoff=5, expected_owner="o", new_owner="p", source_id="w",
                   new_id="x", start_step=2, message_id="m", destination_id="w", topic="t",
                   message="msg", sender_workflow_id=None, key="k", value="v", closed=0,
                   from_position=0)
    samples.update(vars(ScheduleRow("s", "w", "* * * * *", 1)), paused=0,
                   expected_last_tick=1, new_last_tick=2)
    queries: dict[str, str] = store.q
    assert len(queries) >= 20, sorted(queries)
    pattern = r"%\((\w+)\)s" if backend == "postgres" else r"(?<![:\w]):([a-z_][a-z0-9_]*)"
    failures = []
    with closing(_raw(backend, db_url)) as conn:
        for name, text in sorted(queries.items()):
            params = {p: samples.get(p) for p in re.findall(pattern, text)}
            try:
                conn.execute("EXPLAIN " + text, params)
            except Exception as exc:  # collected so every broken query is reported
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
    assert failures == []


# --- migrate / schema_version ------------------------------------------------------------


def test_migrate_applies_every_file_once_then_is_a_no_op(backend, db_url):
    files = migration_files(backend)
    assert files, "no migration files found"
    assert [v for v, _ in files] == list(range(1, len(files) + 1))
    s = open_store(db_url)
    try:
        assert s.schema_version() == 0
        assert s.migrate() == [v for v, _ in files]
        assert s.schema_version() == len(files)
        assert s.migrate() == []
        assert s.schema_version() == len(files)
        with closing(_raw(backend, db_url)) as conn:
            rows = conn.execute(
                f"SELECT version, name, applied_at FROM {s.prefix}migrations ORDER BY version"
            ).fetchall()
    finally:
        s.close()
    assert [(v, n) for v, n, _ in rows] == files
    assert all(isinstance(at, int) and at > 1_600_000_000_000 for _, _, at in rows)

    # A store opened later on the migrated database has nothing to do.
    again = open_store(db_url)
    try:
        assert again.schema_version() == len(files)
        assert again.migrate() == []
    finally:
        again.close()


def test_rate_ledger_migration_keeps_the_starts_of_the_current_period(backend, db_url):
    """Version 11 counts a rate limit's starts in a ledger: a database upgraded
    mid-period still holds back the starts that period made before."""
    s = open_store(db_url)
    try:
        _schema_at(backend, db_url, s.prefix, 10)
        now = int(time.time() * 1000)
        s.enqueue([WorkflowRow(f"w{i}", "ENQUEUED", "f", "e", now - 200_000 + i, 1,
                               queue_name="rl") for i in range(4)])
        # One start before the period, two in it, one workflow left waiting:
        # as the claims of version 10 left them (today's claim SQL needs the
        # columns of later versions).
        with closing(_raw(backend, db_url)) as conn:
            mark = "%s" if backend == "postgres" else "?"
            for wid, at in (("w0", now - 120_000), ("w1", now - 1_000), ("w2", now - 1_000)):
                conn.execute(f"UPDATE {s.prefix}workflow_status SET status = 'PENDING', "
                             f"owner = 'o', started_at = {mark} WHERE workflow_id = {mark}",
                             (at, wid))
            conn.commit()
        limited = QueueRow("rl", rate_limit=2, rate_period_ms=60_000)
        s.save_queue(limited)
        assert s.migrate()[0] == 11
        assert s.dequeue(limited, "o", "e", now, 5, None, ["f"]) == []
        assert [r.workflow_id for r in s.dequeue(limited, "o", "e", now + 60_000, 5, None,
                                                 ["f"])] == ["w3"]
    finally:
        s.close()


def _schema_at(backend: str, db_url: str, prefix: str, version: int) -> None:
    """Migrate a new database to ``version`` only, as a relos of that version did."""
    from relos.store import migrations

    with closing(_raw(backend, db_url)) as conn:
        if backend == "postgres":
            conn.execute('CREATE SCHEMA IF NOT EXISTS "relos"')
        conn.execute(f"CREATE TABLE {prefix}migrations (version INTEGER PRIMARY KEY, "
                     f"name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
        for mig in migrations.load(backend, prefix)[:version]:
            if backend == "sqlite":
                conn.executescript(mig.sql)
            else:
                conn.execute(mig.sql)
            conn.execute(f"INSERT INTO {prefix}migrations VALUES ({mig.version}, "
                         f"'{mig.name}', 1)")
        if backend == "sqlite":
            conn.commit()


#: Workflow IDs whose order by bytes (B, _c, a) is not their order in a
#: language (en-US: _c, a, B).
TIED_IDS = ["a", "B", "_c"]


def test_identifiers_order_by_bytes_whatever_the_database_collation(backend, db_url):
    """Version 14: on PostgreSQL the identifier columns compare bytes, as
    SQLite's do, so workflows tied in priority and creation time are claimed
    in the same order on both backends (and in the order the claimer sorts
    them), even in a database whose collation is a language's. A database of
    version 13 holding workflows and messages upgrades in place."""
    icu_db = None
    if backend == "postgres":
        import psycopg

        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu'"
                            ).fetchone() is None:
                pytest.skip("this PostgreSQL server has no ICU collations")
        icu_db = new_postgres_database(
            "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
        db_url = f"{PG_BASE}/{icu_db}"
    s = open_store(db_url)
    try:
        _schema_at(backend, db_url, s.prefix, 13)
        s.enqueue([WorkflowRow(wid, "ENQUEUED", "f", "e", 1_000, 1_000, queue_name="ties")
                   for wid in TIED_IDS])
        s.send("a", "topic", '"hello"', "m-1", None, 2_000, None)
        if backend == "postgres":
            with closing(_raw(backend, db_url)) as conn:  # a language's order, before
                ordered = [r[0] for r in conn.execute(
                    f"SELECT workflow_id FROM {s.prefix}workflow_status "
                    f"ORDER BY workflow_id").fetchall()]
            assert ordered == ["_c", "a", "B"]
        assert s.migrate()[0] == 14
        queue = QueueRow("ties")
        claimed = [[r.workflow_id for r in s.dequeue(queue, "o", "e", 5_000, 1, None, ["f"])]
                   for _ in TIED_IDS]
        assert claimed == [["B"], ["_c"], ["a"]] == [[w] for w in sorted(TIED_IDS)]
        # The messages and their tie to the workflow came through the upgrade.
        step = StepRow("a", 1, "DBOS.recv", "recv", None, None, 3_000, 3_000)
        assert s.recv("a", "topic", step, 3_000) == '"hello"'
        with closing(_raw(backend, db_url)) as conn, pytest.raises(Exception,
                                                                   match="(?i)foreign key"):
            if backend == "sqlite":
                conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"INSERT INTO {s.prefix}notifications (message_id, destination_id, "
                         f"topic, message, created_at) VALUES ('m', 'nobody', 't', 'x', 1)")
    finally:
        s.close()
        if icu_db is not None:
            drop_postgres_database(icu_db)


def _raw(backend: str, db_url: str) -> Any:
    if backend == "sqlite":
        return sqlite3.connect(parse_url(db_url)[1])
    import psycopg

    return psycopg.connect(db_url, autocommit=True)


def _assert_migrated_once(backend: str, db_url: str, applied: list[list[int]]) -> None:
    n = len(migration_files(backend))
    assert sorted(v for a in applied for v in a) == list(range(1, n + 1))
    prefix = '"relos".' if backend == "postgres" else ""
    with closing(_raw(backend, db_url)) as conn:
        versions = [r[0] for r in conn.execute(
            f"SELECT version FROM {prefix}migrations ORDER BY version").fetchall()]
    assert versions == list(range(1, n + 1))
    assert set(introspect(backend, db_url)) == EXPECTED_TABLES


def test_concurrent_migrations_from_threads_apply_the_schema_once(
    backend, db_url, concurrently
):
    stores = [open_store(db_url) for _ in range(4)]
    try:
        applied = concurrently(len(stores), lambda i: stores[i].migrate())
        assert all(s.schema_version() == len(migration_files(backend)) for s in stores)
    finally:
        for s in stores:
            s.close()
    _assert_migrated_once(backend, db_url, applied)


MIGRATE_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from relos.store import open_store

    store = open_store(sys.argv[1])
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    try:
        print(json.dumps(store.migrate()))
    finally:
        store.close()
""")


@pytest.mark.slow
def test_concurrent_migrations_from_processes_apply_the_schema_once(backend, db_url):
    start_at = time.time() + 1.5  # every process imports relos first, then all go at once
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE_SCRIPT, db_url, str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    _assert_migrated_once(backend, db_url, [json.loads(out) for out, _ in outputs])


def test_database_from_newer_relos_is_refused_and_left_untouched(backend, db_url):
    prefix = '"relos".' if backend == "postgres" else ""
    with closing(_raw(backend, db_url)) as conn:
        if backend == "postgres":
            conn.execute('CREATE SCHEMA "relos"')
        conn.execute(f"CREATE TABLE {prefix}migrations (version INTEGER PRIMARY KEY, "
                     f"name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
        conn.execute(f"INSERT INTO {prefix}migrations VALUES (999, 'from_the_future', 1)")
        conn.execute(f"CREATE TABLE {prefix}future_data (x TEXT)")
        conn.execute(f"INSERT INTO {prefix}future_data VALUES ('precious')")
        conn.commit()
    before = introspect(backend, db_url)

    s = open_store(db_url)
    try:
        with pytest.raises(errors.SchemaVersionError, match="upgrade relos") as info:
            s.migrate()
        assert "999" in str(info.value)
        assert s.schema_version() == 999
    finally:
        s.close()

    assert introspect(backend, db_url) == before
    with closing(_raw(backend, db_url)) as conn:
        assert conn.execute(f"SELECT * FROM {prefix}migrations").fetchall() == [
            (999, "from_the_future", 1)]
        assert conn.execute(f"SELECT x FROM {prefix}future_data").fetchall() == [("precious",)]


# --- PostgreSQL schema name ------------------------------------------------------------


@pytest.mark.postgres_only
def test_custom_postgres_schema(backend, db_url, make_workflow, sql):
    if backend == "sqlite":
        pytest.skip("SQLite has no schemas")
    custom = open_store(db_url, schema="custom_x")
    try:
        assert custom.migrate() == [v for v, _ in migration_files("postgres")]
        assert set(introspect(backend, db_url, schema="custom_x")) == EXPECTED_TABLES
        assert "relos" not in pg_schemas(db_url)

        custom.insert_workflow(make_workflow("in-custom"))
        assert custom.get_workflow("in-custom") is not None
        # Triggers write the history into the same schema.
        assert sql(custom, "SELECT COUNT(*) FROM custom_x.workflow_status_history") == [(1,)]

        # The default schema is an independent store in the same database.
        default = open_store(db_url)
        try:
            default.migrate()
            assert default.get_workflow("in-custom") is None
            assert set(introspect(backend, db_url, schema="relos")) == EXPECTED_TABLES
        finally:
            default.close()
    finally:
        custom.close()


@pytest.mark.postgres_only
def test_invalid_postgres_schema_name_is_a_config_error(backend, db_url):
    if backend == "sqlite":
        pytest.skip("SQLite has no schemas")
    before = pg_schemas(db_url)
    for schema in ("bad;name", "1starts_with_digit", "has space", 'quo"te', "", "x" * 64,
                   "drop schema public; --"):
        with pytest.raises(errors.ConfigError, match="schema"):
            open_store(db_url, schema=schema)
    assert pg_schemas(db_url) == before
    ok = open_store(db_url, schema="x" * 63)  # the longest name PostgreSQL allows
    ok.close()


# --- opening a store -----------------------------------------------------------------


@pytest.mark.parametrize("url", ["foo://x", "sqlite://relative", "sqlite:///:memory:",
                                 "postgresql:///", "mysql://u@h/db", "relos.sqlite"])
def test_malformed_url_is_a_config_error(url):
    with pytest.raises(errors.ConfigError) as info:
        open_store(url)
    assert url in str(info.value)


@pytest.mark.parametrize("url", [
    "postgresql://u:secret@127.0.0.1:1/x",
    "postgres://user:secret@127.0.0.1:1/x?connect_timeout=5",
    "postgresql://:secret@127.0.0.1:1/x",
    "postgresql://u@127.0.0.1:1/x?password=secret",
])
def test_unreachable_postgres_raises_with_password_redacted(url):
    with pytest.raises(errors.DatabaseUnreachableError) as info:
        open_store(url)
    message = str(info.value)
    assert "127.0.0.1" in message
    assert "secret" not in message


def test_sqlite_file_in_missing_directory_is_unreachable(tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(errors.DatabaseUnreachableError, match="does not exist"):
        open_store(f"sqlite:///{missing}/relos.sqlite")
    assert not missing.exists()
