"""``@DBOS.transaction`` through the public API, on both backends: user writes
commit atomically with the step record (DB-API connection and SQLAlchemy
session), roll back on error, isolation levels, and a separate application
database."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from dbhelpers import PG_BASE, drop_postgres_database, new_postgres_database
from relos import DBOS, ERROR, SUCCESS, ConfigError, SetWorkflowID

calls: Counter[str] = Counter()


class ApiTxBoom(Exception):
    pass


def _ph() -> str:
    """The DB-API placeholder of the transaction's driver."""
    return "?" if isinstance(DBOS.sql_connection, sqlite3.Connection) else "%s"


@DBOS.transaction()
def apitx_create_table() -> None:
    DBOS.sql_connection.execute(
        "CREATE TABLE IF NOT EXISTS apitx_items (name TEXT PRIMARY KEY, qty INTEGER)"
    )


@DBOS.transaction()
def apitx_insert(name: str, qty: int) -> int:
    calls["insert"] += 1
    conn = DBOS.sql_connection
    p = _ph()
    conn.execute(f"INSERT INTO apitx_items (name, qty) VALUES ({p}, {p})", (name, qty))
    row = conn.execute("SELECT COUNT(*) FROM apitx_items").fetchone()
    return int(row[0])


@DBOS.transaction()
def apitx_insert_then_fail(name: str) -> None:
    calls["insert_then_fail"] += 1
    p = _ph()
    DBOS.sql_connection.execute(
        f"INSERT INTO apitx_items (name, qty) VALUES ({p}, {p})", (name, 1)
    )
    raise ApiTxBoom(f"rolled back {name}")


@DBOS.transaction()
def apitx_session_insert(name: str, qty: int) -> list[Any]:
    from sqlalchemy import text

    calls["session"] += 1
    session = DBOS.sql_session
    session.execute(text("INSERT INTO apitx_items (name, qty) VALUES (:n, :q)"),
                    {"n": name, "q": qty})
    rows = session.execute(text("SELECT name, qty FROM apitx_items ORDER BY name")).all()
    return [list(r) for r in rows]


@DBOS.transaction()
def apitx_session_fail(name: str) -> None:
    from sqlalchemy import text

    DBOS.sql_session.execute(text("INSERT INTO apitx_items (name, qty) VALUES (:n, 1)"),
                             {"n": name})
    raise ApiTxBoom("session rolled back")


@DBOS.transaction(isolation_level="SERIALIZABLE")
def apitx_serializable() -> str:
    conn = DBOS.sql_connection
    if isinstance(conn, sqlite3.Connection):
        return "serializable"  # SQLite transactions are always serializable
    return str(conn.execute("SHOW transaction_isolation").fetchone()[0])


@DBOS.transaction(isolation_level="read_committed")
def apitx_read_committed() -> str:
    conn = DBOS.sql_connection
    if isinstance(conn, sqlite3.Connection):
        return "read committed"
    return str(conn.execute("SHOW transaction_isolation").fetchone()[0])


_both_read = threading.Barrier(2)


@DBOS.transaction(isolation_level="SERIALIZABLE")
def apitx_increment(who: str) -> int:
    calls[f"increment-{who}"] += 1
    conn = DBOS.sql_connection
    value = int(conn.execute("SELECT qty FROM apitx_items WHERE name = 'counter'")
                .fetchone()[0])
    if calls[f"increment-{who}"] == 1:
        _both_read.wait(timeout=10)  # both transactions read before either writes
    conn.execute("UPDATE apitx_items SET qty = %s WHERE name = 'counter'", (value + 1,))
    return value + 1


@DBOS.workflow()
def apitx_increment_wf(who: str) -> int:
    return apitx_increment(who)


@DBOS.transaction()
def apitx_count() -> int:
    return int(DBOS.sql_connection.execute("SELECT COUNT(*) FROM apitx_items").fetchone()[0])


@DBOS.workflow()
def apitx_wf(name: str) -> int:
    apitx_create_table()
    return apitx_insert(name, 3)


@DBOS.workflow()
def apitx_fail_wf(name: str) -> str:
    apitx_create_table()  # 0
    try:
        apitx_insert_then_fail(name)  # 1
    except ApiTxBoom as exc:
        return f"caught: {exc}"
    return "not raised"


@DBOS.workflow()
def apitx_fail_uncaught_wf(name: str) -> None:
    apitx_create_table()
    apitx_insert_then_fail(name)


@DBOS.workflow()
def apitx_session_wf(name: str) -> list[Any]:
    apitx_create_table()
    return apitx_session_insert(name, 7)


@DBOS.workflow()
def apitx_session_fail_wf(name: str) -> str:
    apitx_create_table()
    try:
        apitx_session_fail(name)
    except ApiTxBoom as exc:
        return str(exc)
    return "not raised"


@DBOS.workflow()
def apitx_isolation_wf() -> list[str]:
    return [apitx_serializable(), apitx_read_committed()]


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


def _rows(conn_factory: Any, sql: str) -> list[Any]:
    conn = conn_factory()
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def _connect(url: str) -> Any:
    if url.startswith("sqlite:///"):
        return sqlite3.connect(url[len("sqlite:///"):])
    import psycopg

    return psycopg.connect(url, autocommit=True)


def test_transaction_commits_user_write_with_step_record(dbos: Any, db_url: str) -> None:
    wid = "apitx-commit-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apitx_wf("apple") == 1
    assert calls["insert"] == 1
    assert _rows(lambda: _connect(db_url), "SELECT name, qty FROM apitx_items") == [("apple", 3)]
    steps = DBOS.list_workflow_steps(wid)
    assert [(s["function_id"], s["function_name"], s["kind"], s["output"]) for s in steps] == [
        (0, "apitx_create_table", "transaction", None),
        (1, "apitx_insert", "transaction", 1),
    ]
    # Idempotent: the same workflow ID does not write again.
    with SetWorkflowID(wid):
        assert apitx_wf("apple") == 1
    assert calls["insert"] == 1


def test_transaction_error_rolls_back_and_reaches_workflow(dbos: Any, db_url: str) -> None:
    wid = "apitx-rollback-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apitx_fail_wf("pear") == "caught: rolled back pear"
    assert _rows(lambda: _connect(db_url), "SELECT name FROM apitx_items") == []
    [_, failed] = DBOS.list_workflow_steps(wid)
    assert failed["function_name"] == "apitx_insert_then_fail"
    assert isinstance(failed["error"], ApiTxBoom)
    assert str(failed["error"]) == "rolled back pear"
    # The recorded error is replayed by a fork, without running the transaction again.
    assert DBOS.fork_workflow(wid, 2).get_result() == "caught: rolled back pear"
    assert calls["insert_then_fail"] == 1

    wid2 = "apitx-rollback-uncaught-" + uuid.uuid4().hex
    with SetWorkflowID(wid2), pytest.raises(ApiTxBoom, match="rolled back plum"):
        apitx_fail_uncaught_wf("plum")
    status = DBOS.get_workflow_status(wid2)
    assert status is not None and status.status == ERROR
    assert _rows(lambda: _connect(db_url), "SELECT name FROM apitx_items") == []


def test_sql_session_inserts_atomically(dbos: Any, db_url: str) -> None:
    wid = "apitx-session-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apitx_session_wf("kiwi") == [["kiwi", 7]]
    assert _rows(lambda: _connect(db_url), "SELECT name, qty FROM apitx_items") == [("kiwi", 7)]
    steps = DBOS.list_workflow_steps(wid)
    assert steps[1]["function_name"] == "apitx_session_insert"
    assert steps[1]["output"] == [["kiwi", 7]]
    assert calls["session"] == 1
    # A failing session transaction leaves nothing behind.
    assert apitx_session_fail_wf("fig") == "session rolled back"
    assert _rows(lambda: _connect(db_url), "SELECT name FROM apitx_items") == [("kiwi",)]


def test_transaction_outside_workflow_runs_once_without_record(dbos: Any, db_url: str) -> None:
    apitx_create_table()
    assert apitx_insert("solo", 1) == 1
    with pytest.raises(ApiTxBoom):
        apitx_insert_then_fail("solo-fail")
    assert apitx_count() == 1
    assert DBOS.list_workflows() == []


def test_isolation_levels(dbos: Any, backend: str) -> None:
    # On PostgreSQL the level is read back from the server; SQLite is always serializable.
    assert apitx_isolation_wf() == ["serializable", "read committed"]


@pytest.mark.postgres_only
def test_serialization_failure_is_retried(dbos: Any, db_url: str, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("SQLite serialises writers: no serialization failures to retry")
    _both_read.reset()
    apitx_create_table()
    conn = _connect(db_url)
    try:
        conn.execute("INSERT INTO apitx_items (name, qty) VALUES ('counter', 0)")
    finally:
        conn.close()
    a = DBOS.start_workflow(apitx_increment_wf, "a")
    b = DBOS.start_workflow(apitx_increment_wf, "b")
    assert sorted([a.get_result(timeout_seconds=20), b.get_result(timeout_seconds=20)]) == [1, 2]
    assert _rows(lambda: _connect(db_url),
                 "SELECT qty FROM apitx_items WHERE name = 'counter'") == [(2,)]
    # Exactly one of them lost the race and ran again.
    assert sorted([calls["increment-a"], calls["increment-b"]]) == [1, 2]


def test_invalid_isolation_level_is_a_config_error_at_decoration(dbos: Any) -> None:
    with pytest.raises(ConfigError, match="isolation level"):
        DBOS.transaction(isolation_level="CHAOS")


def test_async_transaction_is_rejected_at_decoration() -> None:
    async def apitx_async_body() -> None:
        return None

    with pytest.raises(ConfigError, match="async"):
        DBOS.transaction()(apitx_async_body)


def test_sql_connection_outside_a_transaction_is_an_error(dbos: Any) -> None:
    from relos import RelosError

    with pytest.raises(RelosError, match="transaction"):
        DBOS.sql_connection  # noqa: B018
    with pytest.raises(RelosError, match="transaction"):
        DBOS.sql_session  # noqa: B018


@pytest.fixture
def app_db_url(backend: str, tmp_path: Any) -> Iterator[str]:
    """A second, empty database of the backend under test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/app.sqlite"
        return
    name = new_postgres_database()
    try:
        yield f"{PG_BASE}/{name}"
    finally:
        drop_postgres_database(name)


def test_separate_application_database(db_url: str, app_db_url: str, backend: str) -> None:
    DBOS.destroy()
    DBOS(config={"system_database_url": db_url, "application_database_url": app_db_url,
                 "executor_lease_seconds": 2, "recovery_interval_seconds": 0.5})
    DBOS.launch()
    try:
        wid = "apitx-appdb-" + uuid.uuid4().hex
        with SetWorkflowID(wid):
            assert apitx_wf("melon") == 1
        assert DBOS.retrieve_workflow(wid).get_status().status == SUCCESS
        with SetWorkflowID(wid + "-fail"):
            assert apitx_fail_wf("grape") == "caught: rolled back grape"
        steps = DBOS.list_workflow_steps(wid)
        assert [s["output"] for s in steps] == [None, 1]
    finally:
        DBOS.destroy()
    # The user's rows are in the application database, not the system database.
    assert _rows(lambda: _connect(app_db_url), "SELECT name, qty FROM apitx_items") == [
        ("melon", 3)
    ]
    table = "transaction_outputs" if backend == "sqlite" else "relos.transaction_outputs"
    outputs = _rows(lambda: _connect(app_db_url),
                    f"SELECT workflow_id, function_id, output FROM {table} "
                    f"WHERE workflow_id = '{wid}' ORDER BY function_id")
    assert outputs == [(wid, 0, "null"), (wid, 1, "1")]
    with pytest.raises((sqlite3.OperationalError, Exception), match="apitx_items"):
        _rows(lambda: _connect(db_url), "SELECT name FROM apitx_items")


def test_separate_application_database_output_survives_a_lost_step_record(
    db_url: str, app_db_url: str, backend: str
) -> None:
    """A transaction that committed in the application database but whose step
    record never reached the system database (a crash between the two
    commits) is not run again on recovery: its output is taken from
    ``transaction_outputs``."""
    import threading
    import time

    from relos import PENDING
    from relos import dbos as facade
    from relos.serialization import get_serializer
    from relos.store.base import StepRow, WorkflowRow

    DBOS.destroy()
    DBOS(config={"system_database_url": db_url, "application_database_url": app_db_url,
                 "recovery_interval_seconds": 3600})
    DBOS.launch()
    try:
        deadline = time.monotonic() + 10
        while any(t.name == "relos-recovery" and t.is_alive() for t in threading.enumerate()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ser = get_serializer("json")
        wid = "apitx-lost-record-" + uuid.uuid4().hex
        now = int(time.time() * 1000)
        assert facade._runtime is not None
        store = facade._runtime.store
        store.insert_workflow(WorkflowRow(
            workflow_id=wid, status=PENDING, name="apitx_wf", executor_id="local",
            created_at=now, updated_at=now, inputs=ser.dumps({"args": ["lost"], "kwargs": {}}),
            owner="dead-instance-" + uuid.uuid4().hex,
        ))
        store.record_step(StepRow(wid, 0, "apitx_create_table", "transaction", "null", None,
                                  now, now))
        table = "transaction_outputs" if backend == "sqlite" else "relos.transaction_outputs"
        ph = "?" if backend == "sqlite" else "%s"
        conn = _connect(app_db_url)
        try:
            with conn:
                conn.execute(f"INSERT INTO {table} (workflow_id, function_id, output, error, "
                             f"created_at) VALUES ({ph}, 1, '41', NULL, {ph})", (wid, now))
        finally:
            conn.close()
        [handle] = DBOS.recover_pending_workflows()
        assert handle.get_result(timeout_seconds=10) == 41
        assert calls["insert"] == 0
        steps = DBOS.list_workflow_steps(wid)
        assert [(s["function_name"], s["output"]) for s in steps] == [
            ("apitx_create_table", None), ("apitx_insert", 41)
        ]
    finally:
        DBOS.destroy()
