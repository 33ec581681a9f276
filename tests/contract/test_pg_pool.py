"""The PostgreSQL store's connection pools: the most recently returned
connection is handed out first, and a connection the server closed while it
sat idle is still replaced before use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dbhelpers import PG_BASE, drop_postgres_database, new_postgres_database, require_postgres


@pytest.fixture
def store() -> Iterator[Any]:
    require_postgres()
    from relos.store import open_store

    name = new_postgres_database()
    s = open_store(f"{PG_BASE}/{name}")
    try:
        s.migrate()
        yield s
    finally:
        s.close()
        drop_postgres_database(name)


def _backend_pid(conn: Any) -> int:
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


@pytest.mark.parametrize("which", ["pool", "batch_pool"])
def test_the_most_recently_returned_connection_comes_first(store: Any, which: str) -> None:
    pool = getattr(store, which)
    conns = [pool.getconn() for _ in range(3)]
    pids = [_backend_pid(c) for c in conns]
    assert len(set(pids)) == 3
    for c in conns:  # returned in order: the last one back is the first out
        pool.putconn(c)
    again = [pool.getconn() for _ in range(3)]
    try:
        assert [_backend_pid(c) for c in again] == pids[::-1]
    finally:
        for c in again:
            pool.putconn(c)
    # One thread borrowing over and over keeps to one server process.
    seen = set()
    for _ in range(5):
        c = pool.getconn()
        seen.add(_backend_pid(c))
        pool.putconn(c)
    assert seen == {pids[0]}


def test_a_connection_closed_by_the_server_while_idle_is_replaced(store: Any) -> None:
    pool = store.pool
    conns = [pool.getconn() for _ in range(2)]
    for c in conns:
        pool.putconn(c)
    top = _backend_pid(conns[-1])
    with store.raw_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (top,))
        admin.execute("SELECT pg_sleep(0.2)")  # (the termination reaches the socket)
    # The next checkout would have been the terminated one: it is discarded
    # (not put back, to fail its check again at every checkout) and the
    # store's next statement runs on another connection and succeeds.
    assert store.get_workflow("nothing-here") is None
    assert pool.get_stats().get("connections_lost") == 1
    c = pool.getconn()
    try:
        assert _backend_pid(c) != top
    finally:
        pool.putconn(c)
