"""The PostgreSQL store's libpq path for its one-row statements
(relos.store.libpq): values go in and come back as through a psycopg cursor,
errors are psycopg's, and what it does not send falls back to the cursor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dbhelpers import PG_BASE, drop_postgres_database, new_postgres_database, require_postgres


@pytest.fixture
def conn() -> Iterator[Any]:
    require_postgres()
    import psycopg

    name = new_postgres_database()
    try:
        with psycopg.connect(f"{PG_BASE}/{name}", autocommit=True) as c:
            c.execute("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, f DOUBLE PRECISION, "
                      "b BOOLEAN, j JSON, note TEXT)")
            yield c
    finally:
        drop_postgres_database(name)


def _run(conn: Any, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    from relos.store import libpq

    done = libpq.run(conn, sql, params)
    assert done is not None
    return libpq.rows(conn, *done)


INSERT = "INSERT INTO t VALUES (%s, %s, %s, %s, %s, %s) RETURNING *"


def test_values_round_trip_as_through_a_cursor(conn: Any) -> None:
    values = ["é☃ 'quoted' \\ back", 2**62, -0.5, True, '{"a": [1, 2]}', None]
    got = _run(conn, INSERT, values)
    expected = conn.execute("SELECT * FROM t").fetchall()
    assert got == expected
    assert got == [("é☃ 'quoted' \\ back", 2**62, -0.5, True, {"a": [1, 2]}, None)]
    # The same statement again with NULLs where there were values: another
    # type signature, the same statement text.
    assert _run(conn, INSERT, ["k2", None, None, None, None, "x"]) == [
        ("k2", None, None, None, None, "x")]
    assert _run(conn, "SELECT id FROM t WHERE id LIKE 'k%%' AND n IS NULL", []) == [("k2",)]


def test_a_nul_in_a_text_is_refused_not_cut(conn: Any) -> None:
    import psycopg

    with pytest.raises(psycopg.DataError, match="NUL"):
        _run(conn, INSERT, ["a\x00b", 1, 1.0, False, None, None])
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_server_errors_are_psycopgs_and_the_connection_goes_on(conn: Any) -> None:
    import psycopg

    _run(conn, INSERT, ["k", 1, 1.0, False, None, None])
    with pytest.raises(psycopg.errors.UniqueViolation, match="duplicate key"):
        _run(conn, INSERT, ["k", 2, 1.0, False, None, None])
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        _run(conn, "SELECT %s::bigint", ["not a number"])
    assert _run(conn, "SELECT n FROM t WHERE id = %s", ["k"]) == [(1,)]


def test_statements_deallocated_by_someone_else_are_prepared_again(conn: Any) -> None:
    _run(conn, INSERT, ["k1", 1, 1.0, False, None, None])
    conn.execute("DEALLOCATE ALL")
    assert _run(conn, INSERT, ["k2", 2, 1.0, False, None, None])[0][:2] == ("k2", 2)


def test_other_parameter_types_are_left_to_the_cursor(conn: Any) -> None:
    import datetime

    from relos.store import libpq

    assert libpq.run(conn, "SELECT %s", [datetime.date(2026, 1, 1)]) is None
    assert libpq.run(conn, "SELECT %s", [b"bytes"]) is None


def test_rowcount(conn: Any) -> None:
    from relos.store import libpq

    for i in range(3):
        _run(conn, INSERT, [f"k{i}", i, 1.0, False, None, None])
    done = libpq.run(conn, "UPDATE t SET note = %s WHERE n >= %s", ["x", 1])
    assert done is not None and libpq.rowcount(done[0]) == 2


def test_notices_reach_the_connections_handlers(conn: Any) -> None:
    """libpq calls psycopg's notice receiver during the call (it needs the
    interpreter's lock back while the call has released it)."""
    heard: list[str | None] = []
    conn.add_notice_handler(lambda diag: heard.append(diag.message_primary))
    conn.execute("CREATE FUNCTION noisy(x TEXT) RETURNS TEXT LANGUAGE plpgsql AS "
                 "$$ BEGIN RAISE NOTICE 'heard %', x; RETURN x; END $$")
    assert [_run(conn, "SELECT noisy(%s)", [w]) for w in ("a", "b")] == [[("a",)], [("b",)]]
    assert heard == ["heard a", "heard b"]
